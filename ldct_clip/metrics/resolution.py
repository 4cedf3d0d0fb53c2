"""Task transfer function (TTF) of circular inserts, AAPM TG-233 style.

A nonlinear denoiser's resolution depends on the contrast of the edge and on the noise (dose), so TG-233
(Samei et al., Med. Phys. 46:e735, 2019) measures it per insert and dose as a *task* transfer function:

1. the radial edge-spread function (ESF): pixels are binned by their distance from the insert's centre in
   bins of a fraction of a pixel (the random sub-pixel positions of the pixels on a circle oversample the
   edge, as in Richard et al., Med. Phys. 39:4115, 2012);
2. the line-spread function: the derivative of the ESF across the edge, Hann-windowed around the edge;
3. TTF = |Fourier transform of the LSF|, normalised to 1 at zero frequency; ``f50`` and ``f10`` are the
   frequencies where it first falls to 0.5 and 0.1.

Noisy images are averaged over realisations first (the ensemble-mean image): TG-233's recommendation when
the contrast-to-noise ratio of one image is low.  Images are ``(X, Y)`` or a stack ``(X, Y, N)``, in HU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ldct_clip.errors import InputError

__all__ = ["TTFResult", "crossing_frequency", "radial_esf", "task_transfer_function"]


@dataclass
class TTFResult:
    """``f`` (1/mm) and ``ttf`` (1 at f = 0); ``f50``, ``f10`` (1/mm, NaN when not reached); ``contrast_hu``
    (insert minus background of the mean image); the ESF it came from (``r_mm``, ``esf_hu``)."""

    f: np.ndarray
    ttf: np.ndarray
    f50: float
    f10: float
    contrast_hu: float
    r_mm: np.ndarray
    esf_hu: np.ndarray


def radial_esf(image_hu: np.ndarray, centre_px: Sequence[float], pixel_size_mm: float, *, max_radius_mm: float,
               bin_mm: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Radial edge-spread function: the mean HU in rings of width ``bin_mm`` around ``centre_px``.

    Args:
        image_hu: ``(X, Y)`` image, or ``(X, Y, N)`` averaged over N first.
        centre_px: insert centre ``(i, j)`` in (fractional) pixels.
        pixel_size_mm: pixel spacing (mm).
        max_radius_mm: outer radius of the profile (mm); keep it away from other structures.
        bin_mm: ring width (default a tenth of a pixel); empty rings are filled by linear interpolation.

    Returns:
        ``(r_mm, esf_hu)``: ring centres (mm) and mean values (HU).
    """
    img = np.asarray(image_hu, dtype=np.float64)
    img = img.mean(axis=2) if img.ndim == 3 else img
    if img.ndim != 2:
        raise InputError(f"expected an image (X, Y) or a stack (X, Y, N), got shape {np.shape(image_hu)}.")
    px = float(pixel_size_mm)
    step = px / 10.0 if bin_mm is None else float(bin_mm)
    if not (px > 0 and step > 0 and max_radius_mm > 0):
        raise InputError("pixel size, bin width and radius must be positive.")
    i = np.arange(img.shape[0])[:, None] - float(centre_px[0])
    j = np.arange(img.shape[1])[None, :] - float(centre_px[1])
    r = np.hypot(i, j) * px
    keep = r < max_radius_mm
    reach = max_radius_mm / px
    ci, cj = float(centre_px[0]), float(centre_px[1])
    if ci - reach < 0 or cj - reach < 0 or ci + reach > img.shape[0] - 1 or cj + reach > img.shape[1] - 1:
        raise InputError(f"an ESF of radius {max_radius_mm} mm around pixel ({ci:.1f}, {cj:.1f}) does not fit in "
                         f"images of {img.shape}.")
    index = (r[keep] / step).astype(int)
    nbins = int(math.ceil(max_radius_mm / step))
    total = np.bincount(index, weights=img[keep], minlength=nbins)[:nbins]
    count = np.bincount(index, minlength=nbins)[:nbins]
    centres = (np.arange(nbins) + 0.5) * step
    filled = count > 0
    esf = np.interp(centres, centres[filled], total[filled] / count[filled])
    return centres, esf


def crossing_frequency(f: np.ndarray, curve: np.ndarray, level: float) -> float:
    """The first frequency where ``curve`` falls to ``level`` (linear interpolation); NaN if it never does."""
    below = np.nonzero(curve <= level)[0]
    if below.size == 0 or below[0] == 0:
        return math.nan
    k = int(below[0])
    f0, f1, c0, c1 = f[k - 1], f[k], curve[k - 1], curve[k]
    return float(f0 + (c0 - level) * (f1 - f0) / (c0 - c1)) if c0 != c1 else float(f1)


def task_transfer_function(image_hu: np.ndarray, centre_px: Sequence[float], radius_mm: float, pixel_size_mm: float,
                           *, max_radius_mm: float | None = None, window_mm: float | None = None) -> TTFResult:
    """TTF of a circular insert of radius ``radius_mm`` centred at ``centre_px``.

    Args:
        image_hu: ``(X, Y)`` image or ``(X, Y, N)`` realisations (averaged).
        centre_px: the insert's centre (pixels); radius_mm: its radius (mm).
        pixel_size_mm: pixel spacing (mm).
        max_radius_mm: outer radius of the ESF (default ``2 * radius_mm``).
        window_mm: half-width of the Hann window on the LSF around the edge (default ``radius_mm``, at most
            the distance to either end of the profile).

    Returns:
        :class:`TTFResult`, frequencies from 0 to the pixel Nyquist frequency ``1 / (2 px)``.
    """
    rmax = 2.0 * radius_mm if max_radius_mm is None else float(max_radius_mm)
    if not 0 < radius_mm < rmax:
        raise InputError(f"the insert radius ({radius_mm} mm) must be positive and below the ESF radius ({rmax} mm).")
    r, esf = radial_esf(image_hu, centre_px, pixel_size_mm, max_radius_mm=rmax)
    step = r[1] - r[0]
    inner, outer = esf[r < 0.5 * radius_mm].mean(), esf[r > rmax - 0.5 * (rmax - radius_mm)].mean()
    contrast = float(inner - outer)
    if contrast == 0:
        raise InputError("the insert has no contrast against its background in this image.")
    lsf = np.gradient(esf, step) * (-1.0 / contrast)  # a positive peak at the edge whatever the contrast's sign
    half = min(radius_mm if window_mm is None else float(window_mm), radius_mm, rmax - radius_mm)
    offset = np.abs(r - radius_mm)
    lsf = lsf * np.where(offset < half, 0.5 * (1.0 + np.cos(np.pi * offset / half)), 0.0)
    n = max(4096, 1 << int(math.ceil(math.log2(len(lsf)))))  # zero padding: a fine frequency grid
    spectrum = np.abs(np.fft.rfft(lsf, n=n))
    f = np.fft.rfftfreq(n, d=step)
    ttf = spectrum / spectrum[0] if spectrum[0] > 0 else spectrum
    keep = f <= 0.5 / float(pixel_size_mm) + 1e-12
    f, ttf = f[keep], ttf[keep]
    return TTFResult(f, ttf, crossing_frequency(f, ttf, 0.5), crossing_frequency(f, ttf, 0.1), contrast, r, esf)
