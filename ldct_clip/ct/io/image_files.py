"""Reading whole-volume image files as CT: NIfTI through MONAI's ``NibabelReader``, MHA/MHD/NRRD through SimpleITK.

Around the readers sit the project's checks: one real-valued 2D or 3D volume, finite values within
:data:`~ldct_clip.ct.io.volume.HU_LIMIT` (values are taken as HU), a finite invertible affine, and a DICOM file
with an image-file name refused rather than read as if its stored values were HU.

Two departures from MONAI, and why:

- NIfTI: the voxels come from MONAI's ``NibabelReader``; the affine is the one the header stores (nibabel's
  ``img.affine``: the sform when ``sform_code > 0``, else the qform, else pixdim), checked before use.  MONAI's
  ``NibabelReader.read`` runs ``correct_nifti_header_if_necessary``, which replaces an sform whose column norms
  disagree with pixdim by the qform even when ``qform_code`` is 0: a NaN sform would then be read with an
  identity affine instead of being refused, and a valid sheared or rescaled sform (``sform_code > 0``, which
  NIfTI makes authoritative) would be swapped for the qform.
- MHA/MHD/NRRD: MONAI's ``ITKReader`` needs the ``itk`` package (ITK's own Python wrapping), not SimpleITK, which
  the project already requires and which reads these formats; ``itk`` is not installed.  The array is reversed
  from ITK's (Z, Y, X) to (X, Y, Z) and the LPS+ affine becomes RAS+ with MONAI's ``orientation_ras_lps``, as
  ``ITKReader`` does.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from monai.data import NibabelReader
from monai.data.utils import orientation_ras_lps

from ldct_clip.errors import InputError
from ldct_clip.ct.io.cases import Case, has_dicm_magic, read_dicom
from ldct_clip.ct.io.volume import HU_LIMIT, CTVolume

__all__ = ["read_itk", "read_nifti"]


def _finish_array(data: np.ndarray, path: Path, what: str, scaling: str = "") -> np.ndarray:
    """Squeeze trailing singleton axes, promote 2D to one slice, and check the values are finite HU.

    ``scaling`` names the header fields that scale stored values (for the message when they overflow).
    """
    if np.iscomplexobj(data) or data.dtype.names is not None:
        raise InputError(f"{path}: {what} has voxel type {data.dtype}; a CT volume must be real-valued (HU).")
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise InputError(
            f"{path}: {what} has shape {data.shape}; only 2D or 3D volumes are supported (a 4D series holds several "
            "volumes: split it and give one 3D volume)."
        )
    if data.size == 0:
        raise InputError(f"{path}: {what} has shape {data.shape}, with a zero-length axis: there are no voxels.")
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(
            f"{path}: {bad} voxel(s) are NaN or infinite. Fix or mask them (e.g. set them to -1024 HU) before denoising."
        )
    big = float(np.abs(data).max())
    if big > HU_LIMIT:
        raise InputError(
            f"{path}: values up to {big:.3g}, beyond any HU (|HU| <= {HU_LIMIT:g})"
            + (f"; the header's {scaling} overflow" if scaling else "")
            + ". Fix the header or the data (the values must be HU)."
        )
    return np.ascontiguousarray(data, dtype=np.float32)


def _check_affine(affine: np.ndarray, path: Path, header: str) -> np.ndarray:
    """Refuse a voxel -> mm matrix that is not finite or not invertible; ``header`` names where it came from."""
    if not np.all(np.isfinite(affine)):
        raise InputError(f"{path}: the {header} holds NaN or infinite values, so voxels have no position. Fix the header.")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(
            f"{path}: the {header} is singular (a zero or degenerate voxel size/direction), so voxels have no position. "
            "Fix the header (e.g. set a valid sform or qform)."
        )
    return affine


def read_nifti(case: Case) -> CTVolume:
    """A NIfTI-1/2 file as HU: voxels from MONAI's ``NibabelReader`` (scl_slope/scl_inter applied, axes as
    stored), the affine as the header stores it (see the module docstring)."""
    import nibabel as nib

    path = case.paths[0]
    try:
        img = nib.load(str(path))  # the header as stored; the voxels are read by MONAI below
        reader = NibabelReader()
        data, _ = reader.get_data(reader.read(str(path)))
    except Exception as exc:  # nibabel raises many types for broken headers or short files
        raise InputError(
            f"{path}: cannot read NIfTI file ({type(exc).__name__}: {exc}). It is corrupt or truncated."
        ) from exc
    with np.errstate(over="ignore", invalid="ignore"):
        data = _finish_array(np.asarray(data), path, "NIfTI image", "scl_slope/scl_inter")
    affine = np.asarray(img.affine, dtype=np.float64)
    if data.shape[2] == 1 and np.allclose(affine[:3, 2], 0):
        affine[2, 2] = 1.0  # a 2D image's affine may have a zero third column; keep it invertible
    header = img.header
    sform, qform = int(header["sform_code"]), int(header["qform_code"])
    source = "sform" if sform > 0 else "qform" if qform > 0 else "pixdim (no sform or qform)"
    _check_affine(affine, path, f"NIfTI header's {source} (sform_code {sform}, qform_code {qform})")
    return CTVolume(hu=data, affine=affine, name=case.name, source=path, kind="nifti", warnings=[])


def read_itk(case: Case) -> CTVolume:
    """An MHA/MHD/NRRD image as HU (values as stored), read with SimpleITK (see the module docstring)."""
    import SimpleITK as sitk

    path = case.paths[0]
    if has_dicm_magic(path):
        _refuse_renamed_dicom(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        if "GDCM" in reader.GetImageIO():
            _refuse_renamed_dicom(path)
        img = reader.Execute()
    except RuntimeError as exc:
        if _parses_as_dicom(path):  # a DICOM without preamble, renamed: GDCM does not recognise it
            _refuse_renamed_dicom(path)
        # ITK's text ends in a line that can mislead ("No such file or directory" for a short raw block)
        raise InputError(
            f"{path}: SimpleITK cannot read it as an image: the file is corrupt, truncated (the header promises more "
            "voxel data than the file holds), or not an MHA/MHD/NRRD image."
        ) from exc
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{path}: {img.GetNumberOfComponentsPerPixel()} components per voxel; a CT volume has one (HU)."
        )
    dim = img.GetDimension()
    size = img.GetSize()
    if dim > 3 and any(s != 1 for s in size[3:]):
        raise InputError(
            f"{path}: {dim}D image of size {size}; only 2D or 3D volumes are supported. Split it into 3D volumes."
        )
    # GetArrayFromImage gives (Z, Y, X) (C order of ITK's x-fastest buffer): reverse to (X, Y, Z).
    if 0 in size:
        raise InputError(f"{path}: image of size {size} has a zero-length axis: there are no voxels.")
    data = sitk.GetArrayFromImage(img).transpose(tuple(range(dim))[::-1])
    data = _finish_array(data, path, "image")
    d = min(dim, 3)
    direction = np.eye(3)
    direction[:d, :d] = np.array(img.GetDirection(), dtype=np.float64).reshape(dim, dim)[:d, :d]
    spacing = np.ones(3)
    spacing[:d] = img.GetSpacing()[:d]
    origin = np.zeros(3)
    origin[:d] = img.GetOrigin()[:d]
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing  # ITK direction columns are the axis directions, in LPS+
    lps[:3, 3] = origin
    _check_affine(lps, path, "image header's spacing/direction/origin")
    return CTVolume(hu=data, affine=orientation_ras_lps(lps), name=case.name, source=path, kind="image")


def _parses_as_dicom(path: Path) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # forced parse of what may be junk
        try:
            ds = read_dicom(path, stop_before_pixels=True, force=True)
        except InputError:
            return False
    return bool(ds.get("SOPClassUID") and ds.get("Modality"))


def _refuse_renamed_dicom(path: Path) -> None:
    """A DICOM file with an image-file name: say what it is rather than read it through SimpleITK as if HU."""
    modality = "unknown"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            modality = str(read_dicom(path, stop_before_pixels=True, force=True).get("Modality", "") or "missing")
    except InputError:
        pass
    raise InputError(
        f"{path}: this is a DICOM file (Modality {modality}), not an {path.suffix} image. Give DICOM files a .dcm name "
        "(or none) so they are read as DICOM; only CT series are denoised."
    )
