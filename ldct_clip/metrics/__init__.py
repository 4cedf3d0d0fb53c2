"""Image-quality metrics for CT denoising under the protocols of the literature, plus noise measurements.

:mod:`~ldct_clip.metrics.protocols` names the protocols (HU range, windowing, data range, SSIM window and border
handling), :mod:`~ldct_clip.metrics.image_quality` computes PSNR, SSIM and RMSE under them, and
:mod:`~ldct_clip.metrics.noise` measures noise (uniform ROI, SD, NPS and its TG-233 scalars); task-based image
quality lives in :mod:`~ldct_clip.metrics.detectability` (model observers, low-contrast detectability) and
:mod:`~ldct_clip.metrics.resolution` (task transfer function).
"""

from ldct_clip.metrics.image_quality import compute_metrics, per_slice_metrics, psnr, rmse, ssim, window
from ldct_clip.metrics.noise import find_uniform_roi, noise_power_spectrum, noise_sd, nps_summary, radial_nps
from ldct_clip.metrics.protocols import PROTOCOLS, Protocol, available_protocols, get_protocol

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "available_protocols",
    "compute_metrics",
    "find_uniform_roi",
    "get_protocol",
    "noise_power_spectrum",
    "noise_sd",
    "nps_summary",
    "per_slice_metrics",
    "psnr",
    "radial_nps",
    "rmse",
    "ssim",
    "window",
]
