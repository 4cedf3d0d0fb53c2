"""The paper's training recipe for CLIPDenoiser as MONAI/ignite building blocks.

Recipe (Cheng, Liang, Tan, CVPR 2024, CT task): L1 loss; AdamW (lr 3e-4, weight decay 1e-4, betas 0.9/0.999)
over the adapter and decoder only (:meth:`CLIPDenoiser.trainable_parameters`); batch 16 of random 128 x 128
crops with flips and 90-degree rotations; i.i.d. Gaussian noise of 5/255 on the [0, 1] image; mixup with
Beta(1.2, 1.2) on half of the batches; gradient-norm clipping at 0.01; progressive feature augmentation
(``aug_level=0.025``, a network argument); 40k iterations with a cosine schedule to 1e-6.

Here:

* :class:`DenoisingTrainer` -- a ``SupervisedTrainer`` that mixes batches (:class:`~ldct_clip.engine.mixup.BatchMixup`)
  and clips the gradient norm between backward and the optimizer step (the norm before clipping is kept in
  ``engine.state.grad_norm``).
* small helpers the bundle config calls: :func:`num_epochs`, :func:`every_n_iterations`,
  :func:`epoch_to_iteration`, :func:`attach_handlers`.

The validation metrics are :mod:`ldct_clip.metrics.cumulative`'s, the JSON-lines log is
:class:`ldct_clip.handlers.json_lines.JSONLinesLogger`.

One trainer "epoch" is one validation period of ``val_interval`` iterations: the run is
``iterations / val_interval`` epochs of ``epoch_length = val_interval``, so the standard epoch-level MONAI
handlers (validation, checkpoints, resume) apply unchanged while the data loader keeps streaming batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_prepare_batch

from ldct_clip.engine.mixup import BatchMixup, MixupPrepareBatch
from ldct_clip.errors import InputError

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = [
    "attach_handlers",
    "DenoisingTrainer",
    "epoch_to_iteration",
    "every_n_iterations",
    "num_epochs",
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
# the trainer
# ----------------------------------------------------------------------------------------------------------


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
            prepare_batch=prepare_batch if mixup is None else MixupPrepareBatch(prepare_batch, mixup),
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


def trainable_parameter_names(network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of ``network``'s parameters that ``optimizer`` updates (a check that the encoder stays frozen)."""
    owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return [n for n, p in network.named_parameters() if id(p) in owned]
