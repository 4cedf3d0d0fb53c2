"""Noise measurements of CT images: a uniform ROI, noise SD inside it, and the (radial) noise power spectrum.

Arrays follow MONAI: a slice is ``(X, Y)``, a volume ``(X, Y, Z)`` with axial slices ``vol[:, :, k]``, in HU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Union

import numpy as np
from scipy import ndimage

from ldct_clip.errors import InputError

__all__ = ["find_uniform_roi", "noise_power_spectrum", "noise_sd", "nps_summary", "radial_nps"]

Roi = Union[tuple, np.ndarray]


# ----------------------------------------------------------------------------------------------------------
# noise measurements
# ----------------------------------------------------------------------------------------------------------


def find_uniform_roi(
    image_hu: np.ndarray,
    size: int | None = None,
    *,
    hu_range: tuple[float, float] = (-150.0, 150.0),
    margin: int | None = None,
) -> tuple[slice, ...]:
    """The most uniform square region whose mean is in ``hu_range`` (water/soft tissue), for noise measurement.

    Every ``size`` x ``size`` window (all slices of a volume together) is scored by its local variance;
    windows whose mean lies outside ``hu_range`` in any slice, or that come within ``margin`` pixels of a
    region outside ``hu_range`` (air, fat, bone edges), are excluded.  The lowest variance wins.

    Args:
        image_hu: slice ``(X, Y)`` or volume ``(X, Y, Z)`` in HU.
        size: window side in pixels (default ``max(8, min(X, Y) // 16)``).
        hu_range: accepted range of window means (HU).
        margin: distance kept from pixels outside ``hu_range`` (default ``size // 2``).

    Returns:
        ``(slice_x, slice_y)`` for a slice, ``(slice_x, slice_y, slice(None))`` for a volume.

    Raises:
        InputError: no window qualifies (e.g. no water-like region of that size).
    """
    img = np.asarray(image_hu, dtype=np.float64)
    if img.ndim not in (2, 3):
        raise InputError(f"Expected a slice (X, Y) or a volume (X, Y, Z), got shape {img.shape}.")
    vol = img if img.ndim == 3 else img[:, :, None]
    nx, ny = vol.shape[:2]
    size = max(8, min(nx, ny) // 16) if size is None else int(size)
    if not 2 <= size <= min(nx, ny):
        raise InputError(f"ROI size must be between 2 and {min(nx, ny)} pixels, got {size}.")
    margin = size // 2 if margin is None else int(margin)
    lo, hi = hu_range
    # Local statistics of every window (uniform_filter is centred; index [i, j] is the window centred there).
    mean = ndimage.uniform_filter(vol, size=(size, size, 1), mode="nearest")
    var = ndimage.uniform_filter(vol * vol, size=(size, size, 1), mode="nearest") - mean * mean
    ok = np.all((mean >= lo) & (mean <= hi), axis=2)
    outside = np.any((vol < lo) | (vol > hi), axis=2)
    reach = size // 2 + margin
    if reach > 0:
        near_outside = ndimage.maximum_filter(outside, size=2 * reach + 1, mode="constant", cval=True)
    else:
        near_outside = outside
    ok &= ~near_outside
    # Keep the whole window inside the image.
    h0, h1 = size // 2, size - size // 2
    border = np.zeros_like(ok)
    border[h0 : nx - h1 + 1, h0 : ny - h1 + 1] = True
    ok &= border
    if not ok.any():
        raise InputError(
            f"No {size}x{size} region with a mean in {hu_range} HU away from edges was found; pass an explicit ROI "
            "or a smaller size."
        )
    score = np.where(ok, var.mean(axis=2), np.inf)
    i, j = np.unravel_index(int(np.argmin(score)), score.shape)
    roi = (slice(i - h0, i - h0 + size), slice(j - h0, j - h0 + size))
    return roi if img.ndim == 2 else roi + (slice(None),)


def noise_sd(
    image_hu: np.ndarray,
    roi: Roi | None = None,
    *,
    return_roi: bool = False,
    **find_kwargs,
) -> float | tuple[float, Roi]:
    """Noise SD (HU) inside a region of interest.

    Args:
        image_hu: slice ``(X, Y)`` or volume ``(X, Y, Z)`` in HU (or a noise/difference image).
        roi: a tuple of slices indexing ``image_hu``, a boolean mask of its shape, or ``None`` to pick the most
            uniform water/soft-tissue square with :func:`find_uniform_roi` (``find_kwargs`` are passed on).
            For a volume, the SD pools the ROI over all slices (sample SD, ``ddof=1``).
        return_roi: also return the ROI used.

    Returns:
        the SD in HU, or ``(sd, roi)`` with ``return_roi=True``.
    """
    img = np.asarray(image_hu, dtype=np.float64)
    if roi is None:
        roi = find_uniform_roi(img, **find_kwargs)
    if isinstance(roi, np.ndarray) and roi.dtype == bool:
        if roi.shape != img.shape:
            raise InputError(f"ROI mask shape {roi.shape} does not match the image shape {img.shape}.")
        values = img[roi]
    elif isinstance(roi, tuple):
        values = img[roi]
    else:
        raise InputError("roi must be a tuple of slices, a boolean mask of the image's shape, or None (automatic).")
    if values.size < 2:
        raise InputError(f"The ROI holds {values.size} pixel(s); noise SD needs at least 2.")
    sd = float(np.std(values, ddof=1))
    return (sd, roi) if return_roi else sd


def _pixel_pair(pixel_size_mm: float | Sequence[float]) -> tuple[float, float]:
    if np.ndim(pixel_size_mm) == 0:
        dx = dy = float(pixel_size_mm)
    else:
        if len(pixel_size_mm) != 2:
            raise InputError(f"pixel_size_mm must be a number or (dx, dy), got {pixel_size_mm!r}.")
        dx, dy = (float(v) for v in pixel_size_mm)
    if not (dx > 0 and dy > 0 and math.isfinite(dx) and math.isfinite(dy)):
        raise InputError(f"pixel_size_mm must be positive, got {pixel_size_mm!r}.")
    return dx, dy


def noise_power_spectrum(
    noise_rois: np.ndarray | Sequence[np.ndarray],
    pixel_size_mm: float | Sequence[float],
    *,
    detrend: Literal["mean", "linear"] = "mean",
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """2D noise power spectrum (ICRU 87 / IEC 62220 style) of a stack of noise-only ROIs.

    ``NPS(fx, fy) = dx * dy / (Nx * Ny) * < |FFT2(roi - trend)|^2 >`` averaged over ROIs, so that its integral
    over frequency equals the noise variance (Parseval).  Use ROIs of a uniform region, ideally of a
    difference image (noisy - noise-free, or two repeated scans divided by sqrt(2)).

    Args:
        noise_rois: ``(N, Nx, Ny)`` array, a single ``(Nx, Ny)`` ROI, or a list of equally shaped 2D ROIs, in HU.
        pixel_size_mm: ``d`` or ``(dx, dy)``, mm along the ROI's two axes.
        detrend: subtract each ROI's mean (``"mean"``) or its least-squares plane (``"linear"``, removes slow
            shading such as cupping).

    Returns:
        ``(nps_2d, (fx, fy))``: ``nps_2d`` of shape ``(Nx, Ny)`` in HU^2 mm^2 with zero frequency at the centre
        (``np.fft.fftshift`` order); ``fx`` (Nx,) and ``fy`` (Ny,) in 1/mm, in the same order.
    """
    rois = np.asarray(noise_rois, dtype=np.float64) if not isinstance(noise_rois, (list, tuple)) else None
    if rois is None:
        shapes = {np.shape(r) for r in noise_rois}
        if len(shapes) != 1:
            raise InputError(f"All ROIs must have the same shape, got {sorted(shapes)}.")
        rois = np.stack([np.asarray(r, dtype=np.float64) for r in noise_rois])
    if rois.ndim == 2:
        rois = rois[None]
    if rois.ndim != 3 or min(rois.shape[1:]) < 4:
        raise InputError(f"noise_rois must be (N, Nx, Ny) with Nx, Ny >= 4, got shape {rois.shape}.")
    dx, dy = _pixel_pair(pixel_size_mm)
    _, nx, ny = rois.shape
    if detrend == "mean":
        residual = rois - rois.mean(axis=(1, 2), keepdims=True)
    elif detrend == "linear":
        gx, gy = np.meshgrid(np.arange(nx) - (nx - 1) / 2, np.arange(ny) - (ny - 1) / 2, indexing="ij")
        design = np.stack([np.ones(nx * ny), gx.ravel(), gy.ravel()], axis=1)
        coef, *_ = np.linalg.lstsq(design, rois.reshape(len(rois), -1).T, rcond=None)
        residual = rois - (design @ coef).T.reshape(rois.shape)
    else:
        raise InputError(f"detrend must be 'mean' or 'linear', got {detrend!r}.")
    power = np.abs(np.fft.fft2(residual, axes=(1, 2))) ** 2
    nps = (dx * dy / (nx * ny)) * power.mean(axis=0)
    fx = np.fft.fftshift(np.fft.fftfreq(nx, d=dx))
    fy = np.fft.fftshift(np.fft.fftfreq(ny, d=dy))
    return np.fft.fftshift(nps), (fx, fy)


def radial_nps(
    nps_2d: np.ndarray,
    freqs: tuple[np.ndarray, np.ndarray],
    *,
    bin_width: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged NPS.

    Args:
        nps_2d: ``(Nx, Ny)`` 2D NPS from :func:`noise_power_spectrum` (zero frequency at the centre).
        freqs: its ``(fx, fy)`` in 1/mm.
        bin_width: width of the frequency annuli in 1/mm (default: the coarser of the two frequency steps).

    Returns:
        ``(f, nps_1d)``: centres of the annuli (1/mm, from 0 up to the smaller Nyquist frequency) and the mean
        NPS in each (HU^2 mm^2).  Empty annuli are dropped.
    """
    nps_2d = np.asarray(nps_2d, dtype=np.float64)
    fx, fy = (np.asarray(f, dtype=np.float64) for f in freqs)
    if nps_2d.shape != (fx.size, fy.size):
        raise InputError(f"nps_2d shape {nps_2d.shape} does not match the frequency axes ({fx.size}, {fy.size}).")
    step = max(abs(fx[1] - fx[0]), abs(fy[1] - fy[0])) if bin_width is None else float(bin_width)
    if not step > 0:
        raise InputError(f"bin_width must be positive, got {bin_width}.")
    fr = np.hypot(fx[:, None], fy[None, :])
    f_max = min(np.abs(fx).max(), np.abs(fy).max())
    index = np.floor(fr / step + 0.5).astype(int)  # annulus k holds |f| in [(k - 1/2) step, (k + 1/2) step)
    keep = fr <= f_max
    nbins = int(index[keep].max()) + 1
    total = np.bincount(index[keep], weights=nps_2d[keep], minlength=nbins)
    count = np.bincount(index[keep], minlength=nbins)
    filled = count > 0
    return (np.arange(nbins) * step)[filled], total[filled] / count[filled]


def nps_summary(nps_2d: np.ndarray, freqs: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """TG-233 scalars of a 2D NPS: noise magnitude, peak and mean frequency.

    * ``noise_hu``: ``sqrt(sum NPS * dfx * dfy)``, the noise SD the spectrum holds (Parseval);
    * ``peak_frequency``: where the radial NPS (:func:`radial_nps`) is largest (1/mm);
    * ``mean_frequency``: ``sum f NPS(f) / sum NPS(f)`` over the radial NPS (1/mm), the "average frequency"
      of AAPM TG-233 (Samei et al. 2019), a single number for the noise texture (lower = blotchier).

    Args:
        nps_2d, freqs: as returned by :func:`noise_power_spectrum`.
    """
    fx, fy = (np.asarray(f, dtype=np.float64) for f in freqs)
    dfx, dfy = abs(fx[1] - fx[0]), abs(fy[1] - fy[0])
    f, nps_1d = radial_nps(nps_2d, freqs)
    total = float(nps_1d.sum())
    return {
        "noise_hu": math.sqrt(max(float(np.sum(nps_2d)) * dfx * dfy, 0.0)),
        "peak_frequency": float(f[int(np.argmax(nps_1d))]),
        "mean_frequency": float((f * nps_1d).sum() / total) if total > 0 else math.nan,
    }
