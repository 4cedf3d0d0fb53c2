"""MONAI transforms of the CT task, as array/dictionary pairs: loading CT cases, the online CT training noise,
keeping what the HU window clips, the noise retention, writing the outputs."""

from ldct_clip.transforms.ct_noise import CTNoise, RandCTNoise, RandCTNoised, sigma_for_slice_thickness
from ldct_clip.transforms.io import LoadCTImage, LoadCTImaged
from ldct_clip.transforms.retain_noise import RetainNoise, RetainNoised
from ldct_clip.transforms.save import CASE_WRITERS, CommitCaseOutputsd, SaveDerivedSeriesd, SaveNiftid, SavePreviewd
from ldct_clip.transforms.window import KeepOutsideWindow, KeepOutsideWindowd

__all__ = [
    "CASE_WRITERS",
    "CTNoise",
    "CommitCaseOutputsd",
    "KeepOutsideWindow",
    "KeepOutsideWindowd",
    "LoadCTImage",
    "LoadCTImaged",
    "RandCTNoise",
    "RandCTNoised",
    "RetainNoise",
    "RetainNoised",
    "SaveDerivedSeriesd",
    "SaveNiftid",
    "SavePreviewd",
    "sigma_for_slice_thickness",
]
