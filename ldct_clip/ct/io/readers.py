"""Reading a :class:`~ldct_clip.ct.io.cases.Case` into a :class:`~ldct_clip.ct.io.volume.CTVolume` (HU + geometry).

DICOM geometry (PS3.3 C.7.6.2): a slice's voxel (column i, row j) lies at
``IPP + i * PixelSpacing[1] * row_dir + j * PixelSpacing[0] * col_dir`` in LPS+ mm, where
``IOP = row_dir (3) + col_dir (3)``.  Slices are sorted along ``normal = row_dir x col_dir``; the affine's
third column is the mean step between consecutive slice origins.  Every LPS+ matrix is turned into the
RAS+ matrix nibabel expects by negating its first two rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.ct.io.cases import Case, dicom_int, find_cases, has_dicm_magic, read_dicom
from ldct_clip.ct.io.volume import CTVolume

__all__ = ["read_case", "read_dicom_headers", "read_path", "LPS_TO_RAS"]

#: Multiply an LPS+ affine on the left by this to get the RAS+ affine (and vice versa).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

_ORIENTATION_TOL = 1e-4  # direction cosines are stored with ~6 decimals
_SPACING_TOL = 1e-3  # mm
_DUPLICATE_TOL = 1e-3  # mm: two slices closer than this along the normal are the same position
_TILT_WARN_DEG = 0.1
#: No CT value comes near this; rescaled values beyond it mean broken rescale tags (and would overflow float32).
_HU_LIMIT = 1e6


def _warn(notes: list[str], message: str) -> None:
    notes.append(message)
    warnings.warn(message, UserWarning, stacklevel=3)


@dataclass
class _Slice:
    """Geometry and rescale of one 2D image (a file of a series, or a frame of a multi-frame file)."""

    label: str  # for messages: the file name, or "frame N of <file>"
    rows: int
    cols: int
    iop: np.ndarray | None  # (6,) row direction cosines then column direction cosines, LPS
    ipp: np.ndarray | None  # (3,) centre of the first voxel, LPS mm
    pixel_spacing: np.ndarray | None  # (2,) (between rows, between columns) mm
    slope: float | None
    intercept: float | None
    thickness: float | None  # SpacingBetweenSlices, else SliceThickness; only used for one-slice volumes


def _floats(value: Any, n: int, what: str, label: str) -> np.ndarray | None:
    if value is None:
        return None
    try:
        items = list(value) if isinstance(value, SequenceABC) and not isinstance(value, (str, bytes)) else [value]
        arr = np.array([float(v) for v in items], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{label}: {what} {value!r} is not numeric ({exc}).") from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise InputError(f"{label}: {what} must hold {n} finite numbers, got {value!r}.")
    return arr


def _float_or_none(value: Any, what: str, label: str) -> float | None:
    if value is None or value == "":
        return None
    arr = _floats(value, 1, what, label)
    return None if arr is None else float(arr[0])


# --------------------------------------------------------------------------------------------- geometry


def _check_same(
    slices: list[_Slice], get: Callable[[_Slice], Any], what: str, what_to_do: str, tol: float | None = None
) -> None:
    ref = get(slices[0])
    for s in slices[1:]:
        value = get(s)
        if tol is None:
            same = value == ref
        else:
            same = (value is None) == (ref is None) and (value is None or np.allclose(value, ref, atol=tol, rtol=0))
        if not same:
            raise InputError(
                f"Inconsistent {what} in one series: {slices[0].label} has {_fmt(ref)}, {s.label} has {_fmt(value)}. "
                f"{what_to_do}"
            )


def _fmt(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return "[" + ", ".join(f"{v:g}" for v in value) + "]"
    return repr(value)


def _assemble_geometry(slices: list[_Slice], notes: list[str]) -> tuple[list[int], np.ndarray]:
    """Sort the slices along their normal and build the RAS+ affine.

    Returns:
        ``order`` (indices into ``slices``, increasing position along the normal) and the 4x4 affine.
    """
    split_advice = "The slices do not form one volume: export them as separate series."
    _check_same(slices, lambda s: (s.rows, s.cols), "image size (Rows, Columns)", split_advice)
    n = len(slices)

    if any(s.iop is None for s in slices) or any(s.ipp is None for s in slices):
        missing = next(s for s in slices if s.iop is None or s.ipp is None)
        if n > 1:
            raise InputError(
                f"{missing.label}: ImageOrientationPatient/ImagePositionPatient missing, so the {n} slices cannot be "
                "ordered. Re-export the series with geometry, or convert it to NIfTI."
            )
        _warn(
            notes,
            f"{missing.label}: no ImageOrientationPatient/ImagePositionPatient; assuming an axial slice at the origin.",
        )
        for s in slices:
            s.iop = np.array([1.0, 0, 0, 0, 1, 0]) if s.iop is None else s.iop
            s.ipp = np.zeros(3) if s.ipp is None else s.ipp
    _check_same(slices, lambda s: s.iop, "ImageOrientationPatient", split_advice, tol=_ORIENTATION_TOL)

    if any(s.pixel_spacing is None for s in slices):
        _warn(notes, f"{slices[0].label}: no PixelSpacing; assuming 1 mm pixels.")
        for s in slices:
            s.pixel_spacing = np.ones(2) if s.pixel_spacing is None else s.pixel_spacing
    _check_same(slices, lambda s: s.pixel_spacing, "PixelSpacing", split_advice, tol=_SPACING_TOL)
    if np.any(slices[0].pixel_spacing <= 0):  # type: ignore[operator]
        raise InputError(f"{slices[0].label}: PixelSpacing {_fmt(slices[0].pixel_spacing)} must be positive.")

    iop = slices[0].iop
    assert iop is not None
    row_dir, col_dir = iop[:3], iop[3:]
    if (
        abs(np.linalg.norm(row_dir) - 1) > 1e-2
        or abs(np.linalg.norm(col_dir) - 1) > 1e-2
        or abs(row_dir @ col_dir) > 1e-2
    ):
        raise InputError(f"{slices[0].label}: ImageOrientationPatient {_fmt(iop)} is not two orthogonal unit vectors.")
    row_dir, col_dir = row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    ipps = np.stack([s.ipp for s in slices])  # type: ignore[misc]
    along = ipps @ normal
    order = [int(i) for i in np.argsort(along, kind="stable")]
    along_sorted = along[order]

    if n > 1:
        steps = np.diff(along_sorted)
        dup = np.flatnonzero(steps < _DUPLICATE_TOL)
        if dup.size:
            a, b = slices[order[dup[0]]], slices[order[dup[0] + 1]]
            raise InputError(
                f"{a.label} and {b.label} are at the same position ({along_sorted[dup[0]]:.3f} mm along the slice normal); "
                f"{dup.size} duplicate position(s) in all. The folder mixes several reconstructions or phases of one "
                "series: keep one of them."
            )
        step = float(np.median(steps))
        irregular = np.abs(steps - step) > max(_SPACING_TOL * 10, 0.01 * step)
        if irregular.any():
            missing = int(np.sum(np.maximum(np.rint(steps / step) - 1, 0)))
            _warn(
                notes,
                f"Slice spacing is not uniform: steps from {steps.min():.3f} to {steps.max():.3f} mm (median {step:.3f} mm)"
                + (f"; about {missing} slice(s) seem to be missing" if missing else "")
                + ". The volume keeps the slices as they are and its affine uses the median spacing, so positions "
                "along Z are approximate.",
            )
        # Direction from first to last origin, not the normal: with gantry tilt the origins shear sideways,
        # and the affine must follow them for the voxels to land where the scanner put them.
        span = ipps[order[-1]] - ipps[order[0]]
        direction = span / np.linalg.norm(span)
        cos_tilt = float(direction @ normal)
        tilt = float(np.degrees(np.arccos(np.clip(cos_tilt, -1.0, 1.0))))
        if tilt > _TILT_WARN_DEG:
            _warn(notes, f"Slices are sheared by {tilt:.2f} degrees (gantry tilt); the affine is not orthogonal.")
        step_vec = direction * (step / cos_tilt)
    else:
        thickness = slices[0].thickness
        step_vec = normal * (thickness if thickness and thickness > 0 else 1.0)

    spacing = slices[0].pixel_spacing
    assert spacing is not None
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[1]  # i runs along a row: one column further
    lps[:3, 1] = col_dir * spacing[0]  # j runs down a column: one row further
    lps[:3, 2] = step_vec
    lps[:3, 3] = ipps[order[0]]
    return order, LPS_TO_RAS @ lps


def _rescale(slices: list[_Slice], notes: list[str]) -> None:
    missing = [s for s in slices if s.slope is None or s.intercept is None]
    for what in ("slope", "intercept"):
        has = [s for s in slices if getattr(s, what) is not None]
        lacks = [s for s in slices if getattr(s, what) is None]
        if has and lacks:
            # A default for one slice among slices that have a value would shift that slice by the intercept
            # (typically 1024 HU): guessing is not safe, so refuse.
            keyword = "RescaleSlope" if what == "slope" else "RescaleIntercept"
            values = sorted({getattr(s, what) for s in has})
            raise InputError(
                f"{lacks[0].label}: no {keyword}, while {len(has)} other slice(s) of the series have one "
                f"({', '.join(f'{v:g}' for v in values[:3])}); {len(lacks)} slice(s) lack it. Their HU would be wrong: "
                f"add {keyword} to those files or remove them from the series."
            )
    if missing:
        _warn(
            notes,
            f"{len(missing)} of {len(slices)} slice(s) (first: {missing[0].label}) have no RescaleSlope/RescaleIntercept; "
            "using slope 1 and intercept 0, i.e. assuming stored values are already HU.",
        )
        for s in missing:
            s.slope = 1.0 if s.slope is None else s.slope
            s.intercept = 0.0 if s.intercept is None else s.intercept
    for s in slices:
        if s.slope == 0:
            raise InputError(f"{s.label}: RescaleSlope is 0, which maps every pixel to one value. The file is broken.")


# -------------------------------------------------------------------------------------------------- DICOM


def _transfer_syntax(ds: Any) -> Any:
    meta = getattr(ds, "file_meta", None)
    return None if meta is None else meta.get("TransferSyntaxUID")


def _codec_problem(ds: Any) -> str | None:
    """A sentence naming what to install when ``ds``'s transfer syntax has no working decoder, else None."""
    ts = _transfer_syntax(ds)
    if ts is None:
        return None
    if not getattr(ts, "is_transfer_syntax", False):
        return f"its file meta names {str(ts)!r}, which is not a known transfer syntax. Re-export the file."
    if not ts.is_compressed:
        return None
    try:
        from pydicom.pixels import get_decoder  # pydicom >= 3
    except ImportError:
        return None
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        return f"pydicom has no decoder for transfer syntax {ts.name} ({ts}). Convert the series to an uncompressed transfer syntax (e.g. with dcmtk's dcmdjpeg/dcmconv)."
    if decoder.is_available:
        return None
    return (
        f"no installed decoder for transfer syntax {ts.name} ({ts}). Install one of: "
        + "; ".join(decoder.missing_dependencies)
        + " (e.g. pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle)."
    )


def _dcmread(path: Path, pixels: bool = True) -> Any:
    """The whole file (without pixel data unless ``pixels``); a preamble-less file (no ``DICM``) gets the transfer
    syntax it was read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ds = read_dicom(path, stop_before_pixels=not pixels)
    if _transfer_syntax(ds) is None:
        # Older exports: a bare dataset, no file meta.  pydicom worked out the encoding while reading it, which
        # says unambiguously how the (then necessarily uncompressed) pixel data are laid out.
        implicit, little = ds.original_encoding
        if ds.get("PixelData") is not None and implicit is not None:
            ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
            )
    return ds


def _check_identity(ds: Any, label: str) -> None:
    """The UIDs a derived series must cite; a file without them is incomplete."""
    missing = [k for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID") if not ds.get(k)]
    if missing:
        raise InputError(
            f"{label}: no {', '.join(missing)}; every DICOM image has them, so the header is incomplete. Re-export the "
            "series (or convert it to NIfTI)."
        )


def _pixels(ds: Any, label: str) -> np.ndarray:
    problem = _codec_problem(ds)
    if problem:
        raise InputError(f"{label}: cannot decode pixel data: {problem}")
    if "PixelData" not in ds:
        raise InputError(f"{label}: DICOM file has no PixelData (not an image?).")
    if dicom_int(ds, "SamplesPerPixel", label, default=1) != 1:
        raise InputError(f"{label}: SamplesPerPixel is {ds.SamplesPerPixel}; CT images are single-channel greyscale.")
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises many types here: corrupt, truncated, or undecodable data
        ts = _transfer_syntax(ds)
        ts_text = f" (transfer syntax {ts.name})" if ts is not None else ""
        raise InputError(
            f"{label}: cannot decode pixel data{ts_text}: {type(exc).__name__}: {exc}. "
            "The file is corrupt or truncated, or its compression is not supported: re-export it uncompressed."
        ) from exc


def _check_ct(ds: Any, label: str) -> None:
    modality = str(ds.get("Modality", "") or "")
    if modality != "CT":
        raise InputError(
            f"{label}: Modality is {modality or 'missing'!r}, not 'CT'. ldct-clip denoises CT images only; "
            "pick the CT series (or convert to NIfTI if you know the values are HU)."
        )
    if "ModalityLUTSequence" in ds:
        raise InputError(
            f"{label}: uses a Modality LUT Sequence instead of RescaleSlope/Intercept; this is not supported."
        )


def _single_frame_slice(ds: Any, label: str) -> _Slice:
    return _Slice(
        label=label,
        rows=dicom_int(ds, "Rows", label),
        cols=dicom_int(ds, "Columns", label),
        iop=_floats(ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", label),
        ipp=_floats(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient", label),
        pixel_spacing=_floats(ds.get("PixelSpacing"), 2, "PixelSpacing", label),
        slope=_float_or_none(ds.get("RescaleSlope"), "RescaleSlope", label),
        intercept=_float_or_none(ds.get("RescaleIntercept"), "RescaleIntercept", label),
        thickness=_float_or_none(ds.get("SpacingBetweenSlices"), "SpacingBetweenSlices", label)
        or _float_or_none(ds.get("SliceThickness"), "SliceThickness", label),
    )


def _to_hu(stored: np.ndarray, s: _Slice) -> np.ndarray:
    """(rows, cols) stored values -> (cols, rows) = (X, Y) float32 HU."""
    # float64 for the arithmetic: slope * stored must not lose the integer precision of 16-bit data.
    with np.errstate(over="ignore", invalid="ignore"):
        hu = stored.astype(np.float64) * s.slope + s.intercept  # type: ignore[operator]
        big = np.abs(hu).max(initial=0.0)
    if not np.isfinite(big) or big > _HU_LIMIT:
        raise InputError(
            f"{s.label}: RescaleSlope {s.slope:g} and RescaleIntercept {s.intercept:g} give values up to {big:.3g}, "
            f"beyond any HU (|HU| <= {_HU_LIMIT:g}): the rescale tags are broken. Fix them in the header."
        )
    return hu.T.astype(np.float32)


def _read_dicom_series(case: Case, pixels: bool = True) -> CTVolume:
    """The series as a volume; with ``pixels=False`` only its headers are read (and ``hu`` is a zero placeholder
    that takes no memory), for writers that need the headers in the volume's slice order."""
    notes: list[str] = []
    datasets, slices, arrays = [], [], []
    for path in case.paths:
        ds = _dcmread(path, pixels)
        label = str(path)
        _check_ct(ds, label)
        _check_identity(ds, label)
        if "PerFrameFunctionalGroupsSequence" in ds or dicom_int(ds, "NumberOfFrames", label, default=1) > 1:
            if len(case.paths) == 1:
                return _read_multiframe(case, ds, pixels)
            raise InputError(
                f"{path}: multi-frame DICOM file inside a series of {len(case.paths)} files; read it as its own case."
            )
        for keyword in ("Rows", "Columns"):
            if keyword not in ds:
                raise InputError(f"{label}: no {keyword}; not a DICOM image.")
        slices.append(_single_frame_slice(ds, label))
        if pixels:
            arrays.append(_pixels(ds, label))
            del ds.PixelData  # headers stay for the writer; pixels now live in `arrays`
        datasets.append(ds)

    order, affine = _assemble_geometry(slices, notes)
    _rescale(slices, notes)
    first = slices[0]
    shape = (first.cols, first.rows, len(slices))
    hu = np.empty(shape, dtype=np.float32) if pixels else np.broadcast_to(np.float32(0), shape)
    for k, idx in enumerate(order if pixels else ()):
        if arrays[idx].shape != (first.rows, first.cols):
            raise InputError(f"{slices[idx].label}: pixel data shape {arrays[idx].shape} does not match Rows/Columns.")
        hu[:, :, k] = _to_hu(arrays[idx], slices[idx])
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


def _group_item(ds: Any, per_frame: Any, keyword: str) -> Any:
    """First item of functional group ``keyword`` for a frame: per-frame first, then shared (PS3.3 C.7.6.16)."""
    if per_frame is not None and keyword in per_frame and len(per_frame[keyword].value):
        return per_frame[keyword].value[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and keyword in shared[0] and len(shared[0][keyword].value):
        return shared[0][keyword].value[0]
    return None


def _read_multiframe(case: Case, ds: Any, pixels: bool = True) -> CTVolume:
    """An enhanced (functional-group) multi-frame CT file: one frame per slice."""
    from pydicom.sequence import Sequence

    notes: list[str] = []
    path = case.paths[0]
    if "PerFrameFunctionalGroupsSequence" not in ds and "SharedFunctionalGroupsSequence" not in ds:
        raise InputError(
            f"{path}: multi-frame file without functional groups (not an enhanced CT object); its frames have no "
            "geometry. Convert it to a single-frame series or NIfTI."
        )
    n_frames = dicom_int(ds, "NumberOfFrames", str(path), default=1)
    rows, cols = dicom_int(ds, "Rows", str(path)), dicom_int(ds, "Columns", str(path))
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence", []))
    if per_frame and len(per_frame) != n_frames:
        raise InputError(
            f"{path}: NumberOfFrames is {n_frames} but PerFrameFunctionalGroupsSequence has {len(per_frame)} items; the file is broken."
        )

    slices = []
    for f in range(n_frames):
        item = per_frame[f] if per_frame else None
        label = f"frame {f + 1} of {path}"
        orient = _group_item(ds, item, "PlaneOrientationSequence")
        pos = _group_item(ds, item, "PlanePositionSequence")
        measures = _group_item(ds, item, "PixelMeasuresSequence")
        transform = _group_item(ds, item, "PixelValueTransformationSequence")
        # Legacy-converted objects sometimes keep rescale at the top level instead of a functional group.
        rescale_src = transform if transform is not None else ds
        thickness = None
        if measures is not None:
            thickness = _float_or_none(
                measures.get("SpacingBetweenSlices"), "SpacingBetweenSlices", label
            ) or _float_or_none(measures.get("SliceThickness"), "SliceThickness", label)
        slices.append(
            _Slice(
                label=label,
                rows=rows,
                cols=cols,
                iop=None
                if orient is None
                else _floats(orient.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", label),
                ipp=None if pos is None else _floats(pos.get("ImagePositionPatient"), 3, "ImagePositionPatient", label),
                pixel_spacing=None
                if measures is None
                else _floats(measures.get("PixelSpacing"), 2, "PixelSpacing", label),
                slope=_float_or_none(rescale_src.get("RescaleSlope"), "RescaleSlope", label),
                intercept=_float_or_none(rescale_src.get("RescaleIntercept"), "RescaleIntercept", label),
                thickness=thickness,
            )
        )

    order, affine = _assemble_geometry(slices, notes)
    _rescale(slices, notes)
    if pixels:
        stored = _pixels(ds, str(path))
        if n_frames == 1:
            stored = stored[None]
        if stored.shape != (n_frames, rows, cols):
            raise InputError(f"{path}: pixel data shape {stored.shape} does not match NumberOfFrames/Rows/Columns.")
        hu = np.empty((cols, rows, n_frames), dtype=np.float32)
        for k, f in enumerate(order):
            hu[:, :, k] = _to_hu(stored[f], slices[f])
        del ds.PixelData
    else:
        hu = np.broadcast_to(np.float32(0), (cols, rows, n_frames))
    if per_frame:
        # Reorder the per-frame groups so that item k describes hu[:, :, k]; the writer relies on it.
        ds.PerFrameFunctionalGroupsSequence = Sequence([per_frame[f] for f in order])
    return CTVolume(
        hu=hu, affine=affine, name=case.name, source=path, kind="dicom", dicom_headers=[ds] * n_frames, warnings=notes
    )


# ------------------------------------------------------------------------------------ NIfTI / MHA / NRRD


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
    if big > _HU_LIMIT:
        raise InputError(
            f"{path}: values up to {big:.3g}, beyond any HU (|HU| <= {_HU_LIMIT:g})"
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


def _read_nifti(case: Case) -> CTVolume:
    import nibabel as nib

    path = case.paths[0]
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)  # applies scl_slope/scl_inter, keeps the native axis order
    except Exception as exc:  # nibabel raises many types for broken headers or short files
        raise InputError(
            f"{path}: cannot read NIfTI file ({type(exc).__name__}: {exc}). It is corrupt or truncated."
        ) from exc
    with np.errstate(over="ignore", invalid="ignore"):
        data = _finish_array(np.asarray(data), path, "NIfTI image", "scl_slope/scl_inter")
    affine = np.asarray(img.affine, dtype=np.float64)
    notes: list[str] = []
    if data.shape[2] == 1 and np.allclose(affine[:3, 2], 0):
        affine[2, 2] = 1.0  # a 2D image's affine may have a zero third column; keep it invertible
    header = img.header
    sform, qform = int(header["sform_code"]), int(header["qform_code"])
    source = "sform" if sform > 0 else "qform" if qform > 0 else "pixdim (no sform or qform)"
    _check_affine(affine, path, f"NIfTI header's {source} (sform_code {sform}, qform_code {qform})")
    return CTVolume(hu=data, affine=affine, name=case.name, source=path, kind="nifti", warnings=notes)


def _read_itk(case: Case) -> CTVolume:
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
    return CTVolume(hu=data, affine=LPS_TO_RAS @ lps, name=case.name, source=path, kind="image")


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


# ------------------------------------------------------------------------------------------------ public


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
        return _read_dicom_series(case)
    if case.kind == "nifti":
        return _read_nifti(case)
    if case.kind == "image":
        return _read_itk(case)
    raise InputError(f"Case {case.name!r} has unknown kind {case.kind!r}.")


def read_dicom_headers(case: Case) -> list[Any]:
    """The headers :func:`read_case` gives a DICOM case (``CTVolume.dicom_headers``: one per slice in the volume's
    Z order, without PixelData), read again without decoding any pixels; for writing a derived series after the
    volume itself has gone through a pipeline that carries arrays only.

    Raises:
        InputError: as :func:`read_case` (the files changed since), or ``case`` is not DICOM.
    """
    if case.kind != "dicom":
        raise InputError(f"case {case.name!r} is {case.kind}, not DICOM: it has no headers to derive a series from.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notes about this input were given when it was read
        return _read_dicom_series(case, pixels=False).dicom_headers or []


def read_path(path: Path | str) -> CTVolume:
    """Read the single case under ``path`` (a file, or a folder holding exactly one series/image).

    Raises:
        InputError: when ``path`` holds no case or several (then use :func:`find_cases` and :func:`read_case`).
    """
    cases = find_cases(Path(path))
    if len(cases) != 1:
        names = ", ".join(c.name for c in cases[:10]) + (" ..." if len(cases) > 10 else "")
        raise InputError(f"{path} holds {len(cases)} cases ({names}); give the folder or file of one of them.")
    return read_case(cases[0])
