"""HU windowing and its exact inverse, as MONAI array/dictionary transform pairs.

The paper normalises CT as ``x = (HU - hu_min) / (hu_max - hu_min)`` with ``[hu_min, hu_max] =
[-1024, 3072]`` (RED-CNN's preprocessing). The network sees ``x``; everything written to disk is HU.
MONAI's ``ScaleIntensityRanged`` cannot be inverted after clipping, so the pair here is explicit.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

__all__ = [
    "DEFAULT_HU_WINDOW",
    "HUToUnit",
    "HUToUnitd",
    "KeepOutsideWindow",
    "KeepOutsideWindowd",
    "UnitToHU",
    "UnitToHUd",
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
    """Map HU to the network's [0, 1] scale: ``(hu - hu_min) / (hu_max - hu_min)``, clipped if ``clip``."""
    lo, hi = _check_window(hu_min, hu_max)
    x = (hu - lo) / (hi - lo)
    if clip:
        x = x.clamp(0.0, 1.0) if isinstance(x, torch.Tensor) else np.clip(x, 0.0, 1.0)
    return x


def unit_to_hu(x: ArrayLike, hu_min: float = -1024.0, hu_max: float = 3072.0) -> ArrayLike:
    """Inverse of :func:`hu_to_unit` (exact inside the window): ``x * (hu_max - hu_min) + hu_min``."""
    lo, hi = _check_window(hu_min, hu_max)
    return x * (hi - lo) + lo


class HUToUnit(Transform):
    """Array transform: HU -> [0, 1] over ``[hu_min, hu_max]``. Keeps the type and shape of the input."""

    def __init__(self, hu_min: float = -1024.0, hu_max: float = 3072.0, clip: bool = True) -> None:
        self.hu_min, self.hu_max = _check_window(hu_min, hu_max)
        self.clip = clip

    def __call__(self, img: ArrayLike) -> ArrayLike:
        return hu_to_unit(img, self.hu_min, self.hu_max, self.clip)


class UnitToHU(Transform):
    """Array transform: [0, 1] -> HU over ``[hu_min, hu_max]``, the inverse of :class:`HUToUnit`.

    With ``round_output`` the result is rounded to whole HU (before an integer writer truncates it).
    """

    def __init__(self, hu_min: float = -1024.0, hu_max: float = 3072.0, round_output: bool = False) -> None:
        self.hu_min, self.hu_max = _check_window(hu_min, hu_max)
        self.round_output = round_output

    def __call__(self, img: ArrayLike) -> ArrayLike:
        hu = unit_to_hu(img, self.hu_min, self.hu_max)
        if self.round_output:
            hu = torch.round(hu) if isinstance(hu, torch.Tensor) else np.rint(hu)
        return hu


class HUToUnitd(MapTransform):
    """Dictionary version of :class:`HUToUnit`."""

    def __init__(
        self, keys: KeysCollection, hu_min: float = -1024.0, hu_max: float = 3072.0, clip: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = HUToUnit(hu_min, hu_max, clip)

    def __call__(self, data: Mapping[Hashable, ArrayLike]) -> dict[Hashable, ArrayLike]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class UnitToHUd(MapTransform):
    """Dictionary version of :class:`UnitToHU`."""

    def __init__(
        self, keys: KeysCollection, hu_min: float = -1024.0, hu_max: float = 3072.0, round_output: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = UnitToHU(hu_min, hu_max, round_output)

    def __call__(self, data: Mapping[Hashable, ArrayLike]) -> dict[Hashable, ArrayLike]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


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
