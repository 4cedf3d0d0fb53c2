"""Noise-level conditioning of the decoder: the input's noise level, estimated from the image itself, scales and
shifts the decoder's features (FiLM).

Why: one model has to clean 10 HU of noise as well as 150 HU. Without knowing the level, a model trained on that
range treats isolated 1-2 pixel features (small vessels, nodules) as noise at every level; told the level, it can
keep them where the noise is low. The level is never given by the user: :func:`estimate_noise_level` measures it
on the network's input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ["NoiseLevelFiLM", "estimate_noise_level", "gate_openness", "gate_tensor"]

# Centre and spread of log(noise SD) in network units: 20 HU in the CT window of 4096 HU, with 4-150 HU spanning
# about -1.1 to +1.3. Other domains (RGB) only shift the input of a learnt layer.
_LOG_CENTRE = math.log(20.0 / 4096.0)
_LOG_SPREAD = 1.5


def estimate_noise_level(x: torch.Tensor, scales: Optional[List[int]] = None) -> torch.Tensor:
    """Robust noise SD of each image, in the units of ``x``, at one or more scales.

    The diagonal detail of 2 x 2 blocks, ``(a - b - c + d) / 2``, cancels flat regions, ramps and straight
    edges along either axis and keeps white noise at its SD; the median of its magnitude over the image,
    divided by 0.6745, ignores the few coefficients on edges and texture. Coefficients that are exactly 0
    (clipped air, scanner padding, constant borders) are left out so that they do not pull the median down.
    Correlated (CT) noise gives a value below its SD, in a fixed ratio for a given reconstruction kernel: a
    model conditioned on it learns that ratio.

    At scale ``s`` the same is measured on the image averaged over ``s x s`` blocks: white noise falls by ``s``
    from scale to scale, correlated noise less, so several scales tell the noise's level and its grain apart.

    Args:
        x: ``(B, C, H, W)`` images; H and W of at least ``2 * max(scales)``.
        scales: block sizes, powers of 2 (default ``[1]``).

    Returns:
        ``(B, len(scales))`` float32 noise SD estimates (0 for an image without any nonzero detail).
    """
    x = x.float()
    levels: List[torch.Tensor] = []
    for s in [1] if scales is None else scales:
        y = torch.nn.functional.avg_pool2d(x, s) if s > 1 else x
        levels.append(_detail_level(y))
    return torch.stack(levels, dim=1)


def _detail_level(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    detail = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) * 0.5
    magnitude = detail.abs().flatten(1)
    # the median of the nonzero magnitudes: after sorting, the zeros come first (a sort and a gather rather
    # than nanmedian, which ONNX cannot export)
    ordered = torch.sort(magnitude, dim=1).values
    nonzero = (magnitude > 0).sum(dim=1)
    n = magnitude.shape[1]
    index = (n - nonzero + (nonzero - 1).clamp_min(0) // 2).clamp_max(n - 1)
    return ordered.gather(1, index[:, None])[:, 0] / 0.6745


def gate_tensor(gate: Sequence[float], name: str = "gate") -> torch.Tensor:
    """``(low, high)`` levels of a noise gate as a float32 tensor, checked: ``0 <= low <= high``."""
    if len(gate) != 2 or not 0.0 <= float(gate[0]) <= float(gate[1]):
        raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {tuple(gate)}")
    return torch.tensor([float(gate[0]), float(gate[1])])


def gate_openness(level: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """How far a noise gate lets something act: ``(B,)`` levels -> ``(B,)`` in [0, 1], 0 at or below ``gate[0]``,
    1 at or above ``gate[1]``, linear between (``gate = (0, 0)``: 1 for every image with any noise)."""
    low, high = gate[0], gate[1]
    return ((level - low) / (high - low).clamp_min(1e-12)).clamp(0.0, 1.0)


class NoiseLevelFiLM(nn.Module):
    """Per-channel scale and shift of decoder features from the noise level: ``f * (1 + scale) + shift``.

    Args:
        channels: channels of each conditioned feature map (the decoder blocks 0-3: ``8w, 4w, 2w, w``).
        hidden: width of the level embedding.
        scales: the scales of :func:`estimate_noise_level` the embedding sees (level and grain of the noise).

        gate: ``(low, high)`` levels, in the units of the input, of the scale-1 estimate: the conditioning is
            an identity below ``low``, acts fully above ``high`` and in proportion between. ``(0, 0)`` (default):
            it acts at every level. The gate is a buffer (``noise_film.gate``), saved with the weights
            (files saved before it existed load with an open gate: :func:`ldct_clip.checkpoints.extract_state_dict`).

    The output layers start at zero, so a model gains the conditioning as an identity: weights trained without
    it load and behave exactly as before until trained further. With a gate they keep behaving exactly as before
    below ``low`` however the conditioning is trained: it can only change what the model does with noisier input.
    """

    def __init__(self, channels: Sequence[int], hidden: int = 32, scales: Sequence[int] = (1, 2, 4),
                 gate: Sequence[float] = (0.0, 0.0)) -> None:
        super().__init__()
        gate_bounds = gate_tensor(gate)
        if 1 not in scales:
            raise ValueError(f"scales must include 1 (the gate reads the scale-1 level), got {tuple(scales)}")
        self.log_centre, self.log_spread = _LOG_CENTRE, _LOG_SPREAD
        self.scales: List[int] = [int(s) for s in scales]
        self.gate_index = self.scales.index(1)
        self.register_buffer("gate", gate_bounds)
        self.embed = nn.Sequential(nn.Linear(len(self.scales), hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                   nn.LeakyReLU(0.2))
        self.heads = nn.ModuleList(nn.Linear(hidden, 2 * int(c)) for c in channels)
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, image: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """``image``: the network's ``(B, C, H, W)`` input -> one ``(scale, shift)`` pair of ``(B, C_i, 1, 1)``
        per conditioned feature map, from the image's estimated noise level."""
        return self.condition(estimate_noise_level(image, self.scales))

    def condition(self, level: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """``level``: ``(B, len(scales))`` noise SD in network units -> the ``(scale, shift)`` pairs."""
        t = (torch.log(level.clamp_min(1e-6)) - self.log_centre) / self.log_spread
        e = self.embed(t)
        g = self.openness(level)[:, None, None, None]
        out: List[Tuple[torch.Tensor, torch.Tensor]] = []
        for head in self.heads:
            scale, shift = head(e).chunk(2, dim=1)
            out.append((scale[:, :, None, None] * g, shift[:, :, None, None] * g))
        return out

    def openness(self, level: torch.Tensor) -> torch.Tensor:
        """``level``: ``(B, len(scales))`` -> ``(B,)`` in [0, 1]: how far the gate lets the conditioning act."""
        return gate_openness(level[:, self.gate_index], self.gate)
