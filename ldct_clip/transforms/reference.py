"""Transforms that combine the network's output with the input it came from (``KeepOutsideWindow``,
``RetainNoise``): the input brought to the output's type, and the dictionary wrapper they share."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from ldct_clip.ct.hu import ArrayLike

__all__ = ["ReferenceMapTransform", "reference_like"]


def reference_like(img: ArrayLike, reference: ArrayLike) -> ArrayLike:
    """``reference`` as the type, dtype and device of ``img`` (a torch tensor or a numpy array), after checking that
    the two have the same shape."""
    if tuple(img.shape) != tuple(reference.shape):
        raise ValueError(f"output {tuple(img.shape)} and input {tuple(reference.shape)} differ in shape")
    if isinstance(img, torch.Tensor):
        return torch.as_tensor(reference, device=img.device).to(img.dtype)
    return np.asarray(reference).astype(img.dtype, copy=False)


class ReferenceMapTransform(MapTransform):
    """Dictionary version of an array transform ``transform(img, reference)``: ``d[key] = transform(d[key],
    d[reference_key])`` for each key; ``d[reference_key]`` is not changed."""

    def __init__(self, keys: KeysCollection, reference_key: str,
                 transform: Callable[[ArrayLike, ArrayLike], ArrayLike], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reference_key = reference_key
        self.transform = transform

    def __call__(self, data: Mapping[Hashable, ArrayLike]) -> dict[Hashable, ArrayLike]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], d[self.reference_key])
        return d
