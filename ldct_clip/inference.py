"""The documented in-memory API: a CT volume in HU in, the denoised volume in HU out (``denoise_volume``).

``denoise_volume`` streams axial slices through :class:`~ldct_clip.engine.inferer.SliceSlidingWindowInferer`, the
bundle's inferer: HU -> [0, 1] (:func:`~ldct_clip.ct.hu.hu_to_unit`), the 2D network over 2D sliding windows
with gaussian blending, [0, 1] -> HU (:func:`~ldct_clip.ct.hu.unit_to_hu`), the voxels outside the window
kept (:class:`~ldct_clip.transforms.KeepOutsideWindow`): the steps of ``inference.json``, on an array instead of
files. Only the input and the output volume are held in memory; each step works on ``sw_batch_size`` slices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ldct_clip.engine.inferer import MIN_SIDE, SliceSlidingWindowInferer, check_volume
from ldct_clip.engine.precision import default_sw_batch_size, resolve_precision
from ldct_clip.errors import InputError
from ldct_clip.ct.hu import DEFAULT_HU_WINDOW, hu_to_unit, unit_to_hu, window_from
from ldct_clip.transforms.window import KeepOutsideWindow

__all__ = ["MIN_SIDE", "SliceSlidingWindowInferer", "denoise_volume"]

ProgressFn = Callable[[int, int], None]


def denoise_volume(
    volume_hu: np.ndarray | torch.Tensor,
    model: Callable[..., torch.Tensor],
    *,
    roi_size: Sequence[int] = (512, 512),
    overlap: float = 0.25,
    sw_batch_size: int | None = None,
    hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    channels_last: bool = True,
    keep_outside_window: bool = True,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Denoise a CT volume given in HU.

    Args:
        volume_hu: ``(X, Y, Z)`` volume (axial slices along the last axis) or one ``(X, Y)`` slice, in HU,
            any real dtype (int16 stays int16 in memory: slices are converted as they are processed).
        model: the network (``CLIPDenoiser`` or any module mapping ``(N, 1, X, Y)`` in [0, 1] to the same).
        roi_size, overlap, sw_batch_size: 2D sliding-window parameters (see :class:`SliceSlidingWindowInferer`);
            ``sw_batch_size`` defaults to :func:`~ldct_clip.engine.precision.default_sw_batch_size` of the device.
        hu_window: ``(hu_min, hu_max)`` mapped to [0, 1] for the network (the paper: -1024, 3072).
        device: where the network runs (default: the model's device, else CPU).
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``.
        keep_outside_window: voxels whose input lies outside ``hu_window`` (scanner padding such as -3024,
            dense metal) keep their input value instead of the clipped network output.
        progress: called as ``progress(slices_done, slices_total)``.

    Returns:
        float32 numpy array of the input's shape, in HU.
    """
    check_volume(volume_hu)
    hu_min, hu_max = window_from(hu_window)
    if device is None:
        params = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
        device = params.device if params is not None else torch.device("cpu")
    device = torch.device(device)
    inferer = SliceSlidingWindowInferer(
        roi_size, overlap, sw_batch_size or default_sw_batch_size(device), precision=resolve_precision(precision, device), channels_last=channels_last
    )
    keep = KeepOutsideWindow(hu_min, hu_max)
    squeeze = volume_hu.ndim == 2
    vol = volume_hu[..., None] if squeeze else volume_hu
    total = vol.shape[-1]
    out = np.empty(vol.shape, dtype=np.float32)
    for k0 in range(0, total, inferer.sw_batch_size):
        k1 = min(k0 + inferer.sw_batch_size, total)
        chunk = torch.as_tensor(np.asarray(vol[..., k0:k1]) if not isinstance(vol, torch.Tensor) else vol[..., k0:k1])
        hu = chunk.to(device=device, dtype=torch.float32).permute(2, 0, 1)[:, None]  # (n, 1, X, Y)
        if not torch.isfinite(hu).all():
            raise InputError(f"the volume has NaN or infinite values in slices {k0}-{k1 - 1}; fix or mask them first")
        pred = unit_to_hu(inferer.infer_slices(hu_to_unit(hu, hu_min, hu_max), model), hu_min, hu_max)
        if keep_outside_window:
            pred = keep(pred, hu)
        out[..., k0:k1] = pred[:, 0].permute(1, 2, 0).cpu().numpy()
        if progress is not None:
            progress(k1, total)
    return out[..., 0] if squeeze else out
