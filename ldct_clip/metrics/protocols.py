"""The metric protocols of the CT denoising literature: the HU range, window and SSIM variant of PSNR/SSIM/RMSE.

PSNR/SSIM/RMSE numbers are only comparable under one protocol (HU range, windowing, data range, SSIM
window and border handling), so each protocol is a named :class:`Protocol` in :data:`PROTOCOLS`:

=========================  =================================  =========  ====================================
name                       PSNR/SSIM computed on              L          SSIM
=========================  =================================  =========  ====================================
``paper``                  HU clipped to [-1024, 3072]        4096       Gaussian 11x11, s=1.5, zero padding
``redcnn``                 HU truncated to [-160, 240]        400        Gaussian 11x11, s=1.5, zero padding
``ldct-benchmark-chest``   window C -600 / W 1500 -> [0, 1]   1          scikit-image default (7x7 uniform)
``ldct-benchmark-abdomen`` window C 50 / W 400 -> [0, 1]      1          scikit-image default (7x7 uniform)
``ldct-benchmark-head``    window C 40 / W 80 -> [0, 1]       1          scikit-image default (7x7 uniform)
=========================  =================================  =========  ====================================

RMSE is always in HU: on the clipped range for ``paper``/``redcnn``, on [-1024, 1900] HU for ldct-benchmark.

Arrays follow MONAI: a slice is ``(X, Y)``, a volume ``(X, Y, Z)`` with axial slices ``vol[:, :, k]``, in HU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import numpy as np

from ldct_clip.errors import InputError

__all__ = ["PROTOCOLS", "Protocol", "SsimRegion", "available_protocols", "get_protocol"]

SsimRegion = Literal["zero_pad", "valid"]
Roi = Union[tuple, np.ndarray]




@dataclass(frozen=True)
class Protocol:
    """How PSNR, SSIM and RMSE are computed in one line of the literature.

    Attributes:
        name: registry key.
        hu_min, hu_max: HU range of PSNR/SSIM; values outside are clipped to it.
        normalise: map ``[hu_min, hu_max]`` linearly to [0, 1] before PSNR/SSIM (a display window);
            otherwise PSNR/SSIM see the clipped HU values.
        data_range: ``L`` of PSNR (``10 log10(L^2 / MSE)``) and of SSIM's ``C1 = (0.01 L)^2``,
            ``C2 = (0.03 L)^2``, in the units PSNR/SSIM see (HU, or 1 after normalising).
        ssim_window: ``"gaussian"`` (weights ``exp(-d^2 / (2 sigma^2))``, normalised) or ``"uniform"``.
        ssim_win_size: window side in pixels.
        ssim_sigma: Gaussian SD in pixels (ignored for a uniform window).
        ssim_region: ``"zero_pad"``: local statistics over a zero-padded image ('same' size, every pixel
            averaged; pytorch-ssim, which the paper and RED-CNN use) -- or ``"valid"``: only pixels whose
            window lies inside the image (scikit-image's ``structural_similarity``).
        ssim_sample_covariance: scale local (co)variances by ``n / (n - 1)`` (scikit-image's default).
        rmse_hu_range: HU range both images are clipped to before RMSE (in HU).
        description: where the protocol comes from.
    """

    name: str
    hu_min: float
    hu_max: float
    normalise: bool
    data_range: float
    ssim_window: Literal["gaussian", "uniform"] = "gaussian"
    ssim_win_size: int = 11
    ssim_sigma: float = 1.5
    ssim_region: SsimRegion = "zero_pad"
    ssim_sample_covariance: bool = False
    rmse_hu_range: tuple[float, float] = (-1024.0, 3072.0)
    description: str = ""


def _center_width(center: float, width: float) -> tuple[float, float]:
    """HU range of a DICOM-style window (PS3.3 C.11.2.1.2, as ldct-benchmark applies it):
    ``[c - w/2, c + w/2 - 1]`` is mapped linearly to [0, 1]."""
    return center - width / 2.0, center + width / 2.0 - 1.0


def _ldct_benchmark(region: str, center: float, width: float) -> Protocol:
    lo, hi = _center_width(center, width)
    return Protocol(
        name=f"ldct-benchmark-{region}",
        hu_min=lo,
        hu_max=hi,
        normalise=True,
        data_range=1.0,
        ssim_window="uniform",
        ssim_win_size=7,
        ssim_region="valid",
        ssim_sample_covariance=True,
        rmse_hu_range=(-1024.0, 1900.0),
        description=(
            f"Eulig et al., Med Phys 2024 (ldct-benchmark), {region}: PSNR/SSIM on the window C {center:g} / W {width:g} "
            "mapped to [0, 1], SSIM as skimage.metrics.structural_similarity defaults; RMSE on [-1024, 1900] HU."
        ),
    )


#: The registry of named protocols.
PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="paper",
            hu_min=-1024.0,
            hu_max=3072.0,
            normalise=False,
            data_range=4096.0,
            rmse_hu_range=(-1024.0, 3072.0),
            description=(
                "Cheng et al. CVPR 2024 (Mayo-2016 L506, 1 mm): full [-1024, 3072] HU, data range 4096, SSIM "
                "with an 11x11 Gaussian window (sigma 1.5) over the zero-padded image, as its reference code."
            ),
        ),
        Protocol(
            name="redcnn",
            hu_min=-160.0,
            hu_max=240.0,
            normalise=False,
            data_range=400.0,
            rmse_hu_range=(-160.0, 240.0),
            description="RED-CNN / CTformer (Mayo-2016 L506, 3 mm): HU truncated to [-160, 240], data range 400.",
        ),
        _ldct_benchmark("chest", -600.0, 1500.0),
        _ldct_benchmark("abdomen", 50.0, 400.0),
        _ldct_benchmark("head", 40.0, 80.0),
    )
}


def available_protocols() -> list[str]:
    """Names of the registered protocols."""
    return sorted(PROTOCOLS)


def get_protocol(protocol: str | Protocol) -> Protocol:
    """Look up a protocol by name (a :class:`Protocol` is returned as is)."""
    if isinstance(protocol, Protocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except (KeyError, TypeError):
        raise InputError(
            f"Unknown metric protocol {protocol!r}; choose one of {available_protocols()} or pass a Protocol."
        ) from None
