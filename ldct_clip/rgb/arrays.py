"""Float images as the RGB noise modules take them, and the dictionary wrapper their random transforms share.

An image is a float numpy array or torch tensor ``(..., H, W)`` (usually ``(3, H, W)``) with values nominally in
[0, 1]. The noise is computed in float64 numpy (:func:`to_numpy_image`) and returned in the input's container,
dtype and device (:func:`restore`); randomness comes from a seed or a numpy Generator (:func:`make_rng`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type, ensure_tuple, ensure_tuple_rep

from ldct_clip.errors import InputError

__all__ = ["ImageLike", "RandNoised", "SeedLike", "clone_image", "make_rng", "restore", "target_keys", "to_numpy_image"]

ImageLike = Union[np.ndarray, torch.Tensor]
SeedLike = Union[int, np.integer, np.random.Generator, None]


def make_rng(seed: SeedLike) -> np.random.Generator:
    """A numpy Generator from an int seed, an existing Generator (used as is) or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}.")
    if seed < 0:
        raise InputError(f"seed must be non-negative, got {seed}.")
    return np.random.default_rng(int(seed))


def to_numpy_image(image: Any, name: str = "image", min_ndim: int = 2) -> np.ndarray:
    """Float64 numpy copy of a float numpy array / torch tensor, checked for dtype, rank and NaN/inf.

    Float64 so that the noise statistics are not limited by float32 rounding; results are cast back
    to the input's dtype by :func:`restore`.
    """
    if isinstance(image, torch.Tensor):
        if not torch.is_floating_point(image):
            raise InputError(f"{name} must be a float tensor with values in [0, 1], got dtype {image.dtype}.")
        arr = image.detach().to("cpu", torch.float64).numpy()
    elif isinstance(image, np.ndarray):
        if not np.issubdtype(image.dtype, np.floating):
            raise InputError(
                f"{name} must be a float array with values in [0, 1], got dtype {image.dtype} "
                "(divide 8-bit images by 255 first)."
            )
        arr = image.astype(np.float64)
    else:
        raise InputError(f"{name} must be a numpy array or a torch tensor, got {type(image).__name__}.")
    if arr.ndim < min_ndim:
        raise InputError(f"{name} must have at least {min_ndim} dimensions (..., H, W), got shape {arr.shape}.")
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}).")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite values.")
    return arr


def restore(result: np.ndarray, like: ImageLike) -> ImageLike:
    """``result`` with the container type, dtype and device of ``like`` (MetaTensor metadata kept)."""
    if isinstance(like, torch.Tensor):
        out, *_ = convert_to_dst_type(result, dst=like, dtype=like.dtype)
        return out
    return result.astype(like.dtype, copy=False)


def clone_image(img: Any) -> Any:
    if isinstance(img, torch.Tensor):
        return img.clone()
    if isinstance(img, np.ndarray):
        return img.copy()
    raise InputError(f"cannot copy an image of type {type(img).__name__}: expected a numpy array or a torch tensor.")


def target_keys(keys: tuple[Hashable, ...], target_key: Any) -> tuple[Hashable | None, ...]:
    """One target key per key (or Nones), validated so that a target never overwrites an input."""
    if target_key is None:
        return ensure_tuple_rep(None, len(keys))
    targets = ensure_tuple(target_key)
    if len(targets) != len(keys):
        raise InputError(f"target_key needs one key per key in keys ({len(keys)}), got {len(targets)}: {targets}.")
    if len(set(targets)) != len(targets) or set(targets) & set(keys):
        raise InputError(f"target_key {targets} must be distinct and must not be one of keys {tuple(keys)}.")
    return targets


class RandNoised(RandomizableTransform, MapTransform):
    """Dictionary wrapper of a random array noise transform: one draw per call, used for every key.

    Args:
        keys: keys of the images to make noisy.
        noiser: the array transform (with ``randomize()`` and ``__call__(img, randomize=False)``).
        prob: probability of adding noise at a call.
        target_key: key(s) that receive a copy of the clean image (e.g. ``"label"``), one per key; written
            whether or not the noise is applied this time.
        allow_missing_keys: do not raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        noiser: RandomizableTransform,
        prob: float = 1.0,
        target_key: str | Sequence[str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.noiser = noiser
        self.target_keys = target_keys(self.keys, target_key)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandNoised:
        super().set_random_state(seed, state)
        self.noiser.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self.noiser.randomize()

    def __call__(self, data: Mapping[Hashable, ImageLike]) -> dict[Hashable, ImageLike]:
        d = dict(data)
        self.randomize()
        for key, target in self.key_iterator(d, self.target_keys):
            if target is not None:
                d[target] = clone_image(d[key])
            if self._do_transform:
                d[key] = self.noiser(d[key], randomize=False)
        return d
