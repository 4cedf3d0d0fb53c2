"""Noise power spectra for correlated-noise denoisers (BM3D): from simulated noise, or estimated from an image.

The convention is the ``bm3d`` package's: the PSD of noise ``n`` on an ``(X, Y)`` slice is the expected
``|FFT2(n)|^2`` (unnormalised FFT, zero frequency at index ``[0, 0]``), an ``(X, Y)`` array whose mean is
``X * Y * sd^2``; white noise of SD ``sd`` has the flat PSD ``X * Y * sd^2``.  (The physical NPS of
:func:`ldct_clip.metrics.noise_power_spectrum` is this divided by ``X * Y`` and times the pixel area, fftshifted.)

CT noise after filtered back-projection is correlated: its power vanishes at zero frequency and peaks at
mid frequencies, so a white-noise model with the right SD over-smooths fine detail and leaves blotches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from ldct_clip.errors import InputError
from ldct_clip.metrics import find_uniform_roi, noise_power_spectrum

__all__ = ["estimate_noise_psd", "noise_psd", "psd_sd", "resize_psd", "simulated_noise_psd", "white_psd"]

log = logging.getLogger("ldct_clip")


def white_psd(sd: float, shape: Sequence[int]) -> np.ndarray:
    """The flat PSD ``(X, Y)`` of white noise of SD ``sd`` (HU)."""
    nx, ny = (int(v) for v in shape[:2])
    return np.full((nx, ny), nx * ny * float(sd) ** 2)


def psd_sd(psd: np.ndarray) -> float:
    """The noise SD a PSD holds (Parseval): ``sqrt(mean(psd) / (X * Y))``."""
    psd = np.asarray(psd, dtype=np.float64)
    return float(np.sqrt(psd.mean() / psd.size))


def noise_psd(noise: np.ndarray, shape: Sequence[int] | None = None) -> np.ndarray:
    """PSD of noise realisations: the mean ``|FFT2(n - mean(n))|^2`` over them.

    Args:
        noise: one ``(X, Y)`` noise image or ``(X, Y, N)`` realisations/slices, HU.
        shape: ``(X, Y)`` of the PSD to return (default the noise's own); see :func:`resize_psd`.

    Returns:
        ``(X, Y)`` float64, HU^2 (bm3d's convention).
    """
    n = np.asarray(noise, dtype=np.float64)
    if n.ndim == 2:
        n = n[:, :, None]
    if n.ndim != 3 or min(n.shape[:2]) < 4:
        raise InputError(f"noise must be (X, Y) or (X, Y, N) with X, Y >= 4, got shape {n.shape}.")
    # the physical NPS at unit pixel size, unshifted and without its 1 / (X * Y): bm3d's convention
    nps, _ = noise_power_spectrum(np.moveaxis(n, 2, 0), 1.0)
    psd = np.fft.ifftshift(nps) * (n.shape[0] * n.shape[1])
    return psd if shape is None else resize_psd(psd, shape)


def resize_psd(psd: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The PSD of the same noise on a slice of another size (e.g. one measured in a small ROI, for a whole slice).

    The noise is modelled as white noise through a zero-phase kernel, ``IFFT2(sqrt(psd / (x y)))`` (as bm3d
    does internally); the kernel is cropped or zero-padded around its centre to ``shape`` and transformed back.
    The noise SD is kept (up to the kernel's part outside a smaller ``shape``).
    """
    psd = np.asarray(psd, dtype=np.float64)
    nx, ny = (int(v) for v in shape[:2])
    if psd.shape == (nx, ny):
        return psd.copy()
    kernel = np.fft.fftshift(np.real(np.fft.ifft2(np.sqrt(np.maximum(psd, 0.0) / psd.size))))
    out = np.zeros((nx, ny))
    # centres (index n // 2 after fftshift) on top of each other
    kx, ky = kernel.shape
    cx, cy, ox, oy = kx // 2, ky // 2, nx // 2, ny // 2
    lx, ly = min(cx, ox), min(cy, oy)
    hx, hy = min(kx - cx, nx - ox), min(ky - cy, ny - oy)
    out[ox - lx : ox + hx, oy - ly : oy + hy] = kernel[cx - lx : cx + hx, cy - ly : cy + hy]
    return np.abs(np.fft.fft2(np.fft.ifftshift(out))) ** 2 * (nx * ny)


def simulated_noise_psd(
    simulate: Callable[[int], np.ndarray],
    reference_hu: np.ndarray,
    seeds: Sequence[int],
    *,
    body_hu: float | None = -500.0,
) -> np.ndarray:
    """PSD of a simulator's noise inside the body, from realisations ``simulate(seed) - reference_hu``.

    Projection-domain CT noise is not stationary: it is strongest in the centre of the body and weakest in
    the air around it, so the PSD is measured where the anatomy is, inside ``reference_hu > body_hu``:
    ``mean |FFT2(mask * n)|^2 / mean(mask)`` over seeds and slices (the whole slice with ``body_hu=None``).
    Use seeds other than those of the images to be denoised, so that the PSD describes the noise process,
    not the particular realisation.

    Args:
        simulate: ``simulate(seed)`` -> the noisy image, ``(X, Y)`` or ``(X, Y, Z)`` in HU (e.g.
            ``lambda s: simulate_low_dose(slice_hu, 0.25, seed=s)``).
        reference_hu: what the noise is added to (the normal-dose or noise-free image), of the same shape.
        seeds: one realisation per seed.
        body_hu: HU threshold of the body mask (``None``: no mask).

    Returns:
        ``(X, Y)`` PSD, HU^2.
    """
    ref = np.asarray(reference_hu, dtype=np.float64)
    ref = ref if ref.ndim == 3 else ref[:, :, None]
    if not seeds:
        raise InputError("give at least one seed for the simulated noise PSD.")
    mask = np.ones(ref.shape) if body_hu is None else (ref > body_hu).astype(np.float64)
    if mask.mean() < 0.01:
        raise InputError(f"the reference has (almost) no pixels above {body_hu} HU to measure the noise in.")
    noise = []
    for seed in seeds:
        diff = np.asarray(simulate(int(seed)), dtype=np.float64).reshape(ref.shape) - ref
        noise.append(mask * (diff - (mask * diff).sum(axis=(0, 1)) / mask.sum(axis=(0, 1)).clip(1.0)))
    power = np.abs(np.fft.fft2(np.concatenate(noise, axis=2), axes=(0, 1))) ** 2
    return power.mean(axis=2) / mask.mean()


def estimate_noise_psd(volume_hu: np.ndarray, *, roi_size: int | None = None) -> np.ndarray:
    """Blind estimate of the noise PSD of a CT slice or volume, from the image alone.

    The most uniform water-like square (:func:`~ldct_clip.metrics.find_uniform_roi`; the largest size that fits,
    located on the image smoothed by a 2-pixel Gaussian, so that strong noise does not hide the region) is cut
    into half-size windows overlapping by half (Welch's method; 9 per slice); each window's least-squares plane
    is removed, their PSDs are averaged over windows and slices and resized to the slice (:func:`resize_psd`).
    Without a uniform region: the white PSD of the wavelet noise estimate, with a warning (it underestimates
    FBP noise).

    Args:
        volume_hu: ``(X, Y)`` or ``(X, Y, Z)`` in HU.
        roi_size: side of the largest square tried in pixels (default ``max(32, min(X, Y) // 8)``); 3/4 and 1/2
            of it (not below 16) are tried where no such square is uniform.

    Returns:
        ``(X, Y)`` PSD, HU^2.
    """
    vol = np.asarray(volume_hu, dtype=np.float64)
    if vol.ndim == 2:
        vol = vol[:, :, None]
    if vol.ndim != 3:
        raise InputError(f"expected a slice (X, Y) or a volume (X, Y, Z) in HU, got shape {vol.shape}.")
    shape = vol.shape[:2]
    first = max(32, min(shape) // 8) if roi_size is None else int(roi_size)
    smooth = ndimage.gaussian_filter(vol, (2.0, 2.0, 0.0))
    # the largest square that fits in a uniform region: bigger windows see more of FBP noise's long correlations
    for size in sorted({first, first * 3 // 4, first // 2} - set(range(16)) or {first}, reverse=True):
        try:
            roi = find_uniform_roi(smooth, size=size, margin=max(2, size // 4))[:2]
            break
        except InputError:
            continue
    else:
        from ldct_clip.evaluation.classical import estimate_noise_sd

        sd = estimate_noise_sd(vol)
        log.warning("no uniform region for a noise PSD; white noise of %.1f HU assumed", sd)
        return white_psd(sd, shape)
    block = vol[roi]
    m, step = size // 2, size // 4
    windows = [block[i : i + m, j : j + m, k] for i in range(0, size - m + 1, step)
               for j in range(0, size - m + 1, step) for k in range(block.shape[2])]
    gx, gy = np.meshgrid(np.arange(m) - (m - 1) / 2, np.arange(m) - (m - 1) / 2, indexing="ij")
    design = np.stack([np.ones(m * m), gx.ravel(), gy.ravel()], axis=1)
    stack = np.stack(windows, axis=2).reshape(m * m, -1)
    coef, *_ = np.linalg.lstsq(design, stack, rcond=None)
    residual = (stack - design @ coef).reshape(m, m, -1)
    return noise_psd(residual, shape)
