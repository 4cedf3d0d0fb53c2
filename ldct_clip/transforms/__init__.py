"""MONAI transforms of ldct-clip, as array/dictionary pairs: loading CT cases, the HU window, writing outputs,
the online CT training noise."""

from ldct_clip.transforms.ct_noise import CTNoise, RandCTNoised, sigma_for_slice_thickness
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
    "CTNoise",
    "CommitCaseOutputsd",
    "KeepOutsideWindow",
    "KeepOutsideWindowd",
    "LoadCTImage",
    "LoadCTImaged",
    "RandCTNoised",
    "SaveDerivedSeriesd",
    "SaveNiftid",
    "SavePreviewd",
    "hu_to_unit",
    "sigma_for_slice_thickness",
    "unit_to_hu",
    "window_from",
]
