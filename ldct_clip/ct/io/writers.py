"""Writing results: NIfTI files and derived DICOM series, atomically and never over an input.

Every writer builds its output under a hidden temporary name inside the destination folder and moves it
into place with :func:`os.replace` (atomic on one file system), so a crash or a failed write leaves either
the old state or the complete result, never a half-written file or series.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.atomic import atomic_path, temp_name
from ldct_clip.ct.io.volume import is_multiframe_headers

__all__ = ["hu_to_int16", "write_nifti", "write_derived_series", "derived_uid", "check_output_path", "ensure_dir", "DEFAULT_SERIES_NUMBER_OFFSET"]

#: Derived series get the source SeriesNumber plus this (unless a number is given), so they sort after it.
DEFAULT_SERIES_NUMBER_OFFSET = 1000
_IS_MAX = 2**31 - 1  # IS value range
_LO_MAX = 64  # SeriesDescription is LO

# Elements of the source that no longer describe the derived pixels (or are vendor-private).
_DROP_KEYWORDS = (
    "PixelPaddingValue",  # denoised values are real everywhere: a padding value would hide some of them
    "PixelPaddingRangeLimit",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "DataSetTrailingPadding",
    "DerivationCodeSequence",
    "SourceImageSequence",
    "ReferencedImageEvidenceSequence",
    "SourceImageEvidenceSequence",
    "DigitalSignaturesSequence",  # signatures of the source would not verify
    "MACParametersSequence",
)


# ----------------------------------------------------------------------------------------------- helpers


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


def _resolved(path: Path | str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()


def check_output_path(target: Path | str, inputs: Iterable[Path | str] = (), *, replacing: bool = False) -> None:
    """Refuse an output path that is an input, lies inside one, or (``replacing``) would delete one.

    Args:
        target: file or folder about to be written.
        inputs: files or folders that must not be touched (a volume's ``source``).
        replacing: ``target`` is an existing folder that will be replaced, so inputs inside it count too.

    Raises:
        InputError: naming both paths.
    """
    t = _resolved(target)
    for inp in inputs:
        i = _resolved(inp)
        if t == i:
            raise InputError(
                f"Refusing to write {target}: it is the input {inp}. Choose an output path outside the input."
            )
        if i in t.parents:
            raise InputError(
                f"Refusing to write {target}: it is inside the input {inp}. Choose an output path outside the input."
            )
        if replacing and t in i.parents:
            raise InputError(
                f"Refusing to replace {target}: it contains the input {inp}. Choose another output folder."
            )


def ensure_dir(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise InputError(f"Cannot write into {folder}: it exists and is not a folder. Choose another output path.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"Cannot create output folder {folder} ({exc.strerror or exc}). Choose a writable output path."
        ) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(
            f"Output folder {folder} is not writable. Choose a writable output path or fix its permissions."
        )


@contextmanager
def _oserror_as_input_error(what: Path) -> Iterator[None]:
    try:
        yield
    except InputError:
        raise
    except OSError as exc:
        root = _system_error(exc)
        reason = root.strerror if root.errno is not None else str(root).splitlines()[0]
        raise InputError(
            f"Writing {what} failed: {reason} ({root.filename or what}). Check free space and permissions."
        ) from exc


def _system_error(exc: OSError) -> OSError:
    """The OSError that carries the errno: pydicom re-raises a write error as ``OSError("With tag ... got
    exception: ...<traceback>")`` without one, chained to the original (ENOSPC, EACCES, ...)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


# ------------------------------------------------------------------------------------------------- NIfTI


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
    with _oserror_as_input_error(path), atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


# ----------------------------------------------------------------------------------------- DICOM, shared


def _code(value: str, meaning: str) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _derivation_code() -> Any:
    return _code("113087", "Smoothing")  # CID 7203 Image Derivation: the closest standard term for denoising


def _purpose_code() -> Any:
    return _code("121322", "Source image for image processing operation")  # CID 7202


def _source_reference(src: Any) -> Any:
    from pydicom.dataset import Dataset

    ref = Dataset()
    ref.ReferencedSOPClassUID = src.SOPClassUID
    ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
    ref.PurposeOfReferenceCodeSequence = [_purpose_code()]
    return ref


def _stored_range(ds: Any) -> tuple[np.dtype, int, int]:
    """(numpy dtype of BitsAllocated/PixelRepresentation, min, max allowed by BitsStored)."""
    bits_allocated = int(ds.BitsAllocated)
    bits_stored = int(ds.get("BitsStored", bits_allocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if bits_allocated not in (8, 16, 32) or not 1 <= bits_stored <= bits_allocated:
        raise InputError(f"Unsupported pixel layout: BitsAllocated {bits_allocated}, BitsStored {bits_stored}.")
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits_allocated // 8}").newbyteorder("<")
    if signed:
        return dtype, -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    return dtype, 0, 2**bits_stored - 1


def _encode(hu_xy: np.ndarray, slope: float, intercept: float, dtype: np.dtype, lo: int, hi: int) -> np.ndarray:
    """(X, Y) HU -> (rows, cols) stored values = round((HU - intercept) / slope), clipped to the stored range."""
    stored = np.rint((hu_xy.T.astype(np.float64) - intercept) / slope)
    return np.clip(stored, lo, hi).astype(dtype)


def _rescale_of(ds: Any, per_frame: Any | None = None) -> tuple[float, float]:
    item = None
    if per_frame is not None and "PixelValueTransformationSequence" in per_frame:
        item = per_frame.PixelValueTransformationSequence[0]
    elif (
        "SharedFunctionalGroupsSequence" in ds
        and "PixelValueTransformationSequence" in ds.SharedFunctionalGroupsSequence[0]
    ):
        item = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    src = item if item is not None else ds
    slope = float(src.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(src.get("RescaleIntercept", 0.0) or 0.0)
    return slope, intercept


def _now() -> tuple[str, str]:
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")


def derived_uid(*sources: str) -> str:
    """A UID under pydicom's root that is a hash of ``sources``: the same sources give the same UID.

    Derived series and instances are named this way (from the source UIDs and how they were derived), so
    that rerunning a job, e.g. a PACS store cut short, writes the same series with the same instances again,
    which the PACS recognises as already stored, instead of a duplicate series."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["ldct-clip derived", *map(str, sources)]))


def _common_derived_tags(ds: Any, series_uid: str, description: str, series_number: int, derivation: str) -> None:
    date, time = _now()
    for keyword in _DROP_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    # Private tags describe the vendor's original pixels and processing; they are wrong for ours.
    ds.remove_private_tags()
    ds.SOPInstanceUID = derived_uid(series_uid, ds.get("SOPInstanceUID", ""))  # ds: still the source's copy
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = description
    ds.SeriesNumber = series_number
    ds.DerivationDescription = derivation[:1024]
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.ContentDate, ds.ContentTime = date, time


def _file_meta(ds: Any) -> Any:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "LDCT_CLIP_01"
    return meta


def _set_pixel_data(ds: Any, stored: np.ndarray) -> None:
    ds.add_new(0x7FE00010, "OB" if stored.dtype.itemsize == 1 else "OW", np.ascontiguousarray(stored).tobytes())


def _save(ds: Any, path: Path) -> None:
    """Write ``ds`` as a DICOM Part 10 file in Explicit VR Little Endian (pydicom 2.4 and 3.x)."""
    import pydicom

    ds.file_meta = _file_meta(ds)
    ds.preamble = b"\x00" * 128
    if int(pydicom.__version__.split(".")[0]) >= 3:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x, e.g. in the MONAI Label environment
        ds.is_little_endian, ds.is_implicit_VR = True, False
        pydicom.dcmwrite(path, ds, write_like_original=False)


# Transfer syntaxes that are always lossy -> LossyImageCompressionMethod (PS3.3 C.7.6.1.1.5).  JPEG 2000
# (1.2.840.10008.1.2.4.91) may be either; the source's own LossyImageCompression says which.
_LOSSY_TS = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
}


def _keep_lossy_history(ds: Any, src: Any) -> None:
    """Once pixels went through lossy compression, every derived image must say so (LossyImageCompression 01)."""
    meta = getattr(src, "file_meta", None)
    method = _LOSSY_TS.get(str(meta.get("TransferSyntaxUID", "")) if meta is not None else "")
    if method and str(ds.get("LossyImageCompression", "")) != "01":
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = method


def _description(src: Any, suffix: str) -> str:
    base = str(src.get("SeriesDescription", "") or "")
    keep = max(0, _LO_MAX - len(suffix))
    return (base[:keep] + suffix)[:_LO_MAX].strip() or "ldct-clip"


def _series_number(src: Any, given: int | None) -> int:
    if given is not None:
        return int(given)
    try:
        number = int(src.get("SeriesNumber", 0) or 0)
    except (TypeError, ValueError):
        number = 0
    return (number + DEFAULT_SERIES_NUMBER_OFFSET) % _IS_MAX


def _derived_image_type(src: Any) -> list[str]:
    values = [str(v) for v in (src.get("ImageType") or [])]
    # CT Image module: value 3 is AXIAL or LOCALIZER; we only ever write axial images.
    rest = values[2:] or ["AXIAL"]
    return ["DERIVED", "SECONDARY", *rest]


# ------------------------------------------------------------------------------------ DICOM, single-frame


def _single_frame_datasets(
    hu: np.ndarray, headers: list[Any], series_uid: str, suffix: str, number: int | None, derivation: str
) -> Iterator[tuple[str, Any]]:
    description = _description(headers[0], suffix)
    series_number = _series_number(headers[0], number)
    width = max(4, len(str(len(headers))))
    for k, src in enumerate(headers):
        ds = copy.deepcopy(src)
        if "PixelData" in ds:
            del ds.PixelData
        _common_derived_tags(ds, series_uid, description, series_number, derivation)
        ds.ImageType = _derived_image_type(src)
        _keep_lossy_history(ds, src)
        ds.DerivationCodeSequence = [_derivation_code()]
        ds.SourceImageSequence = [_source_reference(src)]
        slope, intercept = _rescale_of(src)
        dtype, lo, hi = _stored_range(ds)
        if "RescaleSlope" not in ds or "RescaleIntercept" not in ds:
            # CT Image module requires both; the reader read their absence as 1 / 0.
            ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        _set_pixel_data(ds, _encode(hu[:, :, k], slope, intercept, dtype, lo, hi))
        yield f"{k + 1:0{width}d}.dcm", ds


# ------------------------------------------------------------------------------------- DICOM, multi-frame


def _multiframe_dataset(
    hu: np.ndarray, src: Any, series_uid: str, suffix: str, number: int | None, derivation: str
) -> Any:
    """One enhanced multi-frame file: the source header with its functional groups, frames in Z order."""
    from pydicom.dataset import Dataset

    n = hu.shape[2]
    frames = int(src.get("NumberOfFrames", 1) or 1)
    per_frame = list(src.get("PerFrameFunctionalGroupsSequence", []))
    if frames != n or (per_frame and len(per_frame) != n):
        raise InputError(f"Multi-frame header describes {frames} frames but the volume has {n} slices.")
    ds = copy.deepcopy(src)
    if "PixelData" in ds:
        del ds.PixelData
    _common_derived_tags(ds, series_uid, _description(src, suffix), _series_number(src, number), derivation)
    if "DerivationDescription" in ds and "PerFrameFunctionalGroupsSequence" in ds:
        # Enhanced IODs carry derivation inside the Derivation Image functional group, not at the top.
        del ds.DerivationDescription
    # Enhanced images: value 1 becomes DERIVED, value 2 must stay PRIMARY (PS3.3 C.8.16.1); same for frames.
    _keep_lossy_history(ds, src)
    image_type = [str(v) for v in (src.get("ImageType") or ["ORIGINAL", "PRIMARY"])]
    ds.ImageType = ["DERIVED", *image_type[1:]]
    groups = [ds.SharedFunctionalGroupsSequence[0]] if "SharedFunctionalGroupsSequence" in ds else []
    groups += list(ds.get("PerFrameFunctionalGroupsSequence", []))
    for group in groups:
        for item in group.get("CTImageFrameTypeSequence", []):
            if "FrameType" in item:
                item.FrameType = ["DERIVED", *[str(v) for v in item.FrameType][1:]]
        if "DerivationImageSequence" in group:
            del group.DerivationImageSequence  # replaced by one shared group below
    derivation_item = Dataset()
    derivation_item.DerivationDescription = derivation[:1024]
    derivation_item.DerivationCodeSequence = [_derivation_code()]
    derivation_item.SourceImageSequence = [_source_reference(src)]
    if "SharedFunctionalGroupsSequence" not in ds:
        ds.SharedFunctionalGroupsSequence = [Dataset()]
    ds.SharedFunctionalGroupsSequence[0].DerivationImageSequence = [derivation_item]
    # Common Instance Reference module (ReferencedSeriesSequence) and, for DERIVED enhanced images, Source
    # Image Evidence (Hierarchical SOP Instance Reference macro): both required once other instances are cited.
    ref_instance = Dataset()
    ref_instance.ReferencedSOPClassUID = src.SOPClassUID
    ref_instance.ReferencedSOPInstanceUID = src.SOPInstanceUID
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = src.SeriesInstanceUID
    ref_series.ReferencedInstanceSequence = [ref_instance]
    ds.ReferencedSeriesSequence = [ref_series]
    evidence_series = Dataset()
    evidence_series.SeriesInstanceUID = src.SeriesInstanceUID
    evidence_series.ReferencedSOPSequence = [copy.deepcopy(ref_instance)]
    evidence = Dataset()
    evidence.StudyInstanceUID = src.StudyInstanceUID
    evidence.ReferencedSeriesSequence = [evidence_series]
    ds.SourceImageEvidenceSequence = [evidence]

    dtype, lo, hi = _stored_range(ds)
    stored = np.empty((n, int(ds.Rows), int(ds.Columns)), dtype=dtype)
    per_frame_out = list(ds.get("PerFrameFunctionalGroupsSequence", []))
    for k in range(n):
        slope, intercept = _rescale_of(ds, per_frame_out[k] if per_frame_out else None)
        stored[k] = _encode(hu[:, :, k], slope, intercept, dtype, lo, hi)
    _set_pixel_data(ds, stored)
    return ds


# ------------------------------------------------------------------------------------------------ public


def _auto_inputs(headers: list[Any], multiframe: bool) -> list[Path]:
    """Where the headers were read from: the series folder (single-frame) or the file (multi-frame)."""
    found: set[Path] = set()
    for ds in headers[:1] if multiframe else headers:
        filename = getattr(ds, "filename", None)
        if isinstance(filename, (str, os.PathLike)) and str(filename):
            found.add(Path(filename) if multiframe else Path(filename).parent)
    return sorted(found)


def write_derived_series(
    hu: np.ndarray,
    headers: list[Any],
    out_dir: Path | str,
    *,
    series_description_suffix: str = " [ldct-clip]",
    derivation: str = "ldct-clip denoised",
    series_number: int | None = None,
    inputs: Iterable[Path | str] = (),
    overwrite: bool = False,
) -> list[Path]:
    """Write ``hu`` as a new DICOM series derived from the source ``headers``, atomically.

    Single-frame source (one header per slice): one file per slice, ``0001.dcm``... in Z order, each a
    copy of its source header with a new SOPInstanceUID, one new SeriesInstanceUID for the series (both
    :func:`derived_uid`: the same source, description, number and derivation give the same UIDs on a rerun),
    ImageType ``DERIVED\\SECONDARY\\<source value 3+, else AXIAL>``, SeriesDescription + suffix, SeriesNumber
    (source + 1000 unless given), DerivationDescription/-CodeSequence, SourceImageSequence pointing at the
    source slice, and the source's patient, study, frame-of-reference and geometry tags.  Private tags,
    pixel padding and min/max pixel value tags are dropped (they describe the source pixels).

    Enhanced multi-frame source (the same header repeated per slice, see
    :class:`~ldct_clip.ct.io.volume.CTVolume`): one multi-frame file ``0001.dcm`` with the source's functional
    groups (per-frame item k = slice k), frame/image type value 1 ``DERIVED``, and a shared Derivation
    Image functional group referencing the source instance.

    In both cases stored values = round((HU - RescaleIntercept) / RescaleSlope) with each slice's/frame's
    own rescale, clipped to the range of BitsStored/PixelRepresentation, with the source's Rows, Columns,
    BitsAllocated, BitsStored and PixelRepresentation; files are uncompressed Explicit VR Little Endian
    with rebuilt file meta.

    Args:
        hu: (X, Y, Z) HU, slice k described by ``headers[k]``.
        headers: ``CTVolume.dicom_headers`` (pixel data removed or not; it is not used).
        out_dir: folder to create.  It must not exist, or be empty, unless ``overwrite``.
        series_description_suffix: appended to the source SeriesDescription (LO: 64 chars max in all).
        derivation: DerivationDescription text.
        series_number: SeriesNumber of the new series; default source + 1000.
        inputs: extra paths that must not be written to (e.g. ``[volume.source]``).  The folders of
            the source files named by the headers are always protected.
        overwrite: replace an existing non-empty ``out_dir`` (only after the new series is complete).

    Returns:
        Paths of the written files, in Z order.

    Raises:
        InputError: shape/header mismatch, NaN HU, ``out_dir`` is (inside) an input or not writable,
            ``out_dir`` not empty without ``overwrite``, or a write failure.
    """
    hu = np.asarray(hu)
    out_dir = Path(out_dir)
    if hu.ndim != 3:
        raise InputError(f"Derived series expects a 3D (X, Y, Z) array, got shape {hu.shape}.")
    if not headers or len(headers) != hu.shape[2]:
        raise InputError(
            f"Derived series needs one source header per slice: {len(headers or [])} headers for {hu.shape[2]} slices."
        )
    if np.issubdtype(hu.dtype, np.floating):
        bad = int(hu.size - np.count_nonzero(np.isfinite(hu)))
        if bad:
            raise InputError(f"HU array holds {bad} NaN/inf value(s); cannot encode them as DICOM pixels.")
    cols, rows = hu.shape[:2]
    for ds in (headers[0], headers[-1]):
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise InputError(
                f"HU array is {rows} rows x {cols} columns per slice but the source header says {ds.Rows} x {ds.Columns}; "
                "write the result at the source resolution."
            )
    multiframe = is_multiframe_headers(headers)
    protected = [*inputs, *_auto_inputs(headers, multiframe)]
    check_output_path(out_dir, protected)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputError(
                f"Output {out_dir} exists and is not a folder. Choose a folder path for the derived series."
            )
        if any(out_dir.iterdir()):
            if not overwrite:
                raise InputError(
                    f"Output folder {out_dir} exists and is not empty. Choose a new folder or allow overwriting."
                )
            check_output_path(out_dir, protected, replacing=True)
    ensure_dir(out_dir.parent)

    src = headers[0]
    series_uid = derived_uid(
        src.get("SeriesInstanceUID", ""), _description(src, series_description_suffix), _series_number(src, series_number),
        derivation,
    )
    tmp_dir = temp_name(out_dir, "tmp")
    written: list[str] = []
    try:
        with _oserror_as_input_error(out_dir):
            tmp_dir.mkdir()
            if multiframe:
                items: Iterable[tuple[str, Any]] = [
                    (
                        "0001.dcm",
                        _multiframe_dataset(
                            hu, headers[0], series_uid, series_description_suffix, series_number, derivation
                        ),
                    )
                ]
            else:
                items = _single_frame_datasets(
                    hu, headers, series_uid, series_description_suffix, series_number, derivation
                )
            for filename, ds in items:
                _save(ds, tmp_dir / filename)
                written.append(filename)
            _move_into_place(tmp_dir, out_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return [out_dir / f for f in written]


def _move_into_place(tmp_dir: Path, out_dir: Path) -> None:
    """Rename the finished ``tmp_dir`` to ``out_dir``; an existing ``out_dir`` is swapped out, then removed."""
    if out_dir.exists() and not any(out_dir.iterdir()):
        out_dir.rmdir()  # rename() over an empty folder is POSIX-only; make it portable
    if not out_dir.exists():
        os.replace(tmp_dir, out_dir)
        return
    old = temp_name(out_dir, "old")
    os.replace(out_dir, old)
    try:
        os.replace(tmp_dir, out_dir)
    except BaseException:
        os.replace(old, out_dir)  # put the previous result back
        raise
    shutil.rmtree(old, ignore_errors=True)
