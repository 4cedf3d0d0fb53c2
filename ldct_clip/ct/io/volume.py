"""The in-memory CT volume every reader returns and every writer consumes.

Axes follow MONAI's ``LoadImage`` convention so that arrays can go straight into MONAI transforms:
``hu`` is shaped (X, Y, Z) = (columns, rows, slices), an axial slice is ``hu[:, :, k]`` and
``hu[:, :, k].T`` is the slice as a DICOM viewer shows it (rows, columns).  ``affine`` maps voxel
indices (i, j, k) to RAS+ millimetres, the convention nibabel writes into NIfTI files (DICOM and ITK
use LPS+, so readers flip the signs of the first two rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pydicom is only needed for the annotation
    from pydicom.dataset import Dataset

__all__ = ["CTVolume", "HU_LIMIT", "VOLUME_KINDS", "is_multiframe_headers"]

#: What a :class:`CTVolume` was read from.
VOLUME_KINDS = ("dicom", "nifti", "image")
#: No CT value comes near this: values beyond it mean a broken rescale or scaling header (and would overflow
#: float32), so readers refuse them.
HU_LIMIT = 1e6


def is_multiframe_headers(headers: list[Dataset] | None) -> bool:
    """Whether ``headers`` describe one enhanced multi-frame file rather than a single-frame series.

    Readers represent a multi-frame source as the same :class:`~pydicom.dataset.Dataset` object repeated
    once per slice (see :class:`CTVolume`), so the test is on the header, not on the list length.
    """
    if not headers:
        return False
    first = headers[0]
    return "PerFrameFunctionalGroupsSequence" in first or int(first.get("NumberOfFrames", 1) or 1) > 1


@dataclass
class CTVolume:
    """A CT volume in Hounsfield units with its geometry and, for DICOM input, its source headers.

    Attributes:
        hu: float32 array shaped (X, Y, Z) = (columns, rows, slices), values in HU.  Slices are sorted
            by increasing position along the slice normal (row direction x column direction), the
            order ITK/SimpleITK use.
        affine: 4x4 float64 matrix mapping voxel index (i, j, k, 1) to RAS+ millimetres (nibabel's
            convention).  Column 0 is the step along X (one column), column 1 along Y (one row),
            column 2 along Z (one slice; it carries gantry-tilt shear when there is any), column 3 is
            the centre of voxel (0, 0, 0).
        name: case name, safe to use as a file or folder name.
        source: the file or folder the volume was read from.  Writers refuse to write into it.
        kind: ``"dicom"``, ``"nifti"`` or ``"image"`` (anything SimpleITK reads: MHA, NRRD, ...).
        dicom_headers: for DICOM input, one header per slice along Z (``dicom_headers[k]`` describes
            ``hu[:, :, k]``) with PixelData removed; ``None`` otherwise.  Single-frame series hold one
            dataset per source file.  An enhanced multi-frame source holds the *same* Dataset object Z
            times: the whole file header whose PerFrameFunctionalGroupsSequence has been reordered so
            that item k describes ``hu[:, :, k]`` (use :func:`is_multiframe_headers` to tell them apart).
        warnings: human-readable notes about the input that did not stop reading (missing slices,
            default rescale, gantry tilt, ...).
    """

    hu: np.ndarray
    affine: np.ndarray
    name: str
    source: Path
    kind: str
    dicom_headers: list[Dataset] | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Catch programming mistakes at construction, where the stack trace still points at the cause.
        self.hu = np.asarray(self.hu)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        self.source = Path(self.source)
        if self.hu.ndim != 3:
            raise ValueError(f"CTVolume.hu must be 3D (X, Y, Z), got shape {self.hu.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"CTVolume.affine must be 4x4, got shape {self.affine.shape}")
        if self.kind not in VOLUME_KINDS:
            raise ValueError(f"CTVolume.kind must be one of {VOLUME_KINDS}, got {self.kind!r}")
        if self.dicom_headers is not None and len(self.dicom_headers) != self.hu.shape[2]:
            raise ValueError(
                f"CTVolume.dicom_headers has {len(self.dicom_headers)} entries for {self.hu.shape[2]} slices"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """(X, Y, Z) in voxels."""
        return tuple(int(s) for s in self.hu.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (X, Y, Z) in mm: the lengths of the affine's first three columns."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def is_multiframe(self) -> bool:
        """True when the volume came from one enhanced multi-frame DICOM file."""
        return is_multiframe_headers(self.dicom_headers)
