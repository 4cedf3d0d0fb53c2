"""From the 2D images of a DICOM volume to its geometry and HU: sort along the slice normal, build the affine,
check consistency, rescale stored values.

Shared by the single-frame series reader (:mod:`ldct_clip.ct.io.dicom`) and the enhanced multi-frame reader
(:mod:`ldct_clip.ct.io.enhanced_dicom`): both describe each 2D image as a :class:`Slice`.

DICOM geometry (PS3.3 C.7.6.2): a slice's voxel (column i, row j) lies at
``IPP + i * PixelSpacing[1] * row_dir + j * PixelSpacing[0] * col_dir`` in LPS+ mm, where
``IOP = row_dir (3) + col_dir (3)``.  Slices are sorted along ``normal = row_dir x col_dir``; the affine's
third column is the median step between consecutive slice origins (along the first-to-last direction).  The
LPS+ matrix becomes the RAS+ matrix MONAI and nibabel expect with MONAI's ``orientation_ras_lps`` (negating its
first two rows).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from typing import Any

import numpy as np
from monai.data.utils import orientation_ras_lps

from ldct_clip.errors import InputError
from ldct_clip.ct.io.volume import HU_LIMIT

__all__ = ["Slice", "assemble_geometry", "float_or_none", "floats", "rescale", "to_hu"]

_ORIENTATION_TOL = 1e-4  # direction cosines are stored with ~6 decimals
_SPACING_TOL = 1e-3  # mm
_DUPLICATE_TOL = 1e-3  # mm: two slices closer than this along the normal are the same position
_TILT_WARN_DEG = 0.1


def _warn(notes: list[str], message: str) -> None:
    notes.append(message)
    warnings.warn(message, UserWarning, stacklevel=3)


@dataclass
class Slice:
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


def floats(value: Any, n: int, what: str, label: str) -> np.ndarray | None:
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


def float_or_none(value: Any, what: str, label: str) -> float | None:
    if value is None or value == "":
        return None
    arr = floats(value, 1, what, label)
    return None if arr is None else float(arr[0])


# --------------------------------------------------------------------------------------------- geometry


def _check_same(
    slices: list[Slice], get: Callable[[Slice], Any], what: str, what_to_do: str, tol: float | None = None
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


def assemble_geometry(slices: list[Slice], notes: list[str]) -> tuple[list[int], np.ndarray]:
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
    return order, orientation_ras_lps(lps)


def rescale(slices: list[Slice], notes: list[str]) -> None:
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


def to_hu(stored: np.ndarray, s: Slice) -> np.ndarray:
    """(rows, cols) stored values -> (cols, rows) = (X, Y) float32 HU."""
    # float64 for the arithmetic: slope * stored must not lose the integer precision of 16-bit data.
    with np.errstate(over="ignore", invalid="ignore"):
        hu = stored.astype(np.float64) * s.slope + s.intercept  # type: ignore[operator]
        big = np.abs(hu).max(initial=0.0)
    if not np.isfinite(big) or big > HU_LIMIT:
        raise InputError(
            f"{s.label}: RescaleSlope {s.slope:g} and RescaleIntercept {s.intercept:g} give values up to {big:.3g}, "
            f"beyond any HU (|HU| <= {HU_LIMIT:g}): the rescale tags are broken. Fix them in the header."
        )
    return hu.T.astype(np.float32)

