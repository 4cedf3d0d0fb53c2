"""Image-quality metrics for CT denoising under the protocols of the literature, plus noise measurements.

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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Union

import numpy as np
from scipy import ndimage
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from ldct_clip.errors import InputError

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "available_protocols",
    "compute_metrics",
    "find_uniform_roi",
    "get_protocol",
    "noise_power_spectrum",
    "noise_sd",
    "per_slice_metrics",
    "psnr",
    "radial_nps",
    "rmse",
    "ssim",
    "window",
]

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


# ----------------------------------------------------------------------------------------------------------
# elementary metrics
# ----------------------------------------------------------------------------------------------------------


def _pair(pred: np.ndarray, target: np.ndarray, ndims: tuple[int, ...] = (2, 3)) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prediction/target pair and return float64 copies."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise InputError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}.")
    if pred.ndim not in ndims:
        raise InputError(
            f"Expected a slice (X, Y) or a volume (X, Y, Z), got shape {pred.shape}; squeeze channel/batch axes first."
        )
    for name, arr in (("pred", pred), ("target", target)):
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise InputError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{name} contains NaN or infinite values.")
    return pred.astype(np.float64), target.astype(np.float64)


def window(image_hu: np.ndarray, protocol: str | Protocol) -> np.ndarray:
    """What PSNR/SSIM of ``protocol`` see: HU clipped to ``[hu_min, hu_max]``, mapped to [0, 1] if the
    protocol normalises.  Any shape; float64."""
    p = get_protocol(protocol)
    clipped = np.clip(np.asarray(image_hu, dtype=np.float64), p.hu_min, p.hu_max)
    if p.normalise:
        return (clipped - p.hu_min) / (p.hu_max - p.hu_min)
    return clipped


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float) -> float:
    """PSNR in dB, ``10 log10(L^2 / MSE)`` over all elements (``inf`` for identical arrays)."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    with np.errstate(divide="ignore"):  # identical arrays: L^2 / 0 is the inf we return, not a warning
        return float(peak_signal_noise_ratio(target, pred, data_range=float(data_range)))


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared error over all elements, in the arrays' units."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    return float(np.sqrt(mean_squared_error(target, pred)))


def _window_weights(kind: str, size: int, sigma: float) -> np.ndarray:
    if kind == "gaussian":
        d = np.arange(size) - (size - 1) / 2.0
        w = np.exp(-(d**2) / (2.0 * sigma**2))
    else:
        w = np.ones(size)
    return w / w.sum()


def _skimage_gaussian_size(sigma: float) -> int:
    """Side of the Gaussian window scikit-image's SSIM filters with: it truncates at 3.5 sigma, whatever
    ``win_size`` says (``win_size`` only sets its border crop and sample-covariance factor)."""
    return 2 * int(3.5 * sigma + 0.5) + 1


def ssim(
    pred: np.ndarray,
    target: np.ndarray,
    data_range: float,
    *,
    window: Literal["gaussian", "uniform"] = "gaussian",
    win_size: int = 11,
    sigma: float = 1.5,
    region: SsimRegion = "zero_pad",
    sample_covariance: bool = False,
) -> float:
    """Mean SSIM (Wang et al. 2004) of one 2D slice ``(X, Y)``.

    Local means, variances and covariance are separable weighted averages over a ``win_size`` square window;
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = data_range``.

    Args:
        pred, target: 2D arrays of the same shape, in the units of ``data_range``.
        data_range: ``L``.
        window: ``"gaussian"`` (``sigma`` in pixels) or ``"uniform"``.
        win_size: odd window side (pixels). With ``region="valid"`` and a Gaussian window it must be
          scikit-image's ``2 * int(3.5 * sigma + 0.5) + 1`` (11 for sigma 1.5).
        region: ``"zero_pad"`` -- the image is zero-padded (in its own units) and the SSIM map of every pixel
          is averaged, as pytorch-ssim's ``conv2d(..., padding=win_size // 2)`` in the paper's and RED-CNN's
          code; or ``"valid"`` -- only pixels whose window lies inside the image: scikit-image's
          ``structural_similarity`` (it filters with reflection and crops ``(win_size - 1) // 2`` pixels).
        sample_covariance: multiply local (co)variances by ``n / (n - 1)``, ``n = win_size^2``.

    Returns:
        the mean SSIM, a float in [-1, 1].
    """
    x, y = _pair(pred, target, ndims=(2,))
    if win_size < 3 or win_size % 2 == 0:
        raise InputError(f"win_size must be an odd integer >= 3, got {win_size}.")
    if min(x.shape) < win_size:
        raise InputError(f"SSIM needs slices of at least {win_size}x{win_size} pixels, got {x.shape}.")
    if region not in ("zero_pad", "valid"):
        raise InputError(f"region must be 'zero_pad' or 'valid', got {region!r}.")
    if window not in ("gaussian", "uniform"):
        raise InputError(f"ssim window must be 'gaussian' or 'uniform', got {window!r}.")
    if region == "valid":
        if window == "gaussian" and win_size != (size := _skimage_gaussian_size(sigma)):
            raise InputError(
                f"SSIM over the valid region is scikit-image's, whose Gaussian window for sigma {sigma:g} is "
                f"{size}x{size} pixels; pass win_size={size} (got {win_size})."
            )
        return float(
            structural_similarity(
                y,
                x,
                win_size=win_size,
                data_range=float(data_range),
                gaussian_weights=window == "gaussian",
                sigma=sigma,
                use_sample_covariance=sample_covariance,
            )
        )
    # Zero padding stays our own: scikit-image (reflection, then a border crop) and MONAI's SSIMMetric (a valid
    # convolution) both average only the interior, whereas the paper's and RED-CNN's pytorch-ssim averages the
    # whole map of the zero-padded image (5e-4 apart on a 512x512 slice, more on small ones).
    w = _window_weights(window, win_size, sigma)

    def local_mean(a: np.ndarray) -> np.ndarray:
        a = ndimage.correlate1d(a, w, axis=0, mode="constant", cval=0.0)
        return ndimage.correlate1d(a, w, axis=1, mode="constant", cval=0.0)

    mx, my = local_mean(x), local_mean(y)
    scale = win_size**2 / (win_size**2 - 1.0) if sample_covariance else 1.0
    vx = scale * (local_mean(x * x) - mx * mx)
    vy = scale * (local_mean(y * y) - my * my)
    cxy = scale * (local_mean(x * y) - mx * my)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(smap.mean())


# ----------------------------------------------------------------------------------------------------------
# protocol metrics
# ----------------------------------------------------------------------------------------------------------


def _slice_metrics(pred: np.ndarray, target: np.ndarray, p: Protocol) -> tuple[float, float, float]:
    wp, wt = window(pred, p), window(target, p)
    lo, hi = p.rmse_hu_range
    return (
        psnr(wp, wt, p.data_range),
        ssim(
            wp,
            wt,
            p.data_range,
            window=p.ssim_window,
            win_size=p.ssim_win_size,
            sigma=p.ssim_sigma,
            region=p.ssim_region,
            sample_covariance=p.ssim_sample_covariance,
        ),
        rmse(np.clip(pred, lo, hi), np.clip(target, lo, hi)),
    )


def per_slice_metrics(pred_hu: np.ndarray, target_hu: np.ndarray, protocol: str | Protocol = "paper") -> dict[str, np.ndarray]:
    """PSNR (dB), SSIM and RMSE (HU) of each axial slice under ``protocol``.

    Args:
        pred_hu, target_hu: slice ``(X, Y)`` or volume ``(X, Y, Z)`` in HU, same shape.
        protocol: a name from :data:`PROTOCOLS` or a :class:`Protocol`.

    Returns:
        ``{"psnr": (Z,), "ssim": (Z,), "rmse": (Z,)}`` float64 arrays (``Z = 1`` for a slice).
    """
    p = get_protocol(protocol)
    pred, target = _pair(pred_hu, target_hu)
    if pred.ndim == 2:
        pred, target = pred[:, :, None], target[:, :, None]
    values = np.array([_slice_metrics(pred[:, :, k], target[:, :, k], p) for k in range(pred.shape[2])])
    return {"psnr": values[:, 0], "ssim": values[:, 1], "rmse": values[:, 2]}


def compute_metrics(pred_hu: np.ndarray, target_hu: np.ndarray, protocol: str | Protocol = "paper") -> dict[str, float]:
    """PSNR (dB), SSIM and RMSE (HU) under ``protocol``, averaged over axial slices for a volume.

    Metrics are computed per 2D slice and then averaged (the papers report slice averages), so a volume's
    PSNR is the mean of slice PSNRs, not the PSNR of the pooled MSE.

    Returns:
        ``{"psnr": float, "ssim": float, "rmse": float}``.
    """
    per = per_slice_metrics(pred_hu, target_hu, protocol)
    return {name: float(np.mean(v)) for name, v in per.items()}


# ----------------------------------------------------------------------------------------------------------
# noise measurements
# ----------------------------------------------------------------------------------------------------------


def find_uniform_roi(
    image_hu: np.ndarray,
    size: int | None = None,
    *,
    hu_range: tuple[float, float] = (-150.0, 150.0),
    margin: int | None = None,
) -> tuple[slice, ...]:
    """The most uniform square region whose mean is in ``hu_range`` (water/soft tissue), for noise measurement.

    Every ``size`` x ``size`` window (all slices of a volume together) is scored by its local variance;
    windows whose mean lies outside ``hu_range`` in any slice, or that come within ``margin`` pixels of a
    region outside ``hu_range`` (air, fat, bone edges), are excluded.  The lowest variance wins.

    Args:
        image_hu: slice ``(X, Y)`` or volume ``(X, Y, Z)`` in HU.
        size: window side in pixels (default ``max(8, min(X, Y) // 16)``).
        hu_range: accepted range of window means (HU).
        margin: distance kept from pixels outside ``hu_range`` (default ``size // 2``).

    Returns:
        ``(slice_x, slice_y)`` for a slice, ``(slice_x, slice_y, slice(None))`` for a volume.

    Raises:
        InputError: no window qualifies (e.g. no water-like region of that size).
    """
    img = np.asarray(image_hu, dtype=np.float64)
    if img.ndim not in (2, 3):
        raise InputError(f"Expected a slice (X, Y) or a volume (X, Y, Z), got shape {img.shape}.")
    vol = img if img.ndim == 3 else img[:, :, None]
    nx, ny = vol.shape[:2]
    size = max(8, min(nx, ny) // 16) if size is None else int(size)
    if not 2 <= size <= min(nx, ny):
        raise InputError(f"ROI size must be between 2 and {min(nx, ny)} pixels, got {size}.")
    margin = size // 2 if margin is None else int(margin)
    lo, hi = hu_range
    # Local statistics of every window (uniform_filter is centred; index [i, j] is the window centred there).
    mean = ndimage.uniform_filter(vol, size=(size, size, 1), mode="nearest")
    var = ndimage.uniform_filter(vol * vol, size=(size, size, 1), mode="nearest") - mean * mean
    ok = np.all((mean >= lo) & (mean <= hi), axis=2)
    outside = np.any((vol < lo) | (vol > hi), axis=2)
    reach = size // 2 + margin
    if reach > 0:
        near_outside = ndimage.maximum_filter(outside, size=2 * reach + 1, mode="constant", cval=True)
    else:
        near_outside = outside
    ok &= ~near_outside
    # Keep the whole window inside the image.
    h0, h1 = size // 2, size - size // 2
    border = np.zeros_like(ok)
    border[h0 : nx - h1 + 1, h0 : ny - h1 + 1] = True
    ok &= border
    if not ok.any():
        raise InputError(
            f"No {size}x{size} region with a mean in {hu_range} HU away from edges was found; pass an explicit ROI "
            "or a smaller size."
        )
    score = np.where(ok, var.mean(axis=2), np.inf)
    i, j = np.unravel_index(int(np.argmin(score)), score.shape)
    roi = (slice(i - h0, i - h0 + size), slice(j - h0, j - h0 + size))
    return roi if img.ndim == 2 else roi + (slice(None),)


def noise_sd(
    image_hu: np.ndarray,
    roi: Roi | None = None,
    *,
    return_roi: bool = False,
    **find_kwargs,
) -> float | tuple[float, Roi]:
    """Noise SD (HU) inside a region of interest.

    Args:
        image_hu: slice ``(X, Y)`` or volume ``(X, Y, Z)`` in HU (or a noise/difference image).
        roi: a tuple of slices indexing ``image_hu``, a boolean mask of its shape, or ``None`` to pick the most
            uniform water/soft-tissue square with :func:`find_uniform_roi` (``find_kwargs`` are passed on).
            For a volume, the SD pools the ROI over all slices (sample SD, ``ddof=1``).
        return_roi: also return the ROI used.

    Returns:
        the SD in HU, or ``(sd, roi)`` with ``return_roi=True``.
    """
    img = np.asarray(image_hu, dtype=np.float64)
    if roi is None:
        roi = find_uniform_roi(img, **find_kwargs)
    if isinstance(roi, np.ndarray) and roi.dtype == bool:
        if roi.shape != img.shape:
            raise InputError(f"ROI mask shape {roi.shape} does not match the image shape {img.shape}.")
        values = img[roi]
    elif isinstance(roi, tuple):
        values = img[roi]
    else:
        raise InputError("roi must be a tuple of slices, a boolean mask of the image's shape, or None (automatic).")
    if values.size < 2:
        raise InputError(f"The ROI holds {values.size} pixel(s); noise SD needs at least 2.")
    sd = float(np.std(values, ddof=1))
    return (sd, roi) if return_roi else sd


def _pixel_pair(pixel_size_mm: float | Sequence[float]) -> tuple[float, float]:
    if np.ndim(pixel_size_mm) == 0:
        dx = dy = float(pixel_size_mm)
    else:
        if len(pixel_size_mm) != 2:
            raise InputError(f"pixel_size_mm must be a number or (dx, dy), got {pixel_size_mm!r}.")
        dx, dy = (float(v) for v in pixel_size_mm)
    if not (dx > 0 and dy > 0 and math.isfinite(dx) and math.isfinite(dy)):
        raise InputError(f"pixel_size_mm must be positive, got {pixel_size_mm!r}.")
    return dx, dy


def noise_power_spectrum(
    noise_rois: np.ndarray | Sequence[np.ndarray],
    pixel_size_mm: float | Sequence[float],
    *,
    detrend: Literal["mean", "linear"] = "mean",
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """2D noise power spectrum (ICRU 87 / IEC 62220 style) of a stack of noise-only ROIs.

    ``NPS(fx, fy) = dx * dy / (Nx * Ny) * < |FFT2(roi - trend)|^2 >`` averaged over ROIs, so that its integral
    over frequency equals the noise variance (Parseval).  Use ROIs of a uniform region, ideally of a
    difference image (noisy - noise-free, or two repeated scans divided by sqrt(2)).

    Args:
        noise_rois: ``(N, Nx, Ny)`` array, a single ``(Nx, Ny)`` ROI, or a list of equally shaped 2D ROIs, in HU.
        pixel_size_mm: ``d`` or ``(dx, dy)``, mm along the ROI's two axes.
        detrend: subtract each ROI's mean (``"mean"``) or its least-squares plane (``"linear"``, removes slow
            shading such as cupping).

    Returns:
        ``(nps_2d, (fx, fy))``: ``nps_2d`` of shape ``(Nx, Ny)`` in HU^2 mm^2 with zero frequency at the centre
        (``np.fft.fftshift`` order); ``fx`` (Nx,) and ``fy`` (Ny,) in 1/mm, in the same order.
    """
    rois = np.asarray(noise_rois, dtype=np.float64) if not isinstance(noise_rois, (list, tuple)) else None
    if rois is None:
        shapes = {np.shape(r) for r in noise_rois}
        if len(shapes) != 1:
            raise InputError(f"All ROIs must have the same shape, got {sorted(shapes)}.")
        rois = np.stack([np.asarray(r, dtype=np.float64) for r in noise_rois])
    if rois.ndim == 2:
        rois = rois[None]
    if rois.ndim != 3 or min(rois.shape[1:]) < 4:
        raise InputError(f"noise_rois must be (N, Nx, Ny) with Nx, Ny >= 4, got shape {rois.shape}.")
    dx, dy = _pixel_pair(pixel_size_mm)
    _, nx, ny = rois.shape
    if detrend == "mean":
        residual = rois - rois.mean(axis=(1, 2), keepdims=True)
    elif detrend == "linear":
        gx, gy = np.meshgrid(np.arange(nx) - (nx - 1) / 2, np.arange(ny) - (ny - 1) / 2, indexing="ij")
        design = np.stack([np.ones(nx * ny), gx.ravel(), gy.ravel()], axis=1)
        coef, *_ = np.linalg.lstsq(design, rois.reshape(len(rois), -1).T, rcond=None)
        residual = rois - (design @ coef).T.reshape(rois.shape)
    else:
        raise InputError(f"detrend must be 'mean' or 'linear', got {detrend!r}.")
    power = np.abs(np.fft.fft2(residual, axes=(1, 2))) ** 2
    nps = (dx * dy / (nx * ny)) * power.mean(axis=0)
    fx = np.fft.fftshift(np.fft.fftfreq(nx, d=dx))
    fy = np.fft.fftshift(np.fft.fftfreq(ny, d=dy))
    return np.fft.fftshift(nps), (fx, fy)


def radial_nps(
    nps_2d: np.ndarray,
    freqs: tuple[np.ndarray, np.ndarray],
    *,
    bin_width: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged NPS.

    Args:
        nps_2d: ``(Nx, Ny)`` 2D NPS from :func:`noise_power_spectrum` (zero frequency at the centre).
        freqs: its ``(fx, fy)`` in 1/mm.
        bin_width: width of the frequency annuli in 1/mm (default: the coarser of the two frequency steps).

    Returns:
        ``(f, nps_1d)``: centres of the annuli (1/mm, from 0 up to the smaller Nyquist frequency) and the mean
        NPS in each (HU^2 mm^2).  Empty annuli are dropped.
    """
    nps_2d = np.asarray(nps_2d, dtype=np.float64)
    fx, fy = (np.asarray(f, dtype=np.float64) for f in freqs)
    if nps_2d.shape != (fx.size, fy.size):
        raise InputError(f"nps_2d shape {nps_2d.shape} does not match the frequency axes ({fx.size}, {fy.size}).")
    step = max(abs(fx[1] - fx[0]), abs(fy[1] - fy[0])) if bin_width is None else float(bin_width)
    if not step > 0:
        raise InputError(f"bin_width must be positive, got {bin_width}.")
    fr = np.hypot(fx[:, None], fy[None, :])
    f_max = min(np.abs(fx).max(), np.abs(fy).max())
    index = np.floor(fr / step + 0.5).astype(int)  # annulus k holds |f| in [(k - 1/2) step, (k + 1/2) step)
    keep = fr <= f_max
    nbins = int(index[keep].max()) + 1
    total = np.bincount(index[keep], weights=nps_2d[keep], minlength=nbins)
    count = np.bincount(index[keep], minlength=nbins)
    filled = count > 0
    return (np.arange(nbins) * step)[filled], total[filled] / count[filled]
