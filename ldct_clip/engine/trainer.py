"""The paper's training recipe for CLIPDenoiser as MONAI/ignite building blocks.

Recipe (Cheng, Liang, Tan, CVPR 2024, CT task): L1 loss; AdamW (lr 3e-4, weight decay 1e-4, betas 0.9/0.999)
over the adapter and decoder only (:meth:`CLIPDenoiser.trainable_parameters`); batch 16 of random 128 x 128
crops with flips and 90-degree rotations; i.i.d. Gaussian noise of 5/255 on the [0, 1] image; mixup with
Beta(1.2, 1.2) on half of the batches; gradient-norm clipping at 0.01; progressive feature augmentation
(``aug_level=0.025``, a network argument); 40k iterations with a cosine schedule to 1e-6.

Here:

* :class:`DenoisingTrainer` -- a ``SupervisedTrainer`` that mixes batches (:class:`BatchMixup`) and clips the
  gradient norm between backward and the optimizer step (the norm before clipping is kept in
  ``engine.state.grad_norm``).
* :class:`CTImageQualityMetric` -- PSNR or SSIM of HU images under a protocol of :mod:`ldct_clip.metrics`, as a
  MONAI cumulative metric for ``IgniteMetricHandler``.
* :class:`JSONLinesLogger` -- an ignite handler writing the training loss, learning rate, gradient norm and
  validation metrics to a JSON-lines file (what tests and scripts read back).
* small helpers the bundle config calls: :func:`num_epochs`, :func:`every_n_iterations`,
  :func:`epoch_to_iteration`.

One trainer "epoch" is one validation period of ``val_interval`` iterations: the run is
``iterations / val_interval`` epochs of ``epoch_length = val_interval``, so the standard epoch-level MONAI
handlers (validation, checkpoints, resume) apply unchanged while the data loader keeps streaming batches.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_prepare_batch
from monai.metrics import CumulativeIterationMetric

from ldct_clip.errors import InputError

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = [
    "BatchMixup",
    "attach_handlers",
    "CTImageQualityMetric",
    "DenoisingTrainer",
    "JSONLinesLogger",
    "epoch_to_iteration",
    "every_n_iterations",
    "num_epochs",
    "read_log",
    "trainable_parameter_names",
]


# ----------------------------------------------------------------------------------------------------------
# config helpers
# ----------------------------------------------------------------------------------------------------------


def num_epochs(iterations: int, val_interval: int) -> int:
    """Trainer epochs for ``iterations`` iterations validated every ``val_interval``; both must divide."""
    iterations, val_interval = int(iterations), int(val_interval)
    if iterations < 1 or val_interval < 1:
        raise InputError(f"iterations and val_interval must be positive, got {iterations} and {val_interval}.")
    if iterations % val_interval:
        raise InputError(
            f"iterations ({iterations}) must be a multiple of val_interval ({val_interval}): one trainer epoch is "
            "one validation period. Change --iterations or --val_interval."
        )
    return iterations // val_interval


def every_n_iterations(n: int) -> Callable[[Any, int], bool]:
    """An ignite event filter (``StatsHandler(iteration_log=...)``) that is true on every ``n``-th iteration."""
    n = max(1, int(n))

    def _filter(engine: Any, event: int) -> bool:
        return event % n == 0

    return _filter


def epoch_to_iteration(epoch_length: int) -> Callable[[int], int]:
    """Map a trainer epoch (a validation period) to the iteration it ends at, for logging validation metrics
    on the same x axis as the training loss (``global_epoch_transform``)."""
    epoch_length = int(epoch_length)

    def _transform(epoch: int) -> int:
        return int(epoch) * epoch_length

    return _transform


def attach_handlers(engine: Engine, handlers: Sequence[Any] | None, rank0_only: bool = False) -> Engine:
    """Attach ``handlers`` to ``engine`` after it exists.

    Handlers that hold the engine itself (a ``CheckpointSaver``/``CheckpointLoader`` whose ``save_dict`` has
    ``"trainer"``, for resuming) cannot be in the trainer's own ``train_handlers`` list of a bundle config: that
    would be a circular reference. The config attaches them here, before ``trainer.run()``. With ``rank0_only``
    they are attached on the first process of a distributed run only (checkpoint writers).
    """
    if rank0_only and torch.distributed.is_available() and torch.distributed.is_initialized():
        if torch.distributed.get_rank() > 0:
            return engine
    for handler in handlers or []:
        if handler is not None:
            handler.attach(engine)
    return engine


# ----------------------------------------------------------------------------------------------------------
# mixup and the trainer
# ----------------------------------------------------------------------------------------------------------


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


class _MixupPrepareBatch:
    """``prepare_batch`` that hands the trainer mixed batches."""

    def __init__(self, base: Callable, mixup: BatchMixup) -> None:
        self.base = base
        self.mixup = mixup

    def __call__(self, batchdata: Any, *args: Any, **kwargs: Any) -> Any:
        batch = self.base(batchdata, *args, **kwargs)
        inputs, targets = self.mixup(batch[0], batch[1])
        return (inputs, targets, *batch[2:])


class DenoisingTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` with the paper's mixup and gradient-norm clipping.

    Args:
        device, max_epochs, train_data_loader, network, optimizer, epoch_length: as ``SupervisedTrainer``.
            The network maps noisy ``(B, 1, H, W)`` images in [0, 1] (key ``"image"``) to clean ones (``"label"``).
        loss_function: default ``torch.nn.L1Loss()`` (the paper's loss).
        mixup: a :class:`BatchMixup`, or ``None`` for no mixup.
        grad_clip_norm: max total L2 norm of the gradients (0.01 in the paper; ``None`` or 0: no clipping). The
            norm before clipping is stored in ``engine.state.grad_norm`` (a 0-d tensor) either way.
        kwargs: other ``SupervisedTrainer`` arguments (``train_handlers``, ``amp``, ``inferer``, ...).

    Raises ValueError for ``accumulation_steps > 1`` (clipping acts per optimizer step; not supported here).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Any,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_function: Callable | None = None,
        epoch_length: int | None = None,
        mixup: BatchMixup | None = None,
        grad_clip_norm: float | None = 0.01,
        prepare_batch: Callable = default_prepare_batch,
        **kwargs: Any,
    ) -> None:
        if int(kwargs.get("accumulation_steps", 1)) > 1:
            raise ValueError("DenoisingTrainer does not support gradient accumulation (clipping is per step)")
        self.mixup = mixup
        self.grad_clip_norm = float(grad_clip_norm) if grad_clip_norm else None
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=torch.nn.L1Loss() if loss_function is None else loss_function,
            epoch_length=epoch_length,
            prepare_batch=prepare_batch if mixup is None else _MixupPrepareBatch(prepare_batch, mixup),
            **kwargs,
        )
        self.state.grad_norm = None  # type: ignore[attr-defined]
        # BACKWARD_COMPLETED fires after loss.backward() and before optimizer.step()
        self.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self._clip_gradients)

    def _clip_gradients(self, engine: DenoisingTrainer) -> None:
        params = [p for group in engine.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        if engine.amp and engine.scaler is not None:
            engine.scaler.unscale_(engine.optimizer)  # clip the true gradients, not the loss-scaled ones
        max_norm = self.grad_clip_norm if self.grad_clip_norm is not None else math.inf
        engine.state.grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm).detach()  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------------------
# validation metric
# ----------------------------------------------------------------------------------------------------------


class MeanImageMetric(CumulativeIterationMetric):
    """A per-image score collected over a validation run; :meth:`aggregate` is the mean of all of them.

    Subclasses implement ``_compute_tensor`` returning ``(B, 1)`` float64 values on ``y_pred``'s device (the
    buffers are all-gathered across DDP ranks).
    """

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor) or data.numel() == 0:
            raise ValueError("no values to aggregate: the validation set gave no batches")
        return data.float().mean()


class CTImageQualityMetric(MeanImageMetric):
    """PSNR (dB) or SSIM of HU images under a named protocol of :mod:`ldct_clip.metrics`.

    The default ``"paper"`` protocol compares HU clipped to [-1024, 3072] with data range 4096 and an 11 x 11
    Gaussian SSIM window: the numbers of the paper's Mayo-2016 table. ``"redcnn"`` and the
    ``"ldct-benchmark-*"`` windows are the other protocols.

    Args:
        metric: ``"psnr"``, ``"ssim"`` or ``"rmse"`` (HU).
        protocol: a protocol name (:data:`ldct_clip.metrics.PROTOCOLS`).

    ``y_pred`` and ``y``: ``(B, 1, X, Y)`` slices or ``(B, 1, X, Y, Z)`` volumes in HU (volumes give the mean
    over their slices). Each call returns ``(B, 1)``; :meth:`aggregate` the mean over everything seen.
    """

    def __init__(self, metric: str = "psnr", protocol: str = "paper") -> None:
        from ldct_clip.metrics import get_protocol

        super().__init__()
        if metric not in ("psnr", "ssim", "rmse"):
            raise InputError(f"metric must be 'psnr', 'ssim' or 'rmse', got {metric!r}.")
        self.metric = metric
        self.protocol = get_protocol(protocol)

    def _slice_value(self, pred: np.ndarray, target: np.ndarray) -> float:
        from ldct_clip import metrics as m

        p = self.protocol
        if self.metric == "rmse":
            lo, hi = p.rmse_hu_range
            return m.rmse(np.clip(pred, lo, hi), np.clip(target, lo, hi))
        wp, wt = m.window(pred, p), m.window(target, p)
        if self.metric == "psnr":
            return m.psnr(wp, wt, p.data_range)
        return m.ssim(wp, wt, p.data_range, window=p.ssim_window, win_size=p.ssim_win_size, sigma=p.ssim_sigma,
                      region=p.ssim_region, sample_covariance=p.ssim_sample_covariance)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None or y_pred.shape != y.shape:
            raise ValueError(f"y_pred and y must have the same shape, got {tuple(y_pred.shape)} and {None if y is None else tuple(y.shape)}")
        if y_pred.ndim not in (4, 5) or y_pred.shape[1] != 1:
            raise ValueError(f"expected (B, 1, X, Y[, Z]) HU tensors, got {tuple(y_pred.shape)}")
        pred = y_pred.detach().float().cpu().numpy()
        target = y.detach().float().cpu().numpy()
        values = []
        for b in range(pred.shape[0]):
            p, t = pred[b, 0], target[b, 0]
            if p.ndim == 2:
                values.append(self._slice_value(p, t))
            else:
                values.append(float(np.mean([self._slice_value(p[..., k], t[..., k]) for k in range(p.shape[-1])])))
        # on the input's device: the buffers are all-gathered across ranks (NCCL needs CUDA tensors)
        return torch.tensor(values, dtype=torch.float64, device=y_pred.device).reshape(-1, 1)



# ----------------------------------------------------------------------------------------------------------
# logging
# ----------------------------------------------------------------------------------------------------------


class JSONLinesLogger:
    """Append training and validation records to a JSON-lines file.

    Attached to the trainer (``iteration_level=True``), every ``interval`` iterations it writes
    ``{"kind": "train", "iteration", "epoch", "loss", "lr", "grad_norm", "seconds"}`` where ``loss`` is the mean
    of the iteration losses since the previous record. Attached to an evaluator (``iteration_level=False``), at
    the end of each run it writes ``{"kind": "validation", "epoch", "iteration", <metrics>}`` with
    ``iteration = global_epoch_transform(epoch)``.

    Args:
        filename: the file (its folder is created). An existing file is appended to (resumed runs continue it).
        interval: iterations per training record.
        iteration_level: training (True) or validation (False) records.
        global_epoch_transform: validation only, maps the evaluator's epoch (the trainer's) to an iteration.
    """

    def __init__(
        self,
        filename: str | os.PathLike,
        interval: int = 10,
        iteration_level: bool = True,
        global_epoch_transform: Callable[[int], int] | None = None,
    ) -> None:
        self.filename = Path(filename)
        self.interval = max(1, int(interval))
        self.iteration_level = iteration_level
        self.global_epoch_transform = global_epoch_transform
        self._losses: list[float] = []
        self._t0 = time.monotonic()

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        self.filename.parent.mkdir(parents=True, exist_ok=True)
        if self.iteration_level:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        else:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.filename, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def _iteration_completed(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, list) and output:  # decollated: the loss is replicated into every item
            output = output[0]
        loss = output.get("loss") if isinstance(output, dict) else None
        if loss is not None:
            self._losses.append(float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss))
        if engine.state.iteration % self.interval:
            return
        grad_norm = getattr(engine.state, "grad_norm", None)
        optimizer = getattr(engine, "optimizer", None)
        self._write({
            "kind": "train",
            "iteration": engine.state.iteration,
            "epoch": engine.state.epoch,
            "loss": float(np.mean(self._losses)) if self._losses else None,
            "lr": optimizer.param_groups[0]["lr"] if optimizer is not None else None,
            "grad_norm": None if grad_norm is None else float(grad_norm),
            "seconds": round(time.monotonic() - self._t0, 3),
        })
        self._losses = []

    def _epoch_completed(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        iteration = self.global_epoch_transform(epoch) if self.global_epoch_transform else epoch
        record: dict[str, Any] = {"kind": "validation", "epoch": epoch, "iteration": iteration}
        for k, v in engine.state.metrics.items():
            try:
                record[k] = float(v)
            except (TypeError, ValueError):
                continue
        self._write(record)


def read_log(filename: str | os.PathLike, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of a :class:`JSONLinesLogger` file (only those of ``kind`` if given)."""
    records = [json.loads(line) for line in Path(filename).read_text().splitlines() if line.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]


def trainable_parameter_names(network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of ``network``'s parameters that ``optimizer`` updates (a check that the encoder stays frozen)."""
    owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return [n for n, p in network.named_parameters() if id(p) in owned]

