"""The 8-bit metrics of the paper's RGB test scripts, on the PSNR and SSIM of :mod:`ldct_clip.metrics.image_quality`.

Metrics (:func:`psnr_8bit`, :func:`ssim_8bit`) are those of the paper's test scripts (Restormer's
``utils.calculate_psnr`` / ``calculate_ssim``, which reproduce MATLAB): both images 8-bit (:func:`to_uint8`), PSNR
over all RGB values with peak 255; SSIM per RGB channel with an 11 x 11 Gaussian window (sigma 1.5), constants
``(0.01 * 255)^2`` and ``(0.03 * 255)^2``, averaged over the *valid* region (pixels whose window lies inside
the image), then over the three channels. No border crop, no Y channel.
"""

from __future__ import annotations

import numpy as np
import torch

from ldct_clip.errors import InputError
from ldct_clip.metrics.image_quality import psnr, ssim

__all__ = ["psnr_8bit", "ssim_8bit", "to_uint8"]


def to_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] -> ``(3, H, W)`` uint8: clipped, then rounded to the nearest 8-bit level.

    uint8 input is returned as a numpy array unchanged.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.rint(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


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
    return psnr(p, t, 255.0)


def ssim_8bit(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of two uint8 images ``(C, H, W)`` as MATLAB / the paper's ``calculate_ssim`` compute it.

    Per channel: :func:`~ldct_clip.metrics.image_quality.ssim` with an 11 x 11 Gaussian window (sigma 1.5), data
    range 255 and population statistics over the valid region; then the mean over channels.
    """
    p, t = _check_8bit_pair(pred, target)
    if min(p.shape[-2:]) < 11:
        raise InputError(f"SSIM needs images of at least 11 x 11 pixels, got {p.shape[-2]} x {p.shape[-1]}.")
    return float(np.mean([ssim(a, b, 255.0, window="gaussian", win_size=11, sigma=1.5, region="valid")
                          for a, b in zip(p, t)]))
