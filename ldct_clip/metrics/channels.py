"""Channels of channelized model observers: Laguerre-Gauss, difference-of-Gaussians and Gabor.

Each function returns a ``(P, C)`` matrix, one column per channel over the ``P = size * size`` pixels of a
square ROI (flattened in C order, centre at ``((size - 1) / 2, (size - 1) / 2)``), so that an ROI stack
``(N, size, size)`` is channelized as ``rois.reshape(N, -1) @ channels`` (``(N, C)``).

The parameters follow the conventions of the FDA LCD-CT toolbox (github.com/DIDSR/LCD_CT, ``lg_cho_2d``,
``dog_cho_2d``, ``gabor_cho_2d``) and the papers it cites; the code is this project's own:

* Laguerre-Gauss (Barrett & Myers, *Foundations of Image Science*, 2004, sec. 14.2; Gallas & Barrett 2003):
  ``u_j(r) = sqrt(2) / a * exp(-pi r^2 / a^2) * L_j(2 pi r^2 / a^2)``, ``j = 0..C-1``, with ``C = 5`` and the
  width ``a`` about 2/3 of the insert radius in pixels (the LCD-CT convention), so the channels match the
  rotationally symmetric signal.
* Difference of Gaussians, "dense" (10 channels) or "sparse" (3), Abbey & Barrett, JOSA A 18(3), 2001:
  ``C_j(rho) = exp(-rho^2 / (2 (Q s_j)^2)) - exp(-rho^2 / (2 s_j^2))``, ``s_j = s_0 alpha^j`` (cycles/pixel).
* Gabor (Wunderlich & Noo 2008 style octave bands): bands ``[f/2, f]`` from ``f = 1/8`` cycles/pixel down,
  centre ``3f/4``, a Gaussian envelope whose spatial FWHM is ``4 ln 2 / (pi * f/2)``, ``n_orientations`` angles
  over 180 degrees and the given phases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import eval_laguerre

from ldct_clip.errors import InputError

__all__ = ["DOG_PARAMETERS", "dog_channels", "gabor_channels", "laguerre_gauss_channels"]

#: DoG parameters ``(s_0, alpha, Q, channels)`` of Abbey & Barrett (2001).
DOG_PARAMETERS: dict[str, tuple[float, float, float, int]] = {
    "dense": (0.005, 1.4, 1.67, 10),
    "sparse": (0.015, 2.0, 2.0, 3),
}


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    if int(size) < 3:
        raise InputError(f"an observer ROI must be at least 3x3 pixels, got {size}.")
    c = (np.arange(int(size)) - (int(size) - 1) / 2.0)
    return np.meshgrid(c, c, indexing="ij")


def laguerre_gauss_channels(size: int, width_px: float, n_channels: int = 5) -> np.ndarray:
    """Laguerre-Gauss channels ``(size * size, n_channels)`` of width ``width_px`` (the ``a`` above, pixels)."""
    if not (math.isfinite(width_px) and width_px > 0):
        raise InputError(f"the Laguerre-Gauss channel width must be positive, got {width_px}.")
    if n_channels < 1:
        raise InputError(f"n_channels must be >= 1, got {n_channels}.")
    x, y = _grid(size)
    q = 2.0 * math.pi * (x * x + y * y) / (width_px * width_px)
    cols = [math.sqrt(2.0) / width_px * np.exp(-q / 2.0) * eval_laguerre(j, q) for j in range(n_channels)]
    return np.stack([c.ravel() for c in cols], axis=1)


def dog_channels(size: int, kind: str = "dense") -> np.ndarray:
    """Difference-of-Gaussians channels ``(size * size, C)``, built in frequency and returned in space."""
    if kind not in DOG_PARAMETERS:
        raise InputError(f"DoG channels are 'dense' or 'sparse', got {kind!r}.")
    s0, alpha, q, n = DOG_PARAMETERS[kind]
    f = np.fft.fftfreq(int(size))  # cycles/pixel, unshifted: the spatial channel comes out centred after the shift
    rho2 = f[:, None] ** 2 + f[None, :] ** 2
    cols = []
    for j in range(n):
        s = s0 * alpha**j
        spectrum = np.exp(-rho2 / (2.0 * (q * s) ** 2)) - np.exp(-rho2 / (2.0 * s * s))
        # fftshift puts the origin at pixel size // 2: the ROI centre for the odd sizes the observers use
        spatial = np.fft.fftshift(np.real(np.fft.ifft2(spectrum)))
        cols.append(spatial.ravel())
    return np.stack(cols, axis=1)


def gabor_channels(size: int, n_bands: int = 4, n_orientations: int = 4, phases: Sequence[float] = (0.0,)) -> np.ndarray:
    """Gabor channels ``(size * size, n_bands * n_orientations * len(phases))`` (octave bands below 1/8 cycles/px)."""
    if n_bands < 1 or n_orientations < 1 or not len(phases):
        raise InputError("Gabor channels need at least one band, one orientation and one phase.")
    x, y = _grid(size)
    r2 = x * x + y * y
    cols = []
    f_high = 1.0 / 8.0
    for _ in range(n_bands):
        f_low = f_high / 2.0
        fc, bandwidth = (f_high + f_low) / 2.0, f_high - f_low
        fwhm = 4.0 * math.log(2.0) / (math.pi * bandwidth)
        envelope = np.exp(-4.0 * math.log(2.0) * r2 / fwhm**2)
        for k in range(n_orientations):
            theta = math.pi * k / n_orientations
            along = x * math.cos(theta) + y * math.sin(theta)
            for phase in phases:
                cols.append((envelope * np.cos(2.0 * math.pi * fc * along + float(phase))).ravel())
        f_high = f_low
    return np.stack(cols, axis=1)
