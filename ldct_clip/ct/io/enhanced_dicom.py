"""Reading an enhanced multi-frame DICOM CT file (one frame per slice, geometry and rescale in functional groups,
PS3.3 C.7.6.16) into a :class:`~ldct_clip.ct.io.volume.CTVolume`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.ct.io.cases import Case, dicom_int
from ldct_clip.ct.io.dicom_file import decode_pixels
from ldct_clip.ct.io.dicom_geometry import Slice, assemble_geometry, float_or_none, floats, rescale, to_hu
from ldct_clip.ct.io.volume import CTVolume

__all__ = ["read_enhanced_dicom"]


def _group_item(ds: Any, per_frame: Any, keyword: str) -> Any:
    """First item of functional group ``keyword`` for a frame: per-frame first, then shared (PS3.3 C.7.6.16)."""
    if per_frame is not None and keyword in per_frame and len(per_frame[keyword].value):
        return per_frame[keyword].value[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and keyword in shared[0] and len(shared[0][keyword].value):
        return shared[0][keyword].value[0]
    return None


def read_enhanced_dicom(case: Case, ds: Any, pixels: bool = True) -> CTVolume:
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
            thickness = float_or_none(
                measures.get("SpacingBetweenSlices"), "SpacingBetweenSlices", label
            ) or float_or_none(measures.get("SliceThickness"), "SliceThickness", label)
        slices.append(
            Slice(
                label=label,
                rows=rows,
                cols=cols,
                iop=None
                if orient is None
                else floats(orient.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", label),
                ipp=None if pos is None else floats(pos.get("ImagePositionPatient"), 3, "ImagePositionPatient", label),
                pixel_spacing=None
                if measures is None
                else floats(measures.get("PixelSpacing"), 2, "PixelSpacing", label),
                slope=float_or_none(rescale_src.get("RescaleSlope"), "RescaleSlope", label),
                intercept=float_or_none(rescale_src.get("RescaleIntercept"), "RescaleIntercept", label),
                thickness=thickness,
            )
        )

    order, affine = assemble_geometry(slices, notes)
    rescale(slices, notes)
    if pixels:
        stored = decode_pixels(ds, str(path))
        if n_frames == 1:
            stored = stored[None]
        if stored.shape != (n_frames, rows, cols):
            raise InputError(f"{path}: pixel data shape {stored.shape} does not match NumberOfFrames/Rows/Columns.")
        hu = np.empty((cols, rows, n_frames), dtype=np.float32)
        for k, f in enumerate(order):
            hu[:, :, k] = to_hu(stored[f], slices[f])
        del ds.PixelData
    else:
        hu = np.broadcast_to(np.float32(0), (cols, rows, n_frames))
    if per_frame:
        # Reorder the per-frame groups so that item k describes hu[:, :, k]; the writer relies on it.
        ds.PerFrameFunctionalGroupsSequence = Sequence([per_frame[f] for f in order])
    return CTVolume(
        hu=hu, affine=affine, name=case.name, source=path, kind="dicom", dicom_headers=[ds] * n_frames, warnings=notes
    )
