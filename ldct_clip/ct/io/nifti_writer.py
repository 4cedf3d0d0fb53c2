"""Writing a volume as an int16 NIfTI-1 file, atomically and never over an input.

The file is built under a hidden temporary name in the destination folder and moved into place with
:func:`os.replace` (atomic on one file system), so a failed write leaves the old state or the complete file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.atomic import atomic_path
from ldct_clip.ct.io.output_paths import check_output_path, ensure_dir, oserror_as_input_error

__all__ = ["hu_to_int16", "write_nifti"]


def hu_to_int16(hu: np.ndarray) -> np.ndarray:
    """Round HU to the nearest integer and clip to the int16 range.

    Args:
        hu: array of any shape, HU (float).  Casting alone would truncate towards zero (-0.7 -> 0) and wrap
            out-of-range values, hence the explicit ``np.rint`` then clip.

    Returns:
        int16 array of the same shape.

    Raises:
        InputError: when ``hu`` holds NaN or infinite values (they have no integer HU).
    """
    hu = np.asarray(hu)
    if not np.issubdtype(hu.dtype, np.number):
        raise InputError(f"HU array has dtype {hu.dtype}; expected numbers.")
    if np.issubdtype(hu.dtype, np.floating):
        bad = int(hu.size - np.count_nonzero(np.isfinite(hu)))
        if bad:
            raise InputError(f"HU array holds {bad} NaN/inf value(s); cannot write them as integers.")
        hu = np.rint(hu)
    info = np.iinfo(np.int16)
    return np.clip(hu, info.min, info.max).astype(np.int16)



def write_nifti(hu: np.ndarray, affine: np.ndarray, path: Path | str, *, inputs: Iterable[Path | str] = ()) -> Path:
    """Write a volume as an int16 NIfTI-1 file (``.nii`` or ``.nii.gz``), atomically.

    Args:
        hu: (X, Y, Z) HU; rounded and clipped with :func:`hu_to_int16`.
        affine: 4x4 voxel -> RAS+ mm; written to both qform and sform (code 1, scanner), so readers
            that trust either one agree.  (A sheared affine, e.g. gantry tilt, is exact only in the sform.)
        path: destination file; its folder is created and an existing file there is replaced (atomically).
        inputs: sources that must not be overwritten (e.g. ``[volume.source]``).

    Returns:
        ``path``.

    Raises:
        InputError: bad shapes, path inside an input, folder not creatable/writable, write failure.
    """
    import nibabel as nib

    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise InputError(f"NIfTI output {path} must end with .nii or .nii.gz.")
    hu = np.asarray(hu)
    affine = np.asarray(affine, dtype=np.float64)
    if hu.ndim != 3:
        raise InputError(f"NIfTI output expects a 3D (X, Y, Z) array, got shape {hu.shape}.")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"NIfTI output expects a finite 4x4 affine, got {affine.shape}.")
    check_output_path(path, inputs)
    ensure_dir(path.parent)
    if path.is_dir():
        raise InputError(f"NIfTI output {path} is an existing folder. Give a file name.")

    img = nib.Nifti1Image(hu_to_int16(hu), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm", t="sec")
    img.header.set_slope_inter(1.0, 0.0)  # stored values are HU as they are
    img.header["descrip"] = b"ldct-clip"
    with oserror_as_input_error(path), atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
