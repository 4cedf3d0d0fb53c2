"""Classical denoisers, the baselines of the evaluation: non-local means and BM3D, slice by slice in HU."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.metrics import find_uniform_roi, noise_sd
from ldct_clip.reporting.progress import SliceProgress

__all__ = ["CLASSICAL_DENOISERS", "denoise_bm3d", "denoise_nlm", "estimate_noise_sd"]

log = logging.getLogger("ldct_clip")


def estimate_noise_sd(volume_hu: np.ndarray) -> float:
    """Blind estimate of the noise SD (HU) of a CT volume, from the image alone.

    The SD inside the most uniform water-like square (:func:`~ldct_clip.metrics.find_uniform_roi` on the image
    itself).  Wavelet estimators (``skimage.restoration.estimate_sigma``) look at the finest scale only and
    underestimate FBP noise, which is correlated (its power peaks at mid frequencies); they are the fallback
    when no uniform region exists.

    Args:
        volume_hu: ``(X, Y)`` or ``(X, Y, Z)`` in HU.
    """
    vol = np.asarray(volume_hu, dtype=np.float64)
    try:
        return float(noise_sd(vol, find_uniform_roi(vol)))
    except InputError:
        from skimage.restoration import estimate_sigma

        slices = [vol] if vol.ndim == 2 else [vol[:, :, k] for k in range(vol.shape[2])]
        sd = float(np.median([estimate_sigma(s) for s in slices]))
        log.warning("no uniform region for a noise estimate; wavelet estimate %.1f HU (likely too low for CT)", sd)
        return sd


def _per_slice(
    volume_hu: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], progress: SliceProgress | None
) -> np.ndarray:
    vol = np.asarray(volume_hu, dtype=np.float64)
    if vol.ndim == 2:
        return fn(vol).astype(np.float32)
    out = np.empty(vol.shape, dtype=np.float32)
    for k in range(vol.shape[2]):
        out[:, :, k] = fn(vol[:, :, k])
        if progress is not None:
            progress(k + 1, vol.shape[2])
    return out


def denoise_nlm(
    volume_hu: np.ndarray,
    sigma_hu: float | None = None,
    *,
    h_factor: float = 0.8,
    patch_size: int = 5,
    patch_distance: int = 6,
    progress: SliceProgress | None = None,
) -> np.ndarray:
    """Non-local means (scikit-image ``denoise_nl_means``, fast mode) slice by slice, in HU.

    Args:
        volume_hu: ``(X, Y)`` or ``(X, Y, Z)`` in HU.
        sigma_hu: noise SD (HU); default :func:`estimate_noise_sd` of the volume.
        h_factor: filter strength ``h = h_factor * sigma`` (scikit-image recommends about 0.8 when ``sigma``
            is passed, which also subtracts the noise's own contribution from the patch distances).
        patch_size, patch_distance: patch side and search radius in pixels.
        progress: ``progress(slices_done, slices_total)``.

    Returns:
        float32 array of the input's shape, HU.
    """
    from skimage.restoration import denoise_nl_means

    sigma = estimate_noise_sd(volume_hu) if sigma_hu is None else float(sigma_hu)
    h = h_factor * sigma

    def one(s: np.ndarray) -> np.ndarray:
        return denoise_nl_means(
            s, h=h, sigma=sigma, fast_mode=True, patch_size=patch_size, patch_distance=patch_distance,
            preserve_range=True,
        )

    return _per_slice(volume_hu, one, progress)


def denoise_bm3d(
    volume_hu: np.ndarray, sigma_hu: float | None = None, *, progress: SliceProgress | None = None
) -> np.ndarray:
    """BM3D (the ``bm3d`` package, white-noise model) slice by slice, in HU.

    Optional: ``pip install bm3d``.  Its licence (Tampere University) allows non-commercial use only, so it
    is not a dependency of ldct-clip.  It takes seconds per 128x128 slice and about a minute per 512x512 slice.

    Args:
        volume_hu: ``(X, Y)`` or ``(X, Y, Z)`` in HU.
        sigma_hu: noise SD (HU); default :func:`estimate_noise_sd`.
        progress: ``progress(slices_done, slices_total)``.

    Returns:
        float32 array of the input's shape, HU.
    """
    try:
        import bm3d
    except ImportError:
        raise InputError(
            "the 'bm3d' denoiser needs the bm3d package: pip install bm3d (licence: non-commercial use only)."
        ) from None
    sigma = estimate_noise_sd(volume_hu) if sigma_hu is None else float(sigma_hu)
    # bm3d's internal thresholds are tuned for image values of order 1: work in units of 1000 HU.
    return _per_slice(volume_hu, lambda s: 1000.0 * bm3d.bm3d(s / 1000.0, sigma / 1000.0), progress)


#: Classical denoisers by name: ``fn(volume_hu, sigma_hu=None, *, progress=None) -> volume_hu``.


CLASSICAL_DENOISERS: dict[str, Callable[..., np.ndarray]] = {"nlm": denoise_nlm, "bm3d": denoise_bm3d}
