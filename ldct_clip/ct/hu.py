"""HU conventions: the window that maps HU to the network's [0, 1] and back.

The paper normalises CT as ``x = (HU - hu_min) / (hu_max - hu_min)`` with ``[hu_min, hu_max] =
[-1024, 3072]`` (RED-CNN's preprocessing). The network sees ``x``; everything written to disk is HU.
The map and its inverse are MONAI's ``ScaleIntensityRange(d)`` (the bundle configs name them directly;
:func:`hu_to_unit` and :func:`unit_to_hu` apply them to plain arrays). What the window clips is restored by
:class:`ldct_clip.transforms.window.KeepOutsideWindow`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import ScaleIntensityRange
from monai.utils import convert_to_dst_type

__all__ = ["DEFAULT_HU_WINDOW", "check_window", "hu_to_unit", "unit_to_hu", "window_from"]

DEFAULT_HU_WINDOW: tuple[float, float] = (-1024.0, 3072.0)

ArrayLike = np.ndarray | torch.Tensor


def check_window(hu_min: float, hu_max: float) -> tuple[float, float]:
    """``(hu_min, hu_max)`` as floats; ``ValueError`` unless ``hu_max > hu_min``."""
    if not hu_max > hu_min:
        raise ValueError(f"HU window must have hu_max > hu_min, got [{hu_min}, {hu_max}]")
    return float(hu_min), float(hu_max)


def hu_to_unit(hu: ArrayLike, hu_min: float = -1024.0, hu_max: float = 3072.0, clip: bool = True) -> ArrayLike:
    """Map HU to the network's [0, 1] scale: ``(hu - hu_min) / (hu_max - hu_min)``, clipped if ``clip``.

    MONAI's ``ScaleIntensityRange(hu_min, hu_max, 0, 1, clip)``; float32 of the input's type and device.
    """
    lo, hi = check_window(hu_min, hu_max)
    x = ScaleIntensityRange(lo, hi, 0.0, 1.0, clip=clip)(hu)
    return convert_to_dst_type(x, dst=hu, dtype=x.dtype)[0]


def unit_to_hu(x: ArrayLike, hu_min: float = -1024.0, hu_max: float = 3072.0) -> ArrayLike:
    """Inverse of :func:`hu_to_unit` (exact inside the window): ``x * (hu_max - hu_min) + hu_min``.

    MONAI's ``ScaleIntensityRange(0, 1, hu_min, hu_max)``; float32 of the input's type and device.
    """
    lo, hi = check_window(hu_min, hu_max)
    hu = ScaleIntensityRange(0.0, 1.0, lo, hi)(x)
    return convert_to_dst_type(hu, dst=x, dtype=hu.dtype)[0]


def window_from(hu_window: Sequence[float]) -> tuple[float, float]:
    """Validate a ``(hu_min, hu_max)`` pair."""
    if len(hu_window) != 2:
        raise ValueError(f"hu_window must be (hu_min, hu_max), got {hu_window}")
    return check_window(*hu_window)

