"""MONAI transforms of ldct-clip, as array/dictionary pairs: loading CT cases, the HU window, writing outputs."""

from ldct_clip.transforms.io import LoadCTImage, LoadCTImaged
from ldct_clip.transforms.save import CASE_WRITERS, CommitCaseOutputsd, SaveDerivedSeriesd, SaveNiftid, SavePreviewd
from ldct_clip.transforms.window import (
    DEFAULT_HU_WINDOW,
    KeepOutsideWindow,
    KeepOutsideWindowd,
    hu_to_unit,
    unit_to_hu,
    window_from,
)

__all__ = [
    "CASE_WRITERS",
    "DEFAULT_HU_WINDOW",
    "CommitCaseOutputsd",
    "KeepOutsideWindow",
    "KeepOutsideWindowd",
    "LoadCTImage",
    "LoadCTImaged",
    "SaveDerivedSeriesd",
    "SaveNiftid",
    "SavePreviewd",
    "hu_to_unit",
    "unit_to_hu",
    "window_from",
]
