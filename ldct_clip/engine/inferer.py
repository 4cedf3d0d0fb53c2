"""The inferer of the bundle: a 2D network over the axial slices of a CT volume, with 2D sliding windows.

Why not ``monai.inferers.SliceInferer`` (MONAI 1.6), which also runs a 2D network over the slices of a volume:
it is a ``SlidingWindowInferer`` with a one-slice-thick 3D window, and the bundle's inferer must do otherwise in
ways a subclass would have to override everything for:

* a window larger than the slice: ``sliding_window_inference`` pads the slice with zeros up to ``roi_size``
  and runs the network on the padded window, so the default 512 x 512 window changes the output near the edges
  of a smaller or odd-sized slice; here the window is clipped to the slice, and the network sees the slice itself;
* whole-slice windows (the default on 512 x 512 CT) go to the network directly, ``sw_batch_size`` slices per call,
  without the window bookkeeping (importance map, and the output and count buffers of the whole volume that
  ``sliding_window_inference`` allocates); 2D windows with gaussian blending are used only when a slice is larger
  than ``roi_size`` (still ``sliding_window_inference``, per chunk of slices);
* the volume is streamed ``sw_batch_size`` slices at a time, and each chunk is checked for NaN or infinite values
  (a one-line :class:`~ldct_clip.errors.InputError` naming the slices) and the in-plane size (at least
  :data:`MIN_SIDE`); ``SliceInferer`` takes only ``(B, C, X, Y, Z)`` while this also takes ``(B, C, X, Y)``
  (the 2D configs: natural and sRGB images);
* each call runs the network in eval mode (its mode given back after), under the precision policy's autocast
  (:func:`~ldct_clip.engine.precision.autocast`, ``"auto"`` resolved per device) with channels_last input, and
  shows progress over slices rather than windows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.inferers import Inferer, sliding_window_inference
from monai.networks import eval_mode
from tqdm import tqdm

from ldct_clip.bundle import as_flag
from ldct_clip.engine.precision import autocast
from ldct_clip.errors import InputError

__all__ = ["MIN_SIDE", "SliceSlidingWindowInferer", "check_volume"]

MIN_SIDE = 32  # the encoder downsamples 16x; below 32 px there is nothing left to see


def check_volume(volume_hu: np.ndarray | torch.Tensor) -> None:
    if volume_hu.ndim not in (2, 3):
        raise InputError(
            f"expected a 2D slice (X, Y) or a 3D volume (X, Y, Z) in HU, got shape {tuple(volume_hu.shape)}; "
            "split 4D data (time or channels) into 3D volumes first"
        )
    if min(volume_hu.shape[:2]) < MIN_SIDE:
        raise InputError(
            f"slices of {volume_hu.shape[1]} rows x {volume_hu.shape[0]} columns are too small: the network needs at least "
            f"{MIN_SIDE}x{MIN_SIDE} px in-plane (is the slice axis last?)"
        )


class SliceSlidingWindowInferer(Inferer):
    """Run a 2D network on the axial slices of a volume, with 2D sliding windows and gaussian blending.

    Args:
        roi_size: 2D window (X, Y); clipped to the slice size, so the default covers a 512x512 slice whole.
        overlap: window overlap fraction.
        sw_batch_size: windows (whole slices, for the default ``roi_size``) per network call.
        mode: blending of overlapping windows (``"gaussian"`` or ``"constant"``).
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"`` (see :mod:`ldct_clip.engine.precision`).
        channels_last: feed the network channels_last tensors (faster convolutions on CPU and GPU).
        progress: show a progress bar over the slices of a volume.

    Inputs ``(B, C, X, Y, Z)`` (slices along the last axis, MONAI's convention after ``LoadImage``) or
    ``(B, C, X, Y)``; output of the same shape, float32. Slices smaller than 32x32 px and NaN or infinite
    values are refused (:class:`~ldct_clip.errors.InputError`).
    """

    def __init__(
        self,
        roi_size: Sequence[int] = (512, 512),
        overlap: float = 0.25,
        sw_batch_size: int = 4,
        mode: str = "gaussian",
        precision: str = "fp32",
        channels_last: bool = True,
        progress: bool = False,
    ) -> None:
        super().__init__()
        if len(roi_size) != 2:
            raise ValueError(f"roi_size must be 2D (X, Y), got {roi_size}")
        self.roi_size = tuple(int(r) for r in roi_size)
        self.overlap = float(overlap)
        self.sw_batch_size = int(sw_batch_size)
        self.mode = mode
        self.precision = precision
        self.channels_last = as_flag(channels_last, "channels_last")
        self.progress = as_flag(progress, "progress")

    def infer_slices(self, slices: torch.Tensor, network: Callable[..., torch.Tensor]) -> torch.Tensor:
        """Run ``network`` over ``(N, C, X, Y)`` slices; returns float32 ``(N, C_out, X, Y)``.

        A ``torch.nn.Module`` runs in eval mode for the call (without gradients) and gets its mode back after.
        """
        roi = tuple(min(r, s) for r, s in zip(self.roi_size, slices.shape[-2:]))
        if self.channels_last:
            slices = slices.contiguous(memory_format=torch.channels_last)
        # a module left in training mode (as ``load_checkpoint`` and torch return it) would use batch-statistics
        # BatchNorm and random feature augmentation: inference always runs it in eval mode, then restores it
        modules = [network] if isinstance(network, torch.nn.Module) else []
        with eval_mode(*modules), autocast(slices.device, self.precision):
            if roi == tuple(slices.shape[-2:]) and slices.shape[0] <= self.sw_batch_size:
                # one window per slice: blending weights are all equal, so skip the window bookkeeping
                # (and its full-size output and count buffers)
                out = network(slices)
            else:
                out = sliding_window_inference(
                    slices, roi, self.sw_batch_size, network, overlap=self.overlap, mode=self.mode, progress=False
                )
        return out.float().contiguous()

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> torch.Tensor:
        if inputs.ndim == 4:
            return self.infer_slices(inputs, network)
        if inputs.ndim != 5:
            raise ValueError(f"expected (B, C, X, Y) or (B, C, X, Y, Z) input, got shape {tuple(inputs.shape)}")
        b, c, x, y, z = inputs.shape
        check_volume(inputs[0, 0])
        outputs = []
        with tqdm(total=z, unit="slice", file=sys.stderr, disable=not self.progress, leave=False) as bar:
            for k0 in range(0, z, self.sw_batch_size):
                chunk = inputs[..., k0 : k0 + self.sw_batch_size]
                if not torch.isfinite(chunk).all():
                    raise InputError(f"the volume has NaN or infinite values in slices {k0}-{k0 + chunk.shape[-1] - 1}")
                n = chunk.shape[-1]
                flat = chunk.permute(0, 4, 1, 2, 3).reshape(b * n, c, x, y)
                out = self.infer_slices(flat, network)
                outputs.append(out.reshape(b, n, -1, x, y).permute(0, 2, 3, 4, 1))
                bar.update(n)
        return torch.cat(outputs, dim=-1)
