"""Keeping what the HU window clips: the voxels outside ``[hu_min, hu_max]`` come from the input.

Clipping loses the values outside the window (:mod:`ldct_clip.ct.hu`), so the inverse map cannot bring them back:
:class:`KeepOutsideWindow` takes them from the input instead.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Transform

from ldct_clip.ct.hu import ArrayLike, check_window
from ldct_clip.transforms.reference import ReferenceMapTransform, reference_like

__all__ = ["KeepOutsideWindow", "KeepOutsideWindowd"]


class KeepOutsideWindow(Transform):
    """Array transform: where the input HU lie outside ``[hu_min, hu_max]`` (scanner padding such as -3024,
    dense metal), take the input value instead of the network's output.

    The window clips such voxels before the network sees them, so its output there carries no information;
    keeping the input keeps the padding and the metal as they were instead of flattening them to the window
    edges. ``img`` (network output in HU) and ``reference`` (its input in HU) have the same shape; the result
    has the type, dtype and device of ``img``.
    """

    def __init__(self, hu_min: float = -1024.0, hu_max: float = 3072.0) -> None:
        self.hu_min, self.hu_max = check_window(hu_min, hu_max)

    def __call__(self, img: ArrayLike, reference: ArrayLike) -> ArrayLike:
        ref = reference_like(img, reference)
        where = torch.where if isinstance(img, torch.Tensor) else np.where
        return where((ref < self.hu_min) | (ref > self.hu_max), ref, img)


class KeepOutsideWindowd(ReferenceMapTransform):
    """Dictionary version of :class:`KeepOutsideWindow`: ``d[key]`` takes ``d[reference_key]`` outside the window."""

    def __init__(
        self, keys: KeysCollection, reference_key: str, hu_min: float = -1024.0, hu_max: float = 3072.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, reference_key, KeepOutsideWindow(hu_min, hu_max), allow_missing_keys)
