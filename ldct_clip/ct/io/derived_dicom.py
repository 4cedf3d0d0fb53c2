"""The DICOM datasets of a derived (denoised) series, built from the source headers: new UIDs, derived image type,
references to the source images, each slice's stored values from HU with its own rescale.

Single-frame sources give one dataset per slice (:func:`single_frame_datasets`), an enhanced multi-frame source
one dataset with its functional groups (:func:`multiframe_dataset`).  :mod:`ldct_clip.ct.io.derived_series`
writes them.
"""

from __future__ import annotations

import copy
import datetime as _dt
from collections.abc import Iterator
from typing import Any

import numpy as np

from ldct_clip.errors import InputError

__all__ = ["DEFAULT_SERIES_NUMBER_OFFSET", "derived_series_uid", "derived_uid", "multiframe_dataset",
           "single_frame_datasets"]

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


def _set_pixel_data(ds: Any, stored: np.ndarray) -> None:
    ds.add_new(0x7FE00010, "OB" if stored.dtype.itemsize == 1 else "OW", np.ascontiguousarray(stored).tobytes())


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


def derived_series_uid(src: Any, suffix: str, number: int | None, derivation: str) -> str:
    """The SeriesInstanceUID of the series derived from ``src``'s series with this description suffix, number and
    derivation (:func:`derived_uid`: the same on a rerun)."""
    return derived_uid(
        src.get("SeriesInstanceUID", ""), _description(src, suffix), _series_number(src, number), derivation,
    )


def single_frame_datasets(
    hu: np.ndarray, headers: list[Any], series_uid: str, suffix: str, number: int | None, derivation: str
) -> Iterator[tuple[str, Any]]:
    """``(file name, dataset)`` per slice of ``hu`` (X, Y, Z) HU, slice k derived from ``headers[k]``."""
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


def multiframe_dataset(
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
