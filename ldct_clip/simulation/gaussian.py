"""The paper's training noise: i.i.d. Gaussian noise of ``sigma/255`` on the image normalised to [0, 1]
(``(HU + 1024) / 4096`` by default), drawn by MONAI's ``RandGaussianNoise`` in HU.

On the window ``(lo, hi)`` the noise SD in HU is ``sigma / 255 * (hi - lo)``: 5/255 on [-1024, 3072] is about
80 HU.  Nothing is clipped (the paper adds the noise to the unclipped normalised image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from monai.transforms import RandGaussianNoise

from ldct_clip.ct.hu import DEFAULT_HU_WINDOW
from ldct_clip.errors import InputError

__all__ = ["add_gaussian_noise", "gaussian_training_noise"]


def gaussian_training_noise(sigma_255: float, hu_window: Sequence[float] = DEFAULT_HU_WINDOW) -> RandGaussianNoise:
    """MONAI's ``RandGaussianNoise`` that adds, to an image in HU, the noise of ``sigma_255 / 255`` on ``hu_window``.

    Always applied (``prob=1``) with a fixed SD (``sample_std=False``); the output is float32.

    Args:
        sigma_255: noise SD in units of 1/255 of the window (the paper uses 5 for 1 mm CT slices), >= 0.
        hu_window: ``(lo, hi)`` HU mapped to [0, 1].

    Raises:
        InputError: a negative or non-finite ``sigma_255``, or ``lo >= hi``.
    """
    sigma = float(sigma_255)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise InputError(f"sigma_255 must be a finite number >= 0 (e.g. 5 for the paper's CT noise), got {sigma_255}.")
    if len(hu_window) != 2 or not float(hu_window[1]) > float(hu_window[0]):
        raise InputError(f"hu_window must be (lo, hi) with lo < hi, got {tuple(hu_window)}.")
    sd_hu = sigma / 255.0 * (float(hu_window[1]) - float(hu_window[0]))
    return RandGaussianNoise(prob=1.0, mean=0.0, std=sd_hu, dtype=np.float32, sample_std=False)


def add_gaussian_noise(
    image_hu: np.ndarray,
    sigma_255: float,
    *,
    hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
    seed: int | None = None,
) -> np.ndarray:
    """:func:`gaussian_training_noise` applied once to an array, reproducibly for an integer ``seed``.

    Args:
        image_hu: array of any shape in HU (a slice ``(X, Y)`` or volume ``(X, Y, Z)``).
        sigma_255: noise SD in units of 1/255 of the window (the paper uses 5 for 1 mm CT slices).
        hu_window: ``(lo, hi)`` HU mapped to [0, 1].
        seed: seed of the transform's ``np.random.RandomState`` (``None``: fresh entropy).

    Returns:
        float32 array of the input's shape, HU.
    """
    arr = np.asarray(image_hu)
    if arr.ndim == 0 or arr.size == 0:
        raise InputError(f"image_hu must be a non-empty array in HU, got shape {arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"image_hu must hold real numbers (HU), got dtype {arr.dtype}.")
    noise = gaussian_training_noise(sigma_255, hu_window)
    noise.set_random_state(seed)
    return np.asarray(noise(arr.astype(np.float32)), dtype=np.float32)
