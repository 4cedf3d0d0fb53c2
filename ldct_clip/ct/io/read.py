"""Reading a :class:`~ldct_clip.ct.io.cases.Case` into a :class:`~ldct_clip.ct.io.volume.CTVolume` (HU + geometry):
each kind of case goes to the reader of its format.

- ``"dicom"``: :mod:`ldct_clip.ct.io.dicom` (single-frame series) and :mod:`ldct_clip.ct.io.enhanced_dicom`;
- ``"nifti"`` and ``"image"`` (MHA/MHD/NRRD): :mod:`ldct_clip.ct.io.image_files`.
"""

from __future__ import annotations

from pathlib import Path

from ldct_clip.errors import InputError
from ldct_clip.ct.io.cases import Case, find_one_case
from ldct_clip.ct.io.dicom import read_dicom_series
from ldct_clip.ct.io.image_files import read_itk, read_nifti
from ldct_clip.ct.io.volume import CTVolume

__all__ = ["read_case", "read_path"]


def read_case(case: Case) -> CTVolume:
    """Read one case into HU and geometry.

    Args:
        case: from :func:`~ldct_clip.ct.io.cases.find_cases` (or built by hand).

    Returns:
        A :class:`CTVolume` with ``hu`` float32 (X, Y, Z) in HU and a RAS+ voxel-to-mm ``affine``.
        DICOM: HU = stored * RescaleSlope + RescaleIntercept per slice/frame, slices sorted by position
        along the slice normal.  NIfTI/MHA/NRRD: values are taken as HU, axes as stored in the file.

    Raises:
        InputError: unreadable/corrupt files, non-CT modality, missing codec, inconsistent or duplicate
            slices, 4D images, NaN/inf voxels.
    """
    if case.error:
        raise InputError(case.error)
    for path in case.paths:
        if not path.is_file():
            raise InputError(
                f"{path}: file not found (case {case.name!r}). Did the folder change after it was scanned?"
            )
    if case.kind == "dicom":
        return read_dicom_series(case)
    if case.kind == "nifti":
        return read_nifti(case)
    if case.kind == "image":
        return read_itk(case)
    raise InputError(f"Case {case.name!r} has unknown kind {case.kind!r}.")



def read_path(path: Path | str) -> CTVolume:
    """Read the single case under ``path`` (a file, or a folder holding exactly one series/image).

    Raises:
        InputError: when ``path`` holds no case or several (then use :func:`~ldct_clip.ct.io.cases.find_cases`
            and :func:`read_case`).
    """
    return read_case(find_one_case(path))
