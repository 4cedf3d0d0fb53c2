"""PSNR, SSIM and RMSE of CT images, elementary and under a named protocol of :mod:`ldct_clip.metrics.protocols`.

Arrays follow MONAI: a slice is ``(X, Y)``, a volume ``(X, Y, Z)`` with axial slices ``vol[:, :, k]``, in HU.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from ldct_clip.errors import InputError
from ldct_clip.metrics.protocols import Protocol, SsimRegion, get_protocol

__all__ = ["METRICS", "compute_metrics", "per_slice_metrics", "psnr", "rmse", "slice_metric", "ssim", "window"]

# ----------------------------------------------------------------------------------------------------------
# elementary metrics
# ----------------------------------------------------------------------------------------------------------


def check_pair(pred: np.ndarray, target: np.ndarray, ndims: tuple[int, ...] = (2, 3)) -> tuple[np.ndarray, np.ndarray]:
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
    x, y = check_pair(pred, target, ndims=(2,))
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


#: The metrics a protocol defines, in the order :func:`per_slice_metrics` returns them.
METRICS: tuple[str, ...] = ("psnr", "ssim", "rmse")


def slice_metric(pred_hu: np.ndarray, target_hu: np.ndarray, metric: str, protocol: str | Protocol = "paper") -> float:
    """One metric of ``protocol`` on one ``(X, Y)`` HU slice: PSNR (dB), SSIM or RMSE (HU).

    The inputs are not validated (the callers have); ``metric`` is one of :data:`METRICS`.
    """
    p = get_protocol(protocol)
    if metric == "rmse":
        lo, hi = p.rmse_hu_range
        return rmse(np.clip(pred_hu, lo, hi), np.clip(target_hu, lo, hi))
    wp, wt = window(pred_hu, p), window(target_hu, p)
    if metric == "psnr":
        return psnr(wp, wt, p.data_range)
    if metric == "ssim":
        return ssim(wp, wt, p.data_range, window=p.ssim_window, win_size=p.ssim_win_size, sigma=p.ssim_sigma,
                    region=p.ssim_region, sample_covariance=p.ssim_sample_covariance)
    raise InputError(f"metric must be one of {METRICS}, got {metric!r}.")


def per_slice_metrics(pred_hu: np.ndarray, target_hu: np.ndarray, protocol: str | Protocol = "paper") -> dict[str, np.ndarray]:
    """PSNR (dB), SSIM and RMSE (HU) of each axial slice under ``protocol``.

    Args:
        pred_hu, target_hu: slice ``(X, Y)`` or volume ``(X, Y, Z)`` in HU, same shape.
        protocol: a name from :data:`PROTOCOLS` or a :class:`Protocol`.

    Returns:
        ``{"psnr": (Z,), "ssim": (Z,), "rmse": (Z,)}`` float64 arrays (``Z = 1`` for a slice).
    """
    p = get_protocol(protocol)
    pred, target = check_pair(pred_hu, target_hu)
    if pred.ndim == 2:
        pred, target = pred[:, :, None], target[:, :, None]
    values = np.array([[slice_metric(pred[:, :, k], target[:, :, k], m, p) for m in METRICS]
                       for k in range(pred.shape[2])])
    return {m: values[:, i] for i, m in enumerate(METRICS)}


def compute_metrics(pred_hu: np.ndarray, target_hu: np.ndarray, protocol: str | Protocol = "paper") -> dict[str, float]:
    """PSNR (dB), SSIM and RMSE (HU) under ``protocol``, averaged over axial slices for a volume.

    Metrics are computed per 2D slice and then averaged (the papers report slice averages), so a volume's
    PSNR is the mean of slice PSNRs, not the PSNR of the pooled MSE.

    Returns:
        ``{"psnr": float, "ssim": float, "rmse": float}``.
    """
    per = per_slice_metrics(pred_hu, target_hu, protocol)
    return {name: float(np.mean(v)) for name, v in per.items()}
