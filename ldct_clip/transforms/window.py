"""The HU window: HU <-> the network's [0, 1], and keeping what lies outside the window.

The paper normalises CT as ``x = (HU - hu_min) / (hu_max - hu_min)`` with ``[hu_min, hu_max] =
[-1024, 3072]`` (RED-CNN's preprocessing). The network sees ``x``; everything written to disk is HU.
The map and its inverse are MONAI's ``ScaleIntensityRange(d)`` (the bundle configs name them directly;
:func:`hu_to_unit` and :func:`unit_to_hu` apply them to plain arrays). Clipping loses the values outside the
window, so the inverse cannot bring them back: :class:`KeepOutsideWindow` takes them from the input instead.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, ScaleIntensityRange, Transform
from monai.utils import convert_to_dst_type

__all__ = [
    "DEFAULT_HU_WINDOW",
    "KeepOutsideWindow",
    "KeepOutsideWindowd",
    "hu_to_unit",
    "unit_to_hu",
]

DEFAULT_HU_WINDOW: tuple[float, float] = (-1024.0, 3072.0)

ArrayLike = np.ndarray | torch.Tensor


def _check_window(hu_min: float, hu_max: float) -> tuple[float, float]:
    if not hu_max > hu_min:
        raise ValueError(f"HU window must have hu_max > hu_min, got [{hu_min}, {hu_max}]")
    return float(hu_min), float(hu_max)


def hu_to_unit(hu: ArrayLike, hu_min: float = -1024.0, hu_max: float = 3072.0, clip: bool = True) -> ArrayLike:
    """Map HU to the network's [0, 1] scale: ``(hu - hu_min) / (hu_max - hu_min)``, clipped if ``clip``.

    MONAI's ``ScaleIntensityRange(hu_min, hu_max, 0, 1, clip)``; float32 of the input's type and device.
    """
    lo, hi = _check_window(hu_min, hu_max)
    x = ScaleIntensityRange(lo, hi, 0.0, 1.0, clip=clip)(hu)
    return convert_to_dst_type(x, dst=hu, dtype=x.dtype)[0]


def unit_to_hu(x: ArrayLike, hu_min: float = -1024.0, hu_max: float = 3072.0) -> ArrayLike:
    """Inverse of :func:`hu_to_unit` (exact inside the window): ``x * (hu_max - hu_min) + hu_min``.

    MONAI's ``ScaleIntensityRange(0, 1, hu_min, hu_max)``; float32 of the input's type and device.
    """
    lo, hi = _check_window(hu_min, hu_max)
    hu = ScaleIntensityRange(0.0, 1.0, lo, hi)(x)
    return convert_to_dst_type(hu, dst=x, dtype=hu.dtype)[0]


class KeepOutsideWindow(Transform):
    """Array transform: where the input HU lie outside ``[hu_min, hu_max]`` (scanner padding such as -3024,
    dense metal), take the input value instead of the network's output.

    The window clips such voxels before the network sees them, so its output there carries no information;
    keeping the input keeps the padding and the metal as they were instead of flattening them to the window
    edges. ``img`` (network output in HU) and ``reference`` (its input in HU) have the same shape; the result
    has the type, dtype and device of ``img``.
    """

    def __init__(self, hu_min: float = -1024.0, hu_max: float = 3072.0) -> None:
        self.hu_min, self.hu_max = _check_window(hu_min, hu_max)

    def __call__(self, img: ArrayLike, reference: ArrayLike) -> ArrayLike:
        if tuple(img.shape) != tuple(reference.shape):
            raise ValueError(f"output {tuple(img.shape)} and input {tuple(reference.shape)} differ in shape")
        if isinstance(img, torch.Tensor):
            ref = torch.as_tensor(reference, device=img.device).to(img.dtype)
            return torch.where((ref < self.hu_min) | (ref > self.hu_max), ref, img)
        ref = np.asarray(reference).astype(img.dtype, copy=False)
        return np.where((ref < self.hu_min) | (ref > self.hu_max), ref, img)


class KeepOutsideWindowd(MapTransform):
    """Dictionary version of :class:`KeepOutsideWindow`: ``d[key]`` takes ``d[reference_key]`` outside the window."""

    def __init__(
        self, keys: KeysCollection, reference_key: str, hu_min: float = -1024.0, hu_max: float = 3072.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reference_key = reference_key
        self.transform = KeepOutsideWindow(hu_min, hu_max)

    def __call__(self, data: Mapping[Hashable, ArrayLike]) -> dict[Hashable, ArrayLike]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], d[self.reference_key])
        return d


def window_from(hu_window: Sequence[float]) -> tuple[float, float]:
    """Validate a ``(hu_min, hu_max)`` pair."""
    if len(hu_window) != 2:
        raise ValueError(f"hu_window must be (hu_min, hu_max), got {hu_window}")
    return _check_window(*hu_window)
