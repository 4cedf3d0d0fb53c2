"""The 8-bit metrics of the paper's RGB test scripts.

Metrics (:func:`psnr_8bit`, :func:`ssim_8bit`) are those of the paper's test scripts (Restormer's
``utils.calculate_psnr`` / ``calculate_ssim``, which reproduce MATLAB): both images 8-bit, PSNR over all
RGB values with peak 255; SSIM per RGB channel with an 11 x 11 Gaussian window (sigma 1.5), constants
``(0.01 * 255)^2`` and ``(0.03 * 255)^2``, averaged over the *valid* region (pixels whose window lies inside
the image), then over the three channels. No border crop, no Y channel.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from ldct_clip.errors import InputError

__all__ = ["psnr_8bit", "ssim_8bit"]

log = logging.getLogger("ldct_clip")


def _check_8bit_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise InputError(f"images differ in shape: {pred.shape} vs {target.shape}.")
    for name, a in (("pred", pred), ("target", target)):
        if a.dtype != np.uint8:
            raise InputError(f"{name} must be an 8-bit image (uint8, use to_uint8), got {a.dtype}.")
    if pred.ndim == 2:
        pred, target = pred[None], target[None]
    if pred.ndim != 3:
        raise InputError(f"expected (C, H, W) or (H, W) images, got shape {pred.shape}.")
    return pred.astype(np.float64), target.astype(np.float64)


def psnr_8bit(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR (dB) of two uint8 images ``(C, H, W)``: ``10 log10(255^2 / MSE)`` over all values (inf if equal)."""
    p, t = _check_8bit_pair(pred, target)
    mse = float(np.mean((p - t) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


_GAUSS_11 = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
_GAUSS_11 /= _GAUSS_11.sum()


def _filter_valid(x: np.ndarray) -> np.ndarray:
    y = ndimage.correlate1d(x, _GAUSS_11, axis=0, mode="reflect")
    y = ndimage.correlate1d(y, _GAUSS_11, axis=1, mode="reflect")
    return y[5:-5, 5:-5]


def ssim_8bit(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of two uint8 images ``(C, H, W)`` as MATLAB / the paper's ``calculate_ssim`` compute it.

    Per channel: 11 x 11 Gaussian window (sigma 1.5), ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``,
    mean of the SSIM map over the valid region; then the mean over channels.
    """
    p, t = _check_8bit_pair(pred, target)
    if min(p.shape[-2:]) < 11:
        raise InputError(f"SSIM needs images of at least 11 x 11 pixels, got {p.shape[-2]} x {p.shape[-1]}.")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for a, b in zip(p, t):
        mu_a, mu_b = _filter_valid(a), _filter_valid(b)
        var_a = _filter_valid(a * a) - mu_a**2
        var_b = _filter_valid(b * b) - mu_b**2
        cov = _filter_valid(a * b) - mu_a * mu_b
        ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        values.append(float(ssim_map.mean()))
    return float(np.mean(values))
