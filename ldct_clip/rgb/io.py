"""Reading and writing RGB images, and their MONAI transforms.

Images are handled as MONAI does: channel-first ``(3, H, W)`` float32 in [0, 1] (R, G, B). Grey images are
repeated to three channels (the RGB models need three); an alpha channel is dropped; 16-bit PNG/TIFF files
are scaled by 1/65535. JPEG EXIF orientation is applied, as OpenCV's ``imread`` (the reference code's reader)
does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from ldct_clip.errors import InputError
from ldct_clip.metrics.rgb import to_uint8
from ldct_clip.reporting.figures import save_png

__all__ = ["read_rgb", "write_png", "LoadRGB", "LoadRGBd", "SaveRGB", "SaveRGBd"]

log = logging.getLogger("ldct_clip")


def _as_rgb_float(arr: np.ndarray, path: Path) -> np.ndarray:
    """(H, W), (H, W, C) integer or float array -> (3, H, W) float32 in [0, 1]."""
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        scale = {1: 255.0, 2: 65535.0}.get(arr.dtype.itemsize, None) if arr.dtype != bool else 1.0
        if scale is None:  # 32-bit integer images (PIL mode "I"): 16-bit content in practice
            scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
        x = arr.astype(np.float32) / np.float32(scale)
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
    else:
        raise InputError(f"{path}: unsupported pixel type {arr.dtype}.")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"{path}: expected a grey or RGB(A) image, got an array of shape {arr.shape}.")
    if x.shape[-1] in (1, 2):  # grey (+ alpha)
        x = np.repeat(x[..., :1], 3, axis=-1)
    x = x[..., :3]
    if not np.all(np.isfinite(x)):
        raise InputError(f"{path}: the image has NaN or infinite values.")
    return np.ascontiguousarray(np.clip(x, 0.0, 1.0).transpose(2, 0, 1))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``(3, H, W)`` float32 RGB in [0, 1] (see the module docstring for conversions).

    Raises:
        InputError: the file is missing, unreadable or not an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist.")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F", "L", "LA", "RGB", "RGBA"):
                arr = np.asarray(im)
            else:  # palette, CMYK, YCbCr, 1-bit...
                arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as pil_error:
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise InputError(f"{path}: cannot read the image ({pil_error}).") from None
        try:  # e.g. 16-bit RGB TIFF, which Pillow does not read
            import tifffile

            arr = tifffile.imread(path)
        except Exception as e:  # noqa: BLE001 - any reader failure is a bad file for the user
            raise InputError(f"{path}: cannot read the TIFF image ({e}).") from None
    if arr.size == 0:
        raise InputError(f"{path}: the image is empty.")
    return _as_rgb_float(arr, path)


def write_png(path: str | os.PathLike, image: np.ndarray | torch.Tensor) -> Path:
    """Write a ``(3, H, W)`` (or ``(1, H, W)``) image, float in [0, 1] or uint8, as an 8-bit PNG, atomically."""
    from PIL import Image

    arr = to_uint8(image)
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise InputError(f"expected a (3, H, W) or (1, H, W) image to write, got shape {arr.shape}.")
    hwc = np.ascontiguousarray(arr.transpose(1, 2, 0))
    pil = Image.fromarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc)
    return save_png(pil, path)


class LoadRGB(Transform):
    """Array transform: image path -> ``(3, H, W)`` float32 tensor in [0, 1] (:func:`read_rgb`)."""

    def __call__(self, path: str | os.PathLike) -> torch.Tensor:
        return torch.from_numpy(read_rgb(path))


class LoadRGBd(MapTransform):
    """Dictionary version of :class:`LoadRGB`: replaces each path under ``keys`` by the image.

    The path is kept under ``<key>_path`` (e.g. ``image_path``).
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadRGB()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_path"] = str(d[key])
            d[key] = self.loader(d[key])
        return d


class SaveRGB(Transform):
    """Array transform: write a ``(3, H, W)`` image (float in [0, 1] or uint8) as the 8-bit PNG
    ``output_dir/<name>``, atomically (:func:`write_png`); returns the path written."""

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.output_dir = Path(output_dir).expanduser()

    def __call__(self, image: np.ndarray | torch.Tensor, name: str) -> Path:
        return write_png(self.output_dir / name, image)


class SaveRGBd(MapTransform):
    """Dictionary version of :class:`SaveRGB`: writes each image under ``keys`` as ``output_dir/<d[name_key]>`` and
    lists the paths written under ``d[output_key]`` (strings), as the CT writers do."""

    def __init__(self, keys: KeysCollection, output_dir: str | os.PathLike, name_key: str = "name",
                 output_key: str = "outputs", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.saver = SaveRGB(output_dir)
        self.name_key = name_key
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d[self.output_key] = [str(self.saver(d[key], str(d[self.name_key]))) for key in self.key_iterator(d)]
        return d


# ----------------------------------------------------------------------------------------------------------
# paired real-noise test sets
# ----------------------------------------------------------------------------------------------------------
