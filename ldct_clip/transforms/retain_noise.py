"""Noise retention: a share of what the network removed is given back, ``out = pred + f * (input - pred)``.

Why: a denoiser trained towards noise-free images removes, with the noise, the fine texture (parenchyma, small
vessels, the grain a reader expects of a normal-dose scan) and leaves a flat, "plastic" image. A normal-dose scan
keeps some noise, and the scans users compare against are normal-dose scans. Giving back a share of the removed
residual keeps some of the input's texture and noise grain in every region, as the blending percentage of
scanners' iterative reconstructions does.

The share is ``fraction`` (``inference.json``'s ``noise_retention``), but at most ``max_sd / sd`` in each axial
slice, where ``sd`` is the slice's robust SD of the removed residual in soft tissue (``max_sd``:
``noise_retention_max_sd``, in HU). A normal-dose scan keeps a few HU of noise whatever the dose of the input; a
fixed share of a very noisy input (2-5 % dose, 60-110 HU removed) would give back 10-17 HU of noise, more than a
normal-dose scan has. Both defaults were chosen on the two real validation slices (model card); both follow from
the image, so nobody has to set them per scan.
"""

from __future__ import annotations

import math

import torch
from monai.config import KeysCollection
from monai.transforms import Transform
from monai.utils import convert_to_tensor

from ldct_clip.ct.hu import ArrayLike
from ldct_clip.transforms.reference import ReferenceMapTransform, reference_like

__all__ = ["RetainNoise", "RetainNoised", "check_fraction", "check_max_sd", "residual_sd_per_slice"]

#: HU range of the denoised image where the residual's SD is measured: soft tissue and fat, where the removed
#: residual is noise; bone edges and air borders, where it is mostly structure, are left out.
SOFT_TISSUE_HU = (-300.0, 300.0)
#: Fewer soft-tissue voxels than this in a slice (air above the head, a phantom's edge): its SD is not measured
#: and the slice gets ``fraction`` itself.
MIN_VOXELS = 256


def check_fraction(fraction: float) -> float:
    """``fraction`` as a float in [0, 1], or a ``ValueError`` saying what is allowed."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ValueError(f"noise_retention must be a number in [0, 1], got {fraction!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"noise_retention must be in [0, 1] (0: the network output, 1: the input), got {fraction!r}")
    return value


def check_max_sd(max_sd: float | str | None) -> float | None:
    """``max_sd`` as a float > 0, ``inf`` (or the words ``none``/``null``, as a command line gives them) for no cap,
    ``None`` kept (no cap); a ``ValueError`` saying what is allowed otherwise."""
    if max_sd is None:
        return None
    if isinstance(max_sd, str) and max_sd.strip().lower() in ("none", "null"):
        return float("inf")
    try:
        value = float(max_sd)
    except (TypeError, ValueError):
        raise ValueError(f"noise_retention_max_sd must be a number of HU > 0 or none, got {max_sd!r}") from None
    if not (value > 0.0):  # also refuses NaN
        raise ValueError(f"noise_retention_max_sd must be > 0 HU (none: no cap), got {max_sd!r}")
    return value


def residual_sd_per_slice(denoised: ArrayLike, residual: ArrayLike) -> torch.Tensor:
    """Robust SD (1.4826 x the median absolute deviation) of ``residual`` per axial slice, over the voxels whose
    ``denoised`` value lies in :data:`SOFT_TISSUE_HU`.

    Args:
        denoised, residual: same shape, in HU; slices along the last axis (``(C, X, Y, Z)`` or ``(X, Y, Z)``), or one
            ``(X, Y)`` slice.

    Returns:
        float64 CPU tensor of shape ``(Z,)`` (``(1,)`` for a 2D slice); NaN for a slice with fewer than
        :data:`MIN_VOXELS` soft-tissue voxels.
    """
    den, res = (convert_to_tensor(a, track_meta=False).detach() for a in (denoised, residual))
    if den.ndim < 3:
        den, res = den[..., None], res[..., None]
    sd = torch.full((den.shape[-1],), float("nan"), dtype=torch.float64)
    for k in range(den.shape[-1]):
        # one slice at a time, and only its soft-tissue voxels in float64: no float64 copy of the whole volume
        d = den[..., k]
        values = res[..., k][(d >= SOFT_TISSUE_HU[0]) & (d <= SOFT_TISSUE_HU[1])].to("cpu", torch.float64)
        if values.numel() >= MIN_VOXELS:
            sd[k] = 1.4826 * (values - values.median()).abs().median()
    return sd


class RetainNoise(Transform):
    """Array transform: ``img + f * (reference - img)``, with ``f = min(fraction, max_sd / sd)`` per axial slice.

    ``img`` is the denoised image and ``reference`` the input it came from, both in HU and of the same shape
    (slices along the last axis, e.g. ``(C, X, Y, Z)``; a 2D array is one slice). ``sd`` is
    :func:`residual_sd_per_slice` of ``reference - img``; ``max_sd=None`` (or a slice whose SD is not measured)
    gives ``f = fraction``. ``fraction`` 0 returns ``img`` unchanged, 1 with no cap the input. The result has the
    type, dtype and device of ``img`` (its metadata too, for a ``MetaTensor``). Where ``reference`` equals ``img``
    (the voxels :class:`~ldct_clip.transforms.KeepOutsideWindow` took from the input) nothing changes.
    """

    def __init__(self, fraction: float = 0.0, max_sd: float | None = None) -> None:
        self.fraction = check_fraction(fraction)
        self.max_sd = check_max_sd(max_sd)

    def shares(self, img: ArrayLike, reference: ArrayLike) -> torch.Tensor:
        """The share ``f`` given back in each slice: float64 CPU tensor ``(Z,)`` (``(1,)`` for a 2D array)."""
        return self._shares(img, reference_like(img, reference) - img)

    def _shares(self, img: ArrayLike, residual: ArrayLike) -> torch.Tensor:
        n = img.shape[-1] if img.ndim >= 3 else 1
        f = torch.full((n,), self.fraction, dtype=torch.float64)
        if self.max_sd is None or self.fraction == 0.0:
            return f
        sd = residual_sd_per_slice(img, residual)
        measured = torch.isfinite(sd) & (sd > 0)
        f[measured] = torch.clamp(self.max_sd / sd[measured], max=self.fraction)
        return f

    def __call__(self, img: ArrayLike, reference: ArrayLike) -> ArrayLike:
        ref = reference_like(img, reference)
        if self.fraction == 0.0:
            return img
        residual = ref - img
        f = self._shares(img, residual)
        if isinstance(img, torch.Tensor):
            f = f.to(device=img.device, dtype=img.dtype)
        else:
            f = f.numpy().astype(img.dtype)
        if img.ndim < 3:
            f = f[0]
        return img + f * residual


class RetainNoised(ReferenceMapTransform):
    """Dictionary version of :class:`RetainNoise`: ``d[key]`` gets back its share of ``d[reference_key] -
    d[key]``."""

    def __init__(
        self, keys: KeysCollection, reference_key: str, fraction: float = 0.0, max_sd: float | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, reference_key, RetainNoise(fraction, max_sd), allow_missing_keys)
