"""Classical denoisers, the baselines of the evaluation: non-local means and BM3D, slice by slice in HU."""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Sequence

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.metrics import find_uniform_roi, noise_sd
from ldct_clip.reporting.progress import SliceProgress

__all__ = ["CLASSICAL_DENOISERS", "available_denoisers", "denoise_bm3d", "denoise_nlm", "estimate_noise_sd",
           "import_bm3d"]

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


def import_bm3d():
    """The ``bm3d`` package, or :class:`InputError` saying how to install it."""
    try:
        import bm3d
        import bm4d
    except ImportError:
        raise InputError(
            "the 'bm3d' denoiser needs the bm3d package: pip install 'ldct-clip[bm3d]' (licence: non-commercial use "
            "only)."
        ) from None
    if not hasattr(np, "trapz") and not hasattr(bm4d.np, "trapz"):
        # bm4d (<= 4.2.5, bm3d's engine) estimates its correlated-noise thresholds with np.trapz, which NumPy 2.4
        # removed; give bm4d alone a view of numpy with the old name for np.trapezoid (same function).
        bm4d.np = _NumpyWithTrapz(np.__name__)
    return bm3d


class _NumpyWithTrapz(types.ModuleType):
    """numpy, plus ``trapz`` (the name NumPy < 2.4 had for ``trapezoid``), for bm4d's module namespace only."""

    trapz = staticmethod(np.trapezoid) if hasattr(np, "trapezoid") else None

    def __getattr__(self, name: str):
        return getattr(np, name)


def denoise_bm3d(
    volume_hu: np.ndarray,
    sigma_hu: float | None = None,
    *,
    noise_psd: np.ndarray | None = None,
    progress: SliceProgress | None = None,
) -> np.ndarray:
    """BM3D for correlated noise (the ``bm3d`` package) slice by slice, in HU.

    The noise model, first that applies: ``noise_psd`` (the PSD of the noise, e.g. the simulator's,
    :func:`~ldct_clip.evaluation.noise_psd.simulated_noise_psd`); white noise of SD ``sigma_hu``; the PSD estimated from
    the volume itself (:func:`~ldct_clip.evaluation.noise_psd.estimate_noise_psd`).  CT noise after filtered
    back-projection is correlated, so a PSD beats a white SD.

    Optional: ``pip install 'ldct-clip[bm3d]'``.  Its licence (Tampere University) allows non-commercial use
    only, so it is not a dependency of ldct-clip.  It takes about 2 s per 128x128 slice and 25 s per 512x512
    slice on the project's 2-core CPU.

    Args:
        volume_hu: ``(X, Y)`` or ``(X, Y, Z)`` in HU.
        sigma_hu: SD (HU) of white noise.
        noise_psd: ``(X, Y)`` noise PSD in HU^2, the expected ``|FFT2(noise)|^2`` (bm3d's convention, see
            :mod:`ldct_clip.evaluation.noise_psd`); another size is resized (:func:`~ldct_clip.evaluation.noise_psd.resize_psd`).
        progress: ``progress(slices_done, slices_total)``.

    Returns:
        float32 array of the input's shape, HU.
    """
    from ldct_clip.evaluation.noise_psd import estimate_noise_psd, resize_psd

    bm3d = import_bm3d()
    shape = np.shape(volume_hu)[:2]
    if noise_psd is not None:
        model: float | np.ndarray = resize_psd(noise_psd, shape)
    elif sigma_hu is not None:
        model = float(sigma_hu)
    else:
        model = estimate_noise_psd(volume_hu)
    # bm3d's internal thresholds are tuned for image values of order 1: work in units of 1000 HU (a PSD in
    # units of HU^2 scales by 1000^2).
    scaled = model / 1000.0 if np.ndim(model) == 0 else model / 1e6
    return _per_slice(volume_hu, lambda s: 1000.0 * bm3d.bm3d(s / 1000.0, scaled), progress)


#: Classical denoisers by name: ``fn(volume_hu, sigma_hu=None, *, progress=None) -> volume_hu`` (``bm3d`` also
#: takes ``noise_psd=``, its preferred noise model).


CLASSICAL_DENOISERS: dict[str, Callable[..., np.ndarray]] = {"nlm": denoise_nlm, "bm3d": denoise_bm3d}


def available_denoisers(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The classical denoisers of ``names`` that can run here, and a note on each one skipped (BM3D is an optional
    package): checked before any work, so a study or an evaluation says so up front, not after the network ran."""
    kept, notes = list(names), []
    if "bm3d" in kept:
        try:
            import_bm3d()
        except InputError as e:
            kept.remove("bm3d")
            notes.append(f"BM3D skipped: {e}")
            log.warning("BM3D skipped: %s", e)
    return kept, notes
