"""Every metric of ldct-clip, as functions of arrays and as MONAI/ignite metric classes.

* CT image quality under the protocols of the literature: :mod:`~ldct_clip.metrics.protocols` names them (HU
  range, windowing, data range, SSIM window and border handling), :mod:`~ldct_clip.metrics.image_quality`
  computes PSNR, SSIM and RMSE under them (the package's one PSNR and one SSIM).
* 8-bit RGB PSNR and SSIM of the paper's RGB test scripts, on those same two: :mod:`~ldct_clip.metrics.rgb`.
* The validation metrics of the trainers, as MONAI cumulative metrics for ``IgniteMetricHandler``:
  :mod:`~ldct_clip.metrics.cumulative` (CT and RGB).
* Noise: uniform ROI, SD, NPS and its TG-233 scalars (:mod:`~ldct_clip.metrics.noise`).
* Task-based image quality: model observers and low-contrast detectability
  (:mod:`~ldct_clip.metrics.detectability`, :mod:`~ldct_clip.metrics.channels`) and the task transfer function
  (:mod:`~ldct_clip.metrics.resolution`).

Only the CT functions are imported here (numpy/scipy only); import the RGB and cumulative modules by name.
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
