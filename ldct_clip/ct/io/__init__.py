"""Reading CT cases to HU and writing results back (NIfTI, derived DICOM series).

Nothing here knows about networks or tensors; of the package it uses only the errors and the atomic writes.
Arrays are (X, Y, Z) = (columns, rows, slices) float32 HU with a 4x4 voxel -> RAS+ mm affine, as MONAI's ``LoadImage`` gives them.
"""

from ldct_clip.ct.io.cases import Case, find_cases, sanitize_name
from ldct_clip.ct.io.readers import read_case, read_path
from ldct_clip.ct.io.volume import CTVolume, is_multiframe_headers
from ldct_clip.ct.io.writers import check_output_path, hu_to_int16, write_derived_series, write_nifti

__all__ = [
    "CTVolume",
    "Case",
    "check_output_path",
    "find_cases",
    "hu_to_int16",
    "is_multiframe_headers",
    "read_case",
    "read_path",
    "sanitize_name",
    "write_derived_series",
    "write_nifti",
]
