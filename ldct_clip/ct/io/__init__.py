"""Reading CT cases to HU and writing results back (NIfTI, derived DICOM series).

- finding cases: :mod:`~ldct_clip.ct.io.cases`; the in-memory volume: :mod:`~ldct_clip.ct.io.volume`;
- reading, by format: :mod:`~ldct_clip.ct.io.read` dispatches to :mod:`~ldct_clip.ct.io.dicom` (single-frame
  series), :mod:`~ldct_clip.ct.io.enhanced_dicom` (both on :mod:`~ldct_clip.ct.io.dicom_file` and
  :mod:`~ldct_clip.ct.io.dicom_geometry`) and :mod:`~ldct_clip.ct.io.image_files` (NIfTI, MHA/NRRD);
- the same reader behind MONAI's ``ImageReader`` interface, for ``LoadImage``: :mod:`~ldct_clip.ct.io.monai_reader`;
- writing: :mod:`~ldct_clip.ct.io.nifti_writer`, :mod:`~ldct_clip.ct.io.derived_series` (datasets from
  :mod:`~ldct_clip.ct.io.derived_dicom`), both checked by :mod:`~ldct_clip.ct.io.output_paths`.

Nothing here knows about networks.  Arrays are (X, Y, Z) = (columns, rows, slices) float32 HU numpy arrays with
a 4x4 voxel -> RAS+ mm affine, as MONAI's ``LoadImage`` gives them.
"""

from ldct_clip.ct.io.cases import Case, find_cases, find_one_case, sanitize_name
from ldct_clip.ct.io.derived_series import write_derived_series
from ldct_clip.ct.io.nifti_writer import hu_to_int16, write_nifti
from ldct_clip.ct.io.output_paths import check_output_path
from ldct_clip.ct.io.read import read_case, read_path
from ldct_clip.ct.io.volume import CTVolume, is_multiframe_headers

__all__ = [
    "CTVolume",
    "Case",
    "check_output_path",
    "find_cases",
    "find_one_case",
    "hu_to_int16",
    "is_multiframe_headers",
    "read_case",
    "read_path",
    "sanitize_name",
    "write_derived_series",
    "write_nifti",
]
