"""Mixup of denoising batches, the paper's batch-level augmentation, applied where the trainer prepares a batch.

It acts on whole batches of (noisy input, clean target) pairs after collation, so it is part of the engine (the
trainer's ``prepare_batch``), not a per-sample MONAI transform.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["BatchMixup", "MixupPrepareBatch"]


class BatchMixup:
    """Mixup of a denoising batch: ``x = lam x + (1 - lam) x[perm]`` and the same for the target.

    With probability ``prob`` per batch (the paper: half of the batches) one ``lam ~ Beta(alpha, alpha)`` and one
    permutation of the batch are drawn and applied to the noisy input *and* the clean target, so every mixed
    target is still the clean version of its mixed input (the noise mixes as well; it stays zero mean).

    Args:
        alpha: Beta distribution parameter (1.2 in the paper).
        prob: fraction of batches that are mixed.
        seed: seed of the draws; ``None`` takes one from torch's global generator (set by
            ``monai.utils.set_determinism``), so runs are reproducible either way.

    Call with ``(inputs, targets)`` tensors ``(B, C, H, W)`` on any device; returns the (possibly) mixed pair.
    ``last_lambda`` is the lambda of the last call (``None`` when that batch was not mixed).
    """

    def __init__(self, alpha: float = 1.2, prob: float = 0.5, seed: int | None = None) -> None:
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"mixup alpha must be positive, got {alpha}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mixup prob must be in [0, 1], got {prob}")
        self.alpha = float(alpha)
        self.prob = float(prob)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.rng = np.random.default_rng(seed)
        self.last_lambda: float | None = None

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.last_lambda = None
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(f"inputs and targets differ in batch size: {inputs.shape[0]} vs {targets.shape[0]}")
        # draw in a fixed order whatever the outcome, so the stream does not depend on the batch size
        mix = self.rng.random() < self.prob
        lam = float(self.rng.beta(self.alpha, self.alpha))
        perm = torch.from_numpy(self.rng.permutation(inputs.shape[0])).to(inputs.device)
        if not mix or inputs.shape[0] < 2:
            return inputs, targets
        self.last_lambda = lam
        return lam * inputs + (1.0 - lam) * inputs[perm], lam * targets + (1.0 - lam) * targets[perm]


class MixupPrepareBatch:
    """``prepare_batch`` that hands the trainer mixed batches."""

    def __init__(self, base: Callable, mixup: BatchMixup) -> None:
        self.base = base
        self.mixup = mixup

    def __call__(self, batchdata: Any, *args: Any, **kwargs: Any) -> Any:
        batch = self.base(batchdata, *args, **kwargs)
        inputs, targets = self.mixup(batch[0], batch[1])
        return (inputs, targets, *batch[2:])
