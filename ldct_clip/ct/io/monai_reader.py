"""A MONAI ``ImageReader`` for CT cases: DICOM series (single-frame or enhanced multi-frame), NIfTI, MHA/NRRD.

It is :func:`~ldct_clip.ct.io.read.read_case` behind MONAI's reader interface, so ``LoadImage`` gets HU with
every check the project makes (slope/intercept per slice, enhanced CT, sorting along the slice normal,
spacing and orientation consistency, modality, NaN/inf, codecs) and the geometry as a RAS+ affine.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import ImageReader
from monai.utils import ensure_tuple

from ldct_clip.ct.io.cases import Case, find_one_case, sanitize_name
from ldct_clip.ct.io.read import read_case
from ldct_clip.ct.io.volume import CTVolume
from ldct_clip.reporting.warnings_log import warnings_logged_once

__all__ = ["CTSeriesReader", "affine_from_meta", "case_from_meta", "case_of", "volume_array"]

#: Meta keys this reader adds (array-safe: strings, so that MONAI's collate and decollate carry them).
CASE_KIND, CASE_FILES, CASE_NAME = "case_kind", "case_files", "case_name"


def case_of(paths: str | os.PathLike | Sequence[str | os.PathLike], name: str | None = None) -> Case:
    """The one case that ``paths`` name: the files of one DICOM series, or one file or folder holding one case.

    Raises:
        InputError: the path holds no case or several.
    """
    files = [Path(p) for p in ensure_tuple(paths)]
    if len(files) > 1:
        return Case(name or sanitize_name(files[0].parent.name), "dicom", files)
    case = find_one_case(files[0])
    if name:
        case.name = name
    return case


def case_from_meta(meta: dict[str, Any]) -> Case:
    """The :class:`~ldct_clip.ct.io.cases.Case` a volume loaded by :class:`CTSeriesReader` came from."""
    return Case(str(meta[CASE_NAME]), str(meta[CASE_KIND]), [Path(p) for p in meta[CASE_FILES]])


def affine_from_meta(meta: dict[str, Any]) -> np.ndarray:
    """The 4x4 voxel -> RAS+ mm affine of a loaded volume's meta (a tensor after MONAI's collation), float64."""
    affine = meta["affine"]
    return np.asarray(affine.cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)


def volume_array(value: Any) -> np.ndarray:
    """A one-channel ``(1, X, Y, Z)`` tensor or array (a loaded or denoised volume) as a float32 ``(X, Y, Z)``
    numpy array on the CPU."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim != 4 or array.shape[0] != 1:
        raise ValueError(f"expected one channel (1, X, Y, Z), got shape {array.shape}")
    return array[0].astype(np.float32, copy=False)


class CTSeriesReader(ImageReader):
    """Read a CT case as HU.

    ``read`` takes what a MONAI data dictionary holds for a case: the list of files of one DICOM series, or one
    path (a DICOM file, a folder holding one series, a NIfTI/MHA/NRRD file). ``get_data`` returns the float32
    HU array shaped (X, Y, Z) (columns, rows, slices; MONAI's axes) and a meta dict with ``affine`` (RAS+ mm),
    ``original_affine``, ``spatial_shape``, ``space`` and the case's ``case_name``, ``case_kind`` and
    ``case_files`` (from which writers read the DICOM headers back, see :func:`case_from_meta`).

    Notes about the input that did not stop reading (missing slices, gantry tilt, default rescale) are logged,
    each once. Unreadable input raises :class:`~ldct_clip.errors.InputError` with a message for the user.
    """

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        # a case may be a folder or a suffix-less DICOM file: anything find_cases accepts
        return True

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> tuple[Case, CTVolume]:
        with warnings.catch_warnings(record=True) as early:  # pydicom's, while the case's files are found
            warnings.simplefilter("always")
            case = case_of(data)
        with warnings_logged_once(case.name) as notes:
            notes.extend(str(w.message) for w in early)
            volume = read_case(case)
            notes.extend(volume.warnings)
        return case, volume

    def get_data(self, img: tuple[Case, CTVolume]) -> tuple[np.ndarray, dict[str, Any]]:
        case, volume = img
        return volume.hu, {
            "affine": volume.affine.copy(),
            "original_affine": volume.affine.copy(),
            "spatial_shape": np.asarray(volume.shape),
            "original_channel_dim": "no_channel",
            "space": "RAS",
            CASE_NAME: case.name,
            CASE_KIND: case.kind,
            CASE_FILES: [str(p) for p in case.paths],
        }
