"""Reading a single-frame DICOM series (one file per slice) into a :class:`~ldct_clip.ct.io.volume.CTVolume`.

Each file is opened and checked (:mod:`ldct_clip.ct.io.dicom_file`), described as a
:class:`~ldct_clip.ct.io.dicom_geometry.Slice`, and the slices are sorted and rescaled to HU
(:mod:`ldct_clip.ct.io.dicom_geometry`).  A case that is one enhanced multi-frame file goes to
:func:`~ldct_clip.ct.io.enhanced_dicom.read_enhanced_dicom`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.ct.io.cases import Case, dicom_int
from ldct_clip.ct.io.dicom_file import check_ct, check_identity, decode_pixels, open_dicom
from ldct_clip.ct.io.dicom_geometry import Slice, assemble_geometry, float_or_none, floats, rescale, to_hu
from ldct_clip.ct.io.enhanced_dicom import read_enhanced_dicom
from ldct_clip.ct.io.volume import CTVolume

__all__ = ["read_dicom_headers", "read_dicom_series"]


def _single_frame_slice(ds: Any, label: str) -> Slice:
    return Slice(
        label=label,
        rows=dicom_int(ds, "Rows", label),
        cols=dicom_int(ds, "Columns", label),
        iop=floats(ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", label),
        ipp=floats(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient", label),
        pixel_spacing=floats(ds.get("PixelSpacing"), 2, "PixelSpacing", label),
        slope=float_or_none(ds.get("RescaleSlope"), "RescaleSlope", label),
        intercept=float_or_none(ds.get("RescaleIntercept"), "RescaleIntercept", label),
        thickness=float_or_none(ds.get("SpacingBetweenSlices"), "SpacingBetweenSlices", label)
        or float_or_none(ds.get("SliceThickness"), "SliceThickness", label),
    )


def read_dicom_series(case: Case, pixels: bool = True) -> CTVolume:
    """The series as a volume; with ``pixels=False`` only its headers are read (and ``hu`` is a zero placeholder
    that takes no memory), for writers that need the headers in the volume's slice order."""
    notes: list[str] = []
    datasets, slices, arrays = [], [], []
    for path in case.paths:
        ds = open_dicom(path, pixels)
        label = str(path)
        check_ct(ds, label)
        check_identity(ds, label)
        if "PerFrameFunctionalGroupsSequence" in ds or dicom_int(ds, "NumberOfFrames", label, default=1) > 1:
            if len(case.paths) == 1:
                return read_enhanced_dicom(case, ds, pixels)
            raise InputError(
                f"{path}: multi-frame DICOM file inside a series of {len(case.paths)} files; read it as its own case."
            )
        for keyword in ("Rows", "Columns"):
            if keyword not in ds:
                raise InputError(f"{label}: no {keyword}; not a DICOM image.")
        slices.append(_single_frame_slice(ds, label))
        if pixels:
            arrays.append(decode_pixels(ds, label))
            del ds.PixelData  # headers stay for the writer; pixels now live in `arrays`
        datasets.append(ds)

    order, affine = assemble_geometry(slices, notes)
    rescale(slices, notes)
    first = slices[0]
    shape = (first.cols, first.rows, len(slices))
    hu = np.empty(shape, dtype=np.float32) if pixels else np.broadcast_to(np.float32(0), shape)
    for k, idx in enumerate(order if pixels else ()):
        if arrays[idx].shape != (first.rows, first.cols):
            raise InputError(f"{slices[idx].label}: pixel data shape {arrays[idx].shape} does not match Rows/Columns.")
        hu[:, :, k] = to_hu(arrays[idx], slices[idx])
        arrays[idx] = None  # type: ignore[call-overload]  # free as we go: peak memory ~ stored + HU, not more
    return CTVolume(
        hu=hu,
        affine=affine,
        name=case.name,
        source=case.source,
        kind="dicom",
        dicom_headers=[datasets[i] for i in order],
        warnings=notes,
    )


def read_dicom_headers(case: Case) -> list[Any]:
    """The headers :func:`~ldct_clip.ct.io.read.read_case` gives a DICOM case (``CTVolume.dicom_headers``: one per slice in the volume's
    Z order, without PixelData), read again without decoding any pixels; for writing a derived series after the
    volume itself has gone through a pipeline that carries arrays only.

    Raises:
        InputError: as :func:`~ldct_clip.ct.io.read.read_case` (the files changed since), or ``case`` is not DICOM.
    """
    if case.kind != "dicom":
        raise InputError(f"case {case.name!r} is {case.kind}, not DICOM: it has no headers to derive a series from.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notes about this input were given when it was read
        return read_dicom_series(case, pixels=False).dicom_headers or []
