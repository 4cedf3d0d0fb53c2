"""Noise retention: a fixed share of what the network removed is given back, ``out = pred + f * (input - pred)``.

Why: a denoiser trained towards noise-free images removes, with the noise, the fine texture (parenchyma, small
vessels, the grain a reader expects of a normal-dose scan) and leaves a flat, "plastic" image. A normal-dose scan
keeps some noise, and the scans users compare against are normal-dose scans. Giving back a fixed fraction of the
removed residual keeps a share of the input's texture and noise grain in every region, as the blending
percentage of scanners' iterative reconstructions does. The fraction is a config default
(``inference.json``'s ``noise_retention``), chosen on the two real validation slices (model card); it is the
same for every noise level, so nobody has to set it per scan.
"""

from __future__ import annotations

import math

from monai.config import KeysCollection
from monai.transforms import Transform

from ldct_clip.ct.hu import ArrayLike
from ldct_clip.transforms.reference import ReferenceMapTransform, reference_like

__all__ = ["RetainNoise", "RetainNoised", "check_fraction"]


def check_fraction(fraction: float) -> float:
    """``fraction`` as a float in [0, 1], or a ``ValueError`` saying what is allowed."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ValueError(f"noise_retention must be a number in [0, 1], got {fraction!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"noise_retention must be in [0, 1] (0: the network output, 1: the input), got {fraction!r}")
    return value


class RetainNoise(Transform):
    """Array transform: ``img + fraction * (reference - img)``, i.e. ``(1 - fraction) * img + fraction *
    reference``.

    ``img`` is the denoised image and ``reference`` the input it came from, both in HU and of the same shape
    (any layout, e.g. ``(C, X, Y, Z)``). ``fraction`` 0 returns ``img`` unchanged, 1 the input. The result has
    the type, dtype and device of ``img`` (its metadata too, for a ``MetaTensor``). Where ``reference`` equals
    ``img`` (the voxels :class:`~ldct_clip.transforms.KeepOutsideWindow` took from the input) nothing changes.
    """

    def __init__(self, fraction: float = 0.0) -> None:
        self.fraction = check_fraction(fraction)

    def __call__(self, img: ArrayLike, reference: ArrayLike) -> ArrayLike:
        ref = reference_like(img, reference)
        if self.fraction == 0.0:
            return img
        return img + self.fraction * (ref - img)


class RetainNoised(ReferenceMapTransform):
    """Dictionary version of :class:`RetainNoise`: ``d[key]`` gets back ``fraction`` of ``d[reference_key] -
    d[key]``."""

    def __init__(
        self, keys: KeysCollection, reference_key: str, fraction: float = 0.0, allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, reference_key, RetainNoise(fraction), allow_missing_keys)
