"""Loading CT cases with MONAI's ``LoadImage(d)``, always through :class:`~ldct_clip.ct.io.monai_reader.CTSeriesReader`."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.data import ImageReader
from monai.transforms import LoadImage, LoadImaged

from ldct_clip.ct.io.monai_reader import CTSeriesReader

__all__ = ["LoadCTImage", "LoadCTImaged"]


@contextmanager
def _quiet_default_readers() -> Iterator[None]:
    """``LoadImage`` builds all of MONAI's default readers; those for codecs this machine lacks (nvImageCodec)
    complain while they are built, although only the CT reader is ever used here."""
    quiet = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        quiet.setLevel(level)


class LoadCTImage(LoadImage):
    """``LoadImage`` that reads every case with :class:`~ldct_clip.ct.io.monai_reader.CTSeriesReader`.

    MONAI's ``LoadImage(reader=...)`` falls back to its other readers when the given one fails, which would read
    a series the CT reader refused (wrong modality, a missing slice) through ITK without those checks; here the
    CT reader's error is the answer. Returns a float32 ``MetaTensor`` (X, Y, Z) in HU with the reader's meta.
    """

    def __init__(self, image_only: bool = True, dtype: Any = np.float32, ensure_channel_first: bool = False, **kwargs: Any) -> None:
        self.ct_reader = CTSeriesReader()
        with _quiet_default_readers():
            super().__init__(reader=self.ct_reader, image_only=image_only, dtype=dtype,
                             ensure_channel_first=ensure_channel_first, **kwargs)

    def __call__(self, filename: Sequence[str | os.PathLike] | str | os.PathLike, reader: ImageReader | None = None):
        return super().__call__(filename, reader=reader or self.ct_reader)


class LoadCTImaged(LoadImaged):
    """Dictionary version of :class:`LoadCTImage`: ``d[key]`` (a case's file list or path) becomes its HU volume."""

    def __init__(self, keys: KeysCollection, dtype: Any = np.float32, ensure_channel_first: bool = False,
                 allow_missing_keys: bool = False) -> None:
        with _quiet_default_readers():
            super().__init__(keys, image_only=True, dtype=dtype, allow_missing_keys=allow_missing_keys)
        self._loader = LoadCTImage(image_only=True, dtype=dtype, ensure_channel_first=ensure_channel_first)
