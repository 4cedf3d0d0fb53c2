"""Real synthetic CT files (DICOM series, enhanced multi-frame CT, NIfTI) from HU arrays, for tests and
``scripts/make_example.py`` (test code: it does not ship in the package).

Arrays follow the package convention: ``hu_xyz`` is (X, Y, Z) = (columns, rows, slices) in HU, slice k
is ``hu_xyz[:, :, k]`` and lies at ``origin + k * spacing[2] * normal`` (LPS+ mm, normal = row x column
direction).  The files are complete enough to pass ``dciodvfy`` (CT Image Storage / Enhanced CT Image
Storage IODs) so that writer tests can check derived output against a clean source.

Reused by the bundle tests: keep the signatures simple and backwards compatible.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

__all__ = [
    "DEFAULT_ORIGIN",
    "AXIAL",
    "ct_affine",
    "phantom_hu",
    "write_ct_series",
    "write_enhanced_ct",
    "write_nifti",
    "can_encode",
]

#: LPS+ position of voxel (0, 0, 0) of the first slice.  Not at 0 so that sign flips show in tests.
DEFAULT_ORIGIN = (-90.0, -110.0, -40.0)
#: ImageOrientationPatient of a standard axial slice: rows go to patient left, columns to posterior.
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def ct_affine(
    spacing: Sequence[float] = (0.7, 0.7, 2.0),
    origin: Sequence[float] = DEFAULT_ORIGIN,
    orientation: Sequence[float] = AXIAL,
) -> np.ndarray:
    """The RAS+ voxel -> mm affine a reader should return for files written with these arguments.

    Computed independently of ``ldct_clip.ct.io`` (LPS+ matrix from the DICOM definition, then x, y negated).
    """
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    lps = np.eye(4)
    lps[:3, 0] = row * spacing[0]
    lps[:3, 1] = col * spacing[1]
    lps[:3, 2] = normal * spacing[2]
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def phantom_hu(
    shape: Sequence[int] = (48, 40, 6), seed: int = 0, noise: float = 20.0, integer: bool = True
) -> np.ndarray:
    """A small (X, Y, Z) HU phantom: air around a water ellipse with a bone disc and a lung hole, plus noise.

    Every slice differs (the bone disc moves with z) so that slice-order mistakes change the data.
    """
    nx, ny, nz = shape
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, nx)[:, None, None]
    y = np.linspace(-1, 1, ny)[None, :, None]
    z = np.arange(nz)[None, None, :]
    hu = np.full(shape, -1000.0)
    hu = np.where((x / 0.85) ** 2 + (y / 0.7) ** 2 < 1, 40.0, hu)
    hu = np.where((x - 0.3 + 0.05 * z) ** 2 + (y + 0.1) ** 2 < 0.04, 900.0, hu)
    hu = np.where((x + 0.4) ** 2 + (y - 0.2) ** 2 < 0.03, -850.0, hu)
    hu = hu + rng.normal(0, noise, shape)
    hu = np.clip(hu, -1024, 3071)
    return np.rint(hu) if integer else hu.astype(np.float32)


def can_encode(transfer_syntax: str) -> bool:
    """Whether pydicom can compress to ``transfer_syntax`` here (JPEG-LS needs pyjpegls, for instance)."""
    try:
        from pydicom.pixels import get_encoder

        return get_encoder(UID(transfer_syntax)).is_available
    except Exception:
        return False


def _now() -> tuple[str, str]:
    now = _dt.datetime(2024, 5, 17, 10, 30, 0)  # fixed: tests must be reproducible
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _stored(hu: np.ndarray, slope: float, intercept: float, signed: bool | None) -> tuple[np.ndarray, bool]:
    stored = np.rint((np.asarray(hu, dtype=np.float64) - intercept) / slope)
    if signed is None:
        signed = bool(stored.min() < 0)
    lo, hi = (-32768, 32767) if signed else (0, 65535)
    if stored.min() < lo or stored.max() > hi:
        raise ValueError(
            f"HU range does not fit {'int16' if signed else 'uint16'} with slope {slope} / intercept {intercept}"
        )
    return stored.astype(np.int16 if signed else np.uint16), signed


def _base_dataset(
    *,
    sop_class: str,
    modality: str,
    study_uid: str,
    series_uid: str,
    frame_of_reference_uid: str,
    patient_id: str,
    patient_name: str,
    series_number: int,
    series_description: str,
    rows: int,
    cols: int,
    signed: bool,
) -> Dataset:
    date, time = _now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = time
    ds.AccessionNumber = "ACC0001"
    ds.Modality = modality
    ds.Manufacturer = "ldct-clip tests"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "synthetic phantom"
    ds.SeriesDescription = series_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "CHEST"  # unpaired, so General Series Laterality (2C) must be absent
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    return ds


def _save(ds: Dataset, path: Path, transfer_syntax: str | None) -> None:
    ts = UID(transfer_syntax) if transfer_syntax else ExplicitVRLittleEndian
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    if ts.is_compressed:
        ds.compress(ts)  # sets file_meta.TransferSyntaxUID and encapsulates PixelData
    else:
        meta.TransferSyntaxUID = ts
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def write_ct_series(
    folder: Path | str,
    hu_xyz: np.ndarray,
    *,
    spacing: Sequence[float] = (0.7, 0.7, 2.0),
    origin: Sequence[float] = DEFAULT_ORIGIN,
    orientation: Sequence[float] = AXIAL,
    slope: float = 1.0,
    intercept: float = -1024.0,
    signed: bool | None = None,
    series_description: str = "LDCT",
    series_number: int = 1,
    modality: str = "CT",
    transfer_syntax: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    patient_id: str = "LDCT0001",
    patient_name: str = "Phantom^Synthetic",
    z_positions: Sequence[float] | None = None,
    prefix: str = "IM",
) -> list[Path]:
    """Write ``hu_xyz`` as a single-frame CT (or ``modality``) DICOM series, one file per slice.

    Args:
        folder: created if needed.
        hu_xyz: (X, Y, Z) HU.
        spacing: (x, y, z) mm = (PixelSpacing[1], PixelSpacing[0], slice step).
        origin: LPS+ mm position of voxel (0, 0) of slice 0.
        orientation: ImageOrientationPatient.
        slope, intercept: RescaleSlope / RescaleIntercept; stored = round((HU - intercept) / slope).
        signed: int16 (True) or uint16 (False) stored values; default: int16 only if needed.
        modality: "CT" gives CT Image Storage; anything else MR Image Storage (for rejection tests).
        transfer_syntax: None for Explicit VR Little Endian, or a UID (e.g. ``pydicom.uid.RLELossless``,
            ``JPEG2000Lossless``, ``ImplicitVRLittleEndian``); see :func:`can_encode`.
        z_positions: explicit slice offsets (mm along the normal) instead of ``k * spacing[2]``, to make
            gaps; must have Z entries.
        prefix: file names are ``<prefix>0001.dcm``...

    Returns:
        The files in slice order (k = 0 first).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hu_xyz = np.asarray(hu_xyz)
    if hu_xyz.ndim != 3:
        raise ValueError(f"hu_xyz must be (X, Y, Z), got {hu_xyz.shape}")
    nx, ny, nz = hu_xyz.shape
    stored, signed = _stored(hu_xyz, slope, intercept, signed)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    for_uid = generate_uid()
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    offsets = list(z_positions) if z_positions is not None else [k * spacing[2] for k in range(nz)]
    if len(offsets) != nz:
        raise ValueError("z_positions must have one entry per slice")
    is_ct = modality == "CT"
    paths = []
    for k in range(nz):
        ds = _base_dataset(
            sop_class=CTImageStorage if is_ct else MRImageStorage,
            modality=modality,
            study_uid=study_uid,
            series_uid=series_uid,
            frame_of_reference_uid=for_uid,
            patient_id=patient_id,
            patient_name=patient_name,
            series_number=series_number,
            series_description=series_description,
            rows=ny,
            cols=nx,
            signed=signed,
        )
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        position = np.asarray(origin, float) + offsets[k] * normal
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        ds.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[0]:g}"]
        ds.SliceThickness = f"{spacing[2]:g}"
        ds.SliceLocation = f"{float(position @ normal):.6f}"
        if is_ct:
            ds.KVP = "120"
            ds.RescaleIntercept = f"{intercept:g}"
            ds.RescaleSlope = f"{slope:g}"
            ds.RescaleType = "HU"
            ds.WindowCenter, ds.WindowWidth = "40", "400"
        else:
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
            ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "500", "10", "1"
            ds.MagneticFieldStrength = "1.5"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # (X, Y) -> (rows, cols)
        path = folder / f"{prefix}{k + 1:04d}.dcm"
        _save(ds, path, transfer_syntax)
        paths.append(path)
    return paths


def write_enhanced_ct(
    path: Path | str,
    hu_xyz: np.ndarray,
    *,
    spacing: Sequence[float] = (0.7, 0.7, 2.0),
    origin: Sequence[float] = DEFAULT_ORIGIN,
    orientation: Sequence[float] = AXIAL,
    slope: float = 1.0,
    intercept: float | Sequence[float] = -1024.0,
    frame_order: Sequence[int] | None = None,
    series_description: str = "LDCT enhanced",
    transfer_syntax: str | None = None,
) -> Path:
    """Write ``hu_xyz`` as one Enhanced CT Image Storage multi-frame file (one frame per slice).

    Geometry goes into shared PixelMeasures/PlaneOrientation and per-frame PlanePosition functional groups.
    With one ``intercept``, PixelValueTransformation is a shared group; with a sequence (one per slice) it
    is per-frame, which exercises per-frame rescale.  ``frame_order[f]`` is the slice stored as frame f
    (default: slice order), to test that readers sort frames by position.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hu_xyz = np.asarray(hu_xyz, dtype=np.float64)
    nx, ny, nz = hu_xyz.shape
    intercepts = [float(intercept)] * nz if np.isscalar(intercept) else [float(v) for v in intercept]  # type: ignore[arg-type]
    per_frame_rescale = not np.isscalar(intercept)
    order = list(frame_order) if frame_order is not None else list(range(nz))
    stored_slices = [np.rint((hu_xyz[:, :, k] - intercepts[k]) / slope) for k in range(nz)]
    signed = min(float(s.min()) for s in stored_slices) < 0
    dtype = np.int16 if signed else np.uint16
    study_uid, series_uid = generate_uid(), generate_uid()
    ds = _base_dataset(
        sop_class=EnhancedCTImageStorage,
        modality="CT",
        study_uid=study_uid,
        series_uid=series_uid,
        frame_of_reference_uid=generate_uid(),
        patient_id="LDCT0002",
        patient_name="Phantom^Enhanced",
        series_number=2,
        series_description=series_description,
        rows=ny,
        cols=nx,
        signed=signed,
    )
    date, time = _now()
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = 1
    # DERIVED keeps the fixture short: ORIGINAL enhanced CT also needs the CT acquisition/geometry/
    # reconstruction/exposure functional groups, which readers and writers never look at.
    ds.ImageType = ["DERIVED", "PRIMARY", "VOLUME", "NONE"]
    del ds.AcquisitionDate, ds.AcquisitionTime  # not part of the Enhanced CT IOD (AcquisitionDateTime is)
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.AcquisitionDateTime = date + time
    ds.AcquisitionDuration = 1.0
    ds.ContentQualification = "RESEARCH"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.ManufacturerModelName = "synthetic"
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = "0"
    ds.AcquisitionContextSequence = []
    ds.NumberOfFrames = nz
    dim_uid = generate_uid()
    dim = Dataset()
    dim.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = [dim]
    ds.DimensionOrganizationType = "3D"
    index = Dataset()
    index.DimensionOrganizationUID = dim_uid
    index.DimensionIndexPointer = 0x00209057  # In-Stack Position Number
    index.FunctionalGroupPointer = 0x00209111  # Frame Content Sequence
    ds.DimensionIndexSequence = [index]

    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[0]:g}"]
    measures.SliceThickness = f"{spacing[2]:g}"
    shared.PixelMeasuresSequence = [measures]
    orient = Dataset()
    orient.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
    shared.PlaneOrientationSequence = [orient]
    frame_type = Dataset()
    frame_type.FrameType = ["DERIVED", "PRIMARY", "VOLUME", "NONE"]
    frame_type.PixelPresentation = "MONOCHROME"
    frame_type.VolumetricProperties = "VOLUME"
    frame_type.VolumeBasedCalculationTechnique = "NONE"
    shared.CTImageFrameTypeSequence = [frame_type]
    voi = Dataset()
    voi.WindowCenter, voi.WindowWidth = "40", "400"
    shared.FrameVOILUTSequence = [voi]
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "51185008", "SCT", "Chest"
    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = [region]
    anatomy.FrameLaterality = "U"
    shared.FrameAnatomySequence = [anatomy]
    irradiation = Dataset()
    irradiation.IrradiationEventUID = generate_uid()
    shared.IrradiationEventIdentificationSequence = [irradiation]

    def _transform(icpt: float) -> Dataset:
        item = Dataset()
        item.RescaleIntercept = f"{icpt:g}"
        item.RescaleSlope = f"{slope:g}"
        item.RescaleType = "HU"
        return item

    if not per_frame_rescale:
        shared.PixelValueTransformationSequence = [_transform(intercepts[0])]
    ds.SharedFunctionalGroupsSequence = [shared]

    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    per_frame = []
    frames = np.empty((nz, ny, nx), dtype=dtype)
    for f, k in enumerate(order):
        item = Dataset()
        content = Dataset()
        content.FrameAcquisitionDateTime = date + time
        content.FrameReferenceDateTime = date + time
        content.FrameAcquisitionDuration = 1.0
        content.StackID = "1"
        content.InStackPositionNumber = k + 1
        content.DimensionIndexValues = [k + 1]
        item.FrameContentSequence = [content]
        pos = Dataset()
        pos.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(origin, float) + k * spacing[2] * normal]
        item.PlanePositionSequence = [pos]
        if per_frame_rescale:
            item.PixelValueTransformationSequence = [_transform(intercepts[k])]
        per_frame.append(item)
        frames[f] = stored_slices[k].T
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = frames.tobytes()
    _save(ds, path, transfer_syntax)
    return path


def write_nifti(path: Path | str, hu_xyz: np.ndarray, affine: np.ndarray | None = None, dtype: type = np.int16) -> Path:
    """Write ``hu_xyz`` (any dimensionality) as NIfTI-1 with nibabel; ``affine`` defaults to :func:`ct_affine`."""
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = ct_affine() if affine is None else np.asarray(affine, float)
    img = nib.Nifti1Image(np.asarray(hu_xyz).astype(dtype), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return path


# Re-exported for tests that build odd transfer syntaxes.
IMPLICIT_VR = ImplicitVRLittleEndian
