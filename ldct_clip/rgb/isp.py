"""The camera pipeline (ISP) of the sRGB task, CBDNet-style, written from the description: sRGB <-> raw Bayer.

The paper trains its sRGB model on DIV2K images corrupted by simulating a camera: the clean sRGB
image is taken back to a raw Bayer mosaic (inverse ISP), signal-dependent raw noise is added there,
and the noisy raw is developed again (forward ISP).  Noise that is white and heteroscedastic in the
raw domain becomes spatially and chromatically correlated in sRGB, like real camera noise.

Pipeline (all images float; sRGB in [0, 1]; channel-first (3, H, W), channel order R, G, B)::

    inverse ISP (srgb_to_raw)                      forward ISP (raw_to_srgb)
    sRGB (3,H,W) in [0,1]                          raw (H,W) Bayer mosaic
      -> inverse tone curve (CRF)                    -> Malvar-He-Cutler demosaicing -> (3,H,W)
      -> inverse colour correction (CCM^-1)          -> white balance (x gains)
      -> inverse white balance (/ gains)             -> colour correction (CCM)
      -> mosaic (3,H,W) -> (H,W)                     -> clip to [0,1], tone curve (CRF)
    raw (H,W)                                      sRGB (3,H,W) in [0,1]

Tone curve: the sRGB curve (IEC 61966-2-1) or a power law ``v = l ** (1/gamma)``, optionally followed
by an S-shaped contrast curve ``S_k(t) = (1-k) t + k (3t^2 - 2t^3)`` of strength ``k`` in [0, 1]
(``k = 0``: none).  Gamma and ``k`` together form the small built-in parametric camera-response
family; nothing is downloaded (CBDNet's measured CRF database is not used).

Colour correction: ``ccm`` maps white-balanced camera RGB to linear sRGB (rows sum to 1 so that
white stays white).  :data:`CAMERA_CCMS` holds a few *synthetic* matrices of increasing strength,
shaped like real ones (strong positive diagonal, negative off-diagonal cross-talk correction); they
are not measurements of particular cameras.

The raw noise added between the two halves, and the MONAI transforms, are in :mod:`ldct_clip.rgb.camera`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ldct_clip.errors import InputError
from ldct_clip.rgb.arrays import ImageLike, SeedLike, make_rng, restore, to_numpy_image

__all__ = [
    "BAYER_PATTERNS",
    "CAMERA_CCMS",
    "ISPParams",
    "random_isp_params",
    "srgb_to_linear",
    "linear_to_srgb",
    "srgb_to_camera",
    "camera_to_srgb",
    "mosaic",
    "demosaic_malvar",
    "srgb_to_raw",
    "raw_to_srgb",
]

#: Supported 2x2 colour-filter layouts, read row by row from the top-left pixel.
BAYER_PATTERNS: tuple[str, ...] = ("RGGB", "BGGR", "GRBG", "GBRG")

#: Built-in camera-RGB -> linear-sRGB matrices (synthetic, see the module docstring).  Rows sum to 1.
CAMERA_CCMS: dict[str, np.ndarray] = {
    "identity": np.eye(3),
    "mild": np.array([[1.45, -0.35, -0.10], [-0.20, 1.40, -0.20], [0.00, -0.40, 1.40]]),
    "typical": np.array([[1.70, -0.55, -0.15], [-0.25, 1.55, -0.30], [0.05, -0.60, 1.55]]),
    "strong": np.array([[1.95, -0.80, -0.15], [-0.30, 1.70, -0.40], [0.02, -0.72, 1.70]]),
}

_CHANNEL = {"R": 0, "G": 1, "B": 2}


@dataclasses.dataclass
class ISPParams:
    """Parameters of the simulated camera, shared by the inverse and forward pipelines.

    Attributes:
        gamma: tone curve: ``"srgb"`` (the piecewise sRGB curve) or a power-law exponent > 0
            (encoding ``v = l ** (1 / gamma)``, e.g. 2.2).
        s_curve: strength ``k`` in [0, 1] of the S-shaped contrast curve applied after the gamma
            (0: none, 1: full smoothstep).
        ccm: 3x3 camera-RGB -> linear-sRGB matrix, or the name of one in :data:`CAMERA_CCMS`.
            Stored as a float64 (3, 3) array; must be invertible.
        wb_gains: white-balance gains (R, G, B) > 0 multiplying camera RGB in the forward ISP.
        bayer_pattern: colour-filter layout, one of :data:`BAYER_PATTERNS`.
    """

    gamma: float | str = "srgb"
    s_curve: float = 0.0
    ccm: Any = "typical"
    wb_gains: tuple[float, float, float] = (2.0, 1.0, 1.6)
    bayer_pattern: str = "RGGB"

    def __post_init__(self) -> None:
        if isinstance(self.gamma, str):
            if self.gamma != "srgb":
                raise InputError(f"gamma must be 'srgb' or a positive number, got {self.gamma!r}.")
        else:
            g = float(self.gamma)
            if not np.isfinite(g) or g <= 0:
                raise InputError(f"gamma must be 'srgb' or a positive number, got {self.gamma!r}.")
            self.gamma = g
        k = float(self.s_curve)
        if not 0.0 <= k <= 1.0:
            raise InputError(f"s_curve must be in [0, 1], got {self.s_curve!r}.")
        self.s_curve = k
        if isinstance(self.ccm, str):
            if self.ccm not in CAMERA_CCMS:
                raise InputError(f"unknown ccm {self.ccm!r}; choose one of {sorted(CAMERA_CCMS)} or give a 3x3 matrix.")
            ccm = CAMERA_CCMS[self.ccm].copy()
        else:
            ccm = np.array(self.ccm, dtype=np.float64)
        if ccm.shape != (3, 3) or not np.all(np.isfinite(ccm)):
            raise InputError(f"ccm must be a finite 3x3 matrix, got shape {ccm.shape}.")
        if abs(np.linalg.det(ccm)) < 1e-6:
            raise InputError("ccm must be invertible (the inverse ISP applies its inverse).")
        self.ccm = ccm
        gains = tuple(float(g) for g in self.wb_gains)
        if len(gains) != 3 or not all(np.isfinite(g) and g > 0 for g in gains):
            raise InputError(f"wb_gains must be three positive numbers (R, G, B), got {self.wb_gains!r}.")
        self.wb_gains = gains  # type: ignore[assignment]
        if self.bayer_pattern not in BAYER_PATTERNS:
            raise InputError(f"bayer_pattern must be one of {BAYER_PATTERNS}, got {self.bayer_pattern!r}.")


def random_isp_params(seed: SeedLike) -> ISPParams:
    """Draw a random camera, in the spirit of CBDNet's per-image random camera response.

    gamma: ``"srgb"`` or uniform in [1.8, 2.6] (even odds); s_curve uniform in [0, 1]; ccm one of the
    non-identity built-ins; R and B gains uniform in [1.5, 2.4] and [1.3, 2.0] (G = 1); Bayer layout
    uniform among :data:`BAYER_PATTERNS`.
    """
    rng = make_rng(seed)
    gamma: float | str = "srgb" if rng.random() < 0.5 else float(rng.uniform(1.8, 2.6))
    names = [n for n in CAMERA_CCMS if n != "identity"]
    return ISPParams(
        gamma=gamma,
        s_curve=float(rng.uniform(0.0, 1.0)),
        ccm=names[int(rng.integers(len(names)))],
        wb_gains=(float(rng.uniform(1.5, 2.4)), 1.0, float(rng.uniform(1.3, 2.0))),
        bayer_pattern=BAYER_PATTERNS[int(rng.integers(len(BAYER_PATTERNS)))],
    )


def _params(params: ISPParams | None) -> ISPParams:
    if params is None:
        return ISPParams()
    if not isinstance(params, ISPParams):
        raise InputError(f"params must be an ISPParams or None, got {type(params).__name__}.")
    return params


def _check_rgb(x: np.ndarray, name: str) -> None:
    if x.ndim != 3 or x.shape[0] != 3:
        raise InputError(f"{name} must be channel-first RGB of shape (3, H, W), got {x.shape}.")


# --------------------------------------------------------------------------------------------------
# tone curve


def _s_curve(t: np.ndarray, k: float) -> np.ndarray:
    return (1.0 - k) * t + k * (3.0 * t**2 - 2.0 * t**3)


def _inverse_s_curve(v: np.ndarray, k: float) -> np.ndarray:
    """Inverse of :func:`_s_curve` on [0, 1] by bisection (monotone: S' = 1 - k + 6k t(1-t) >= 0).

    Bisection rather than Newton because the slope vanishes at 0 and 1 when k = 1.  36 halvings of
    [0, 1] leave an error below 1.5e-11, far under float32 resolution.
    """
    if k == 0.0:
        return v.copy()
    lo = np.zeros_like(v)
    width = 1.0
    for _ in range(36):
        width *= 0.5
        mid = lo + width
        # where S(mid) < v the root lies above mid: move the lower end up.
        lo += width * (_s_curve(mid, k) < v)
    return lo + 0.5 * width


def linear_to_srgb(linear: np.ndarray, params: ISPParams | None = None) -> np.ndarray:
    """Tone curve (CRF): linear [0, 1] -> encoded [0, 1], elementwise; inputs are clipped to [0, 1] first."""
    p = _params(params)
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    if p.gamma == "srgb":
        t = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
    else:
        t = np.power(x, 1.0 / float(p.gamma))
    return _s_curve(t, p.s_curve)


def srgb_to_linear(encoded: np.ndarray, params: ISPParams | None = None) -> np.ndarray:
    """Inverse tone curve: encoded [0, 1] -> linear [0, 1], elementwise; inputs are clipped to [0, 1] first."""
    p = _params(params)
    v = np.clip(np.asarray(encoded, dtype=np.float64), 0.0, 1.0)
    t = _inverse_s_curve(v, p.s_curve)
    if p.gamma == "srgb":
        return np.where(t <= 0.04045, t / 12.92, np.power((t + 0.055) / 1.055, 2.4))
    return np.power(t, float(p.gamma))


# --------------------------------------------------------------------------------------------------
# colour: sRGB <-> white-balanced camera RGB <-> raw camera RGB


def srgb_to_camera(rgb: ImageLike, params: ISPParams | None = None) -> ImageLike:
    """Inverse ISP without mosaicing: sRGB (3, H, W) in [0, 1] -> raw camera RGB (3, H, W), not clipped."""
    p = _params(params)
    x = to_numpy_image(rgb, "rgb")
    _check_rgb(x, "rgb")
    lin = srgb_to_linear(x, p)
    cam_wb = np.einsum("ij,jhw->ihw", np.linalg.inv(p.ccm), lin)
    cam = cam_wb / np.asarray(p.wb_gains)[:, None, None]
    return restore(cam, rgb)


def camera_to_srgb(cam: ImageLike, params: ISPParams | None = None) -> ImageLike:
    """Forward ISP without demosaicing: raw camera RGB (3, H, W) -> sRGB (3, H, W) clipped to [0, 1]."""
    p = _params(params)
    x = to_numpy_image(cam, "cam")
    _check_rgb(x, "cam")
    return restore(_camera_to_srgb(x, p), cam)


def _camera_to_srgb(cam: np.ndarray, p: ISPParams) -> np.ndarray:
    cam_wb = cam * np.asarray(p.wb_gains)[:, None, None]
    lin = np.einsum("ij,jhw->ihw", p.ccm, cam_wb)
    return linear_to_srgb(lin, p)  # clips the linear image to [0, 1]


# --------------------------------------------------------------------------------------------------
# Bayer mosaic and Malvar-He-Cutler demosaicing


def _site_colours(pattern: str) -> list[list[int]]:
    """Channel index at each of the 2x2 sites: ``[[c00, c01], [c10, c11]]``."""
    return [[_CHANNEL[pattern[0]], _CHANNEL[pattern[1]]], [_CHANNEL[pattern[2]], _CHANNEL[pattern[3]]]]


def mosaic(cam: ImageLike, pattern: str = "RGGB") -> ImageLike:
    """Sample camera RGB (3, H, W) through a Bayer colour-filter array: -> raw (H, W), any H, W >= 1."""
    if pattern not in BAYER_PATTERNS:
        raise InputError(f"bayer pattern must be one of {BAYER_PATTERNS}, got {pattern!r}.")
    x = to_numpy_image(cam, "cam")
    _check_rgb(x, "cam")
    raw = np.empty(x.shape[1:], dtype=np.float64)
    for i, row in enumerate(_site_colours(pattern)):
        for j, c in enumerate(row):
            raw[i::2, j::2] = x[c, i::2, j::2]
    if isinstance(cam, torch.Tensor):
        return torch.as_tensor(raw, dtype=cam.dtype, device=cam.device)
    return raw.astype(cam.dtype, copy=False)


# Malvar, He, Cutler, "High-quality linear interpolation for demosaicing of Bayer-patterned color
# images", ICASSP 2004: bilinear interpolation corrected by the Laplacian of the channel that is
# sampled at the pixel.  Weights in 1/8, centre at [2, 2]; all four are symmetric under a 180-degree
# rotation, so correlation and convolution coincide.
_K_G_AT_RB = np.array(
    [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]], dtype=np.float64
) / 8.0
# At a green pixel, the colour sampled at its left/right neighbours.
_K_ROW_AT_G = np.array(
    [[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]], dtype=np.float64
) / 8.0
# At a green pixel, the colour sampled at its up/down neighbours.
_K_COL_AT_G = _K_ROW_AT_G.T.copy()
# At a red (blue) pixel, blue (red), sampled at the diagonal neighbours.
_K_DIAG_AT_RB = np.array(
    [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]],
    dtype=np.float64,
) / 8.0


def demosaic_malvar(raw: ImageLike, pattern: str = "RGGB") -> ImageLike:
    """Malvar-He-Cutler (2004) demosaicing: raw (H, W) Bayer mosaic -> camera RGB (3, H, W).

    Gradient-corrected linear interpolation with four 5x5 kernels.  Borders use mirror padding
    (``d c b | a b c d | c b a``), which keeps the Bayer phase, so a constant-colour mosaic is
    reconstructed exactly everywhere and a linear ramp exactly away from the 2-pixel border.
    The sampled value of each pixel is kept as is.  Values are not clipped.
    """
    if pattern not in BAYER_PATTERNS:
        raise InputError(f"bayer pattern must be one of {BAYER_PATTERNS}, got {pattern!r}.")
    x = to_numpy_image(raw, "raw")
    if x.ndim != 2:
        raise InputError(f"raw must be a Bayer mosaic of shape (H, W), got {x.shape}.")
    filt = {
        "g": ndimage.correlate(x, _K_G_AT_RB, mode="mirror"),
        "row": ndimage.correlate(x, _K_ROW_AT_G, mode="mirror"),
        "col": ndimage.correlate(x, _K_COL_AT_G, mode="mirror"),
        "diag": ndimage.correlate(x, _K_DIAG_AT_RB, mode="mirror"),
    }
    out = np.empty((3,) + x.shape, dtype=np.float64)
    sites = _site_colours(pattern)
    g = _CHANNEL["G"]
    for i in range(2):
        for j in range(2):
            c = sites[i][j]
            sl = (slice(i, None, 2), slice(j, None, 2))
            out[(c,) + sl] = x[sl]
            if c == g:
                # Green site: its horizontal neighbours carry one of R/B, its vertical ones the other.
                out[(sites[i][1 - j],) + sl] = filt["row"][sl]
                out[(sites[1 - i][j],) + sl] = filt["col"][sl]
            else:
                out[(g,) + sl] = filt["g"][sl]
                out[(sites[1 - i][1 - j],) + sl] = filt["diag"][sl]
    return restore(out, raw)


# --------------------------------------------------------------------------------------------------
# full pipelines and raw noise


def srgb_to_raw(rgb: ImageLike, params: ISPParams | None = None) -> ImageLike:
    """Inverse ISP: sRGB (3, H, W) in [0, 1] -> raw Bayer mosaic (H, W) (linear, not clipped).

    Steps: inverse tone curve, inverse CCM, inverse white balance, mosaicing.  Input values outside
    [0, 1] are clipped (not representable in the tone curve's domain).  Same container/dtype as ``rgb``.
    """
    p = _params(params)
    x = to_numpy_image(rgb, "rgb")
    _check_rgb(x, "rgb")
    cam = srgb_to_camera(x, p)
    return restore(mosaic(cam, p.bayer_pattern), rgb)


def raw_to_srgb(raw: ImageLike, params: ISPParams | None = None) -> ImageLike:
    """Forward ISP: raw Bayer mosaic (H, W) -> sRGB (3, H, W) in [0, 1].

    Steps: Malvar demosaicing, white balance, CCM, clip to [0, 1], tone curve.  Same container/dtype
    as ``raw``.
    """
    p = _params(params)
    x = to_numpy_image(raw, "raw")
    if x.ndim != 2:
        raise InputError(f"raw must be a Bayer mosaic of shape (H, W), got {x.shape}.")
    return restore(_camera_to_srgb(demosaic_malvar(x, p.bayer_pattern), p), raw)
