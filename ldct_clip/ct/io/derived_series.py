"""Writing a derived DICOM series (:mod:`ldct_clip.ct.io.derived_dicom`) into a new folder, atomically and never
over an input.

The files are written into a hidden temporary folder beside the destination, which is then moved into place
with :func:`os.replace` (atomic on one file system), so a crash or a failed write leaves either the old
state or the complete series, never a half-written one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.atomic import temp_name
from ldct_clip.ct.io.derived_dicom import derived_series_uid, multiframe_dataset, single_frame_datasets
from ldct_clip.ct.io.output_paths import check_output_path, ensure_dir, oserror_as_input_error
from ldct_clip.ct.io.volume import is_multiframe_headers

__all__ = ["write_derived_series"]


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
    :func:`~ldct_clip.ct.io.derived_dicom.derived_uid`: the same source, description, number and derivation give the same UIDs on a rerun),
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
    series_uid = derived_series_uid(src, series_description_suffix, series_number, derivation)
    tmp_dir = temp_name(out_dir, "tmp")
    written: list[str] = []
    try:
        with oserror_as_input_error(out_dir):
            tmp_dir.mkdir()
            if multiframe:
                items: Iterable[tuple[str, Any]] = [
                    (
                        "0001.dcm",
                        multiframe_dataset(
                            hu, headers[0], series_uid, series_description_suffix, series_number, derivation
                        ),
                    )
                ]
            else:
                items = single_frame_datasets(
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
