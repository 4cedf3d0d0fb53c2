"""Load the denoiser's weights when the run starts: strictly, in any checkpoint format ldct-clip reads."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events

from ldct_clip.bundle import as_flag
from ldct_clip.checkpoints import load_checkpoint, load_weights
from ldct_clip.errors import WeightsError
from ldct_clip.engine.precision import prepare_model
from ldct_clip.weights import weights_label

__all__ = ["StrictCheckpointLoader"]

log = logging.getLogger("ldct_clip")


class StrictCheckpointLoader:
    """At ``STARTED``, load ``ckpt_path`` into ``engine.network`` and prepare it for inference.

    MONAI's ``CheckpointLoader`` loads strictly too by default (``strict=True``, ``strict_shape=True``, with
    ``torch.load(weights_only=True)``), but it takes a state dict laid out as its ``load_dict`` names and ends a
    mismatch in torch's ``RuntimeError``. This loader reads every checkpoint layout ldct-clip knows -- the authors'
    ``.pth`` and this project's ``.pt`` (:func:`~ldct_clip.checkpoints.load_weights`) --, refuses one that does not
    fit the network with a one-line :class:`~ldct_clip.errors.WeightsError` naming the keys, may build the network
    from the checkpoint, and refuses to start without a checkpoint unless ``allow_untrained``. Then the network
    is put in eval mode with BatchNorm folded into the convs, channels_last and optionally ``torch.compile``
    (:func:`~ldct_clip.engine.precision.prepare_model`).

    Args:
        ckpt_path: the checkpoint file.
        allow_untrained: without a checkpoint, run the network as it is (random decoder), saying so loudly: for
            demos and tests only.
        channels_last, compile: see :func:`~ldct_clip.engine.precision.prepare_model`.
        option: how the door the user came through spells ``ckpt_path`` in messages (the bundle's
            ``--ckpt_path``, the CLI's ``--checkpoint``).
        how_to_train: where a missing checkpoint can come from, for the message.
        in_channels: refuse a network that takes another number of input channels (the RGB configs: 3, so that
            a CT checkpoint is refused in one line); ``None``: any.
        wrong_channels: what the message says after "the network takes N-channel input; " (default: the config
            needs an ``in_channels``-channel model).

    ``engine.network`` may be ``None``: the ``CLIPDenoiser`` the checkpoint holds is built (the network then has
    the checkpoint's shape, whatever it is).
    """

    def __init__(self, ckpt_path: str | os.PathLike | None, allow_untrained: bool | str = False,
                 channels_last: bool | str = True, compile: bool | str = False, option: str = "--ckpt_path",
                 how_to_train: str = "train one with the bundle's configs/train.json (ldct-clip bundle-path)",
                 in_channels: int | None = None, wrong_channels: str | None = None) -> None:
        self.ckpt_path = Path(ckpt_path) if ckpt_path else None
        self.allow_untrained = as_flag(allow_untrained, "allow_untrained")
        self.channels_last = as_flag(channels_last, "channels_last")
        self.compile = as_flag(compile, "compile")
        self.option = option
        self.how_to_train = how_to_train
        self.in_channels = None if in_channels is None else int(in_channels)
        self.wrong_channels = wrong_channels or f"this config needs a {in_channels}-channel model"
        self._configured: tuple[torch.nn.Module | None] | None = None  # engine.network as configured, once seen

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Any) -> None:
        if self._configured is None:  # a second run starts again from the configured network, not the prepared one
            self._configured = (engine.network,)
        engine.network = self.load(self._configured[0], engine.state.device)

    def load(self, network: torch.nn.Module | None, device: str | torch.device) -> torch.nn.Module:
        """Load the checkpoint into ``network`` (``None``: build the ``CLIPDenoiser`` the checkpoint holds) and
        return it prepared for inference on ``device`` (a copy when BatchNorm is folded)."""
        device = torch.device(device)
        if self.ckpt_path is not None and self.ckpt_path.is_file():
            if network is None:
                network = load_checkpoint(self.ckpt_path, map_location=device)
            else:
                load_weights(network, self.ckpt_path, map_location=device)
            label = weights_label(self.ckpt_path)
            log.info("weights: %s%s", self.ckpt_path, f" ({label})" if label else "")
        elif self.allow_untrained and network is not None:
            log.warning(
                "WARNING: running with UNTRAINED weights (no checkpoint%s). The output is NOT a denoised image; "
                "it only shows that the pipeline runs. Get weights with `ldct-clip weights` or train with "
                "the bundle's configs/train.json (its folder: ldct-clip bundle-path).",
                f" at {self.ckpt_path}" if self.ckpt_path else "",
            )
        else:
            where = self.ckpt_path or "(none given)"
            raise WeightsError(
                f"no checkpoint at {where}. Put the trained weights there (see `ldct-clip weights`), pass "
                f"`{self.option} PATH`, or {self.how_to_train}."
            )
        channels = getattr(network, "in_channels", None)
        if self.in_channels is not None and channels is not None and channels != self.in_channels:
            raise WeightsError(f"the network takes {channels}-channel input; {self.wrong_channels}.")
        return prepare_model(network, device, channels_last=self.channels_last, compile=self.compile)
