"""Training and validation data for CLIPDenoiser on CT: axial slices in HU (the online training noise is
:class:`~ldct_clip.transforms.ct_noise.RandCTNoised`).

Two on-disk layouts are read (:mod:`ldct_clip.ct.training_layouts` finds and reads them):

``"volumes"``
    a folder of CT volumes (DICOM series, NIfTI, MHA/NRRD), found with :func:`~ldct_clip.ct.io.find_cases` and
    read with :func:`~ldct_clip.ct.io.read_case`.  Each volume is read once, when the dataset is built, and kept
    in memory (as int16 when its HU values are whole numbers, which DICOM and most NIfTI data are: a 512 x 512
    x 500 volume is 250 MB).  Reading happens in the main process, so DataLoader workers share the arrays
    (copy-on-write) instead of reading them again.
``"npy"``
    the RED-CNN preparation of the Mayo-2016 challenge data: one ``.npy`` file per slice,
    ``<patient>_<slice>_input.npy`` (low dose) beside ``<patient>_<slice>_target.npy`` (normal dose), e.g.
    ``L067_12_target.npy``.  RED-CNN's script stores ``(HU + 1024) / 4096``; plain HU files are read as well
    (``npy_units``).  Files are loaded lazily, one slice per item.

The patient id of a slice or volume is the first match of ``patient_regex`` in its path relative to the data
folder (group ``patient`` if the pattern names one, else group 1, else the whole match); the default takes the
leading run of letters, digits and dashes: ``L067`` for ``L067_12_target.npy`` and ``L067/full_1mm/IM1.dcm``.
Patients listed in ``held_out`` (the paper holds out ``L506``) never reach training and are what validation
uses in the npy layout.

Items are dictionaries of channel-first 2D arrays ``(1, X, Y)`` float32 in HU (X = columns, Y = rows, as
:class:`~ldct_clip.ct.io.CTVolume` slices), ready for MONAI dictionary transforms:

* :class:`TrainingSlices`: ``{"label": normal-dose slice, "name": str, "slice": int}``; the training noise is
  added online by :class:`~ldct_clip.transforms.ct_noise.RandCTNoised` (the paper trains on normal-dose images only).
* :class:`DosePairSlices`: ``{"image": low-dose slice, "label": normal-dose slice, "name", "slice"}``.

Both are plain sequences, so they go into ``monai.data.Dataset(data=..., transform=...)`` as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ldct_clip.ct.hu import DEFAULT_HU_WINDOW, window_from
from ldct_clip.ct.training_layouts import (
    DEFAULT_HELD_OUT,
    DEFAULT_PATIENT_REGEX,
    INPUT_SUFFIX,
    TARGET_SUFFIX,
    Layout,
    NpyUnits,
    PatientMatcher,
    Volume,
    check_root,
    check_size,
    detect_layout,
    held_out_set,
    load_npy_slice,
    pair_volumes,
    read_volumes,
    resolve_units,
    scan_npy,
)
from ldct_clip.errors import InputError
from ldct_clip.simulation.gaussian import add_gaussian_noise

__all__ = ["DosePairSlices", "TrainingSlices"]

log = logging.getLogger("ldct_clip")

#: Patients the paper keeps out of training (Mayo-2016 L506 is its test patient).
# ----------------------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------------------


class TrainingSlices(Sequence):
    """Normal-dose axial slices for training, lazily as ``{"label": (1, X, Y) float32 HU, "name", "slice"}``.

    Args:
        root: folder of normal-dose CT volumes, or of RED-CNN ``*_target.npy`` slices (``*_input.npy`` files are
            checked to pair up but never used: the paper trains on normal-dose images plus synthetic noise).
        layout: ``"auto"`` (npy if such files are found), ``"volumes"`` or ``"npy"``.
        held_out: patient ids kept out of training (default ``["L506"]``).
        patient_regex: how the patient id is read from the path relative to ``root``.
        npy_units: ``"unit"`` (``(HU + 1024) / 4096``, RED-CNN's files), ``"hu"``, or ``"auto"`` (guessed from the
            value range of a few files).
        hu_window: the window that ``"unit"`` npy files were normalised with.
        select_regex: volumes only: keep cases whose relative path matches (e.g. ``"full_1mm"`` when the folder
            also holds the low-dose series).
        slice_stride: keep every n-th slice (1 mm data have strongly correlated neighbours).
        min_size: smallest in-plane size accepted (the training crop); smaller slices raise :class:`InputError`.

    Raises:
        InputError: missing or empty folder, unpaired npy files, no slice left after ``held_out``, slices
            smaller than ``min_size``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        layout: Layout = "auto",
        held_out: Sequence[str] | str | None = DEFAULT_HELD_OUT,
        patient_regex: str = DEFAULT_PATIENT_REGEX,
        npy_units: NpyUnits = "auto",
        hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
        select_regex: str | None = None,
        slice_stride: int = 1,
        min_size: int = 0,
    ) -> None:
        self.root = check_root(root, "training data folder")
        self.layout = detect_layout(self.root, layout)
        self.hu_window = window_from(hu_window)
        if int(slice_stride) < 1:
            raise InputError(f"slice_stride must be >= 1, got {slice_stride}.")
        stride = int(slice_stride)
        matcher = PatientMatcher(patient_regex)
        held = held_out_set(held_out)
        self._npy: list[NpySlice] = []
        self._volumes: list[Volume] = []
        self._index: list[tuple[int, int]] = []  # (volume, z) for volumes
        if self.layout == "npy":
            slices = [s for s in scan_npy(self.root, matcher) if s.target is not None]
            if not slices:
                raise InputError(
                    f"{self.root} has *{INPUT_SUFFIX} files but no *{TARGET_SUFFIX} (normal-dose) files; "
                    "training needs the normal-dose slices."
                )
            kept = [s for s in slices if s.patient not in held]
            self.patients = sorted({s.patient for s in kept})
            self._npy = kept[::stride]
            if self._npy:
                self._is_unit = resolve_units(npy_units, [s.target for s in self._npy])  # type: ignore[misc]
                check_size(np.load(self._npy[0].target, mmap_mode="r").shape, min_size, str(self._npy[0].target))
        else:
            self._volumes = read_volumes(self.root, matcher, held_out=held, keep_held_out=False,
                                          select_regex=select_regex)
            self.patients = sorted({v.patient for v in self._volumes})
            for i, v in enumerate(self._volumes):
                check_size(v.hu.shape[:2], min_size, v.relative)
                self._index.extend((i, z) for z in range(0, v.hu.shape[2], stride))
        if len(self) == 0:
            raise InputError(
                f"no training slices left in {self.root} after holding out patients {sorted(held)} "
                f"(patients seen: {self.patients or 'none'}). Check held_out, patient_regex and select_regex."
            )
        log.info("training data: %d slices of %d patient(s) from %s (%s layout)", len(self), len(self.patients),
                 self.root, self.layout)

    def __len__(self) -> int:
        return len(self._npy) if self.layout == "npy" else len(self._index)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if self.layout == "npy":
            s = self._npy[index]
            label = load_npy_slice(s.target, self._is_unit, self.hu_window)  # type: ignore[arg-type]
            return {"label": label, "name": s.name, "slice": index}
        v, z = self._index[index]
        vol = self._volumes[v]
        return {"label": vol.hu[None, :, :, z].astype(np.float32), "name": vol.name, "slice": z}


class DosePairSlices(Sequence):
    """Low-dose / normal-dose slice pairs for validation and testing.

    Items: ``{"image": low-dose (1, X, Y), "label": normal-dose (1, X, Y), "name": str, "slice": int}``, float32 HU.

    Args:
        low_dose: npy layout: the folder of ``*_input.npy`` / ``*_target.npy`` pairs (``normal_dose`` is then
            ignored). Volumes: a folder of low-dose volumes.
        normal_dose: volumes: the folder of the matching normal-dose volumes. Volumes pair by case name, or
            one with one when each folder holds a single case (``L506/quarter_1mm`` with ``L506/full_1mm``).
            ``None`` or the ``low_dose`` folder itself (``train.json``'s default: the training folder) with
            ``simulated_sigma`` given: the held-out ``patients``' volumes of that folder are the normal-dose
            images, and the low-dose input is made from them with the training noise (see ``simulated_sigma``).
        layout, patient_regex, npy_units, hu_window: as :class:`TrainingSlices`.
        patients: npy layout only (where training and validation share one folder): keep only these patient
            ids, i.e. the held-out ones; ``None`` keeps all. Volume folders are validation-only and used whole.
        slice_stride: keep every n-th slice (validation of every slice of a 1 mm patient takes long).
        max_slices: keep at most this many slices, evenly spread (after ``slice_stride``); ``None``: all.
        simulated_sigma: volumes with one folder only: the paper's Gaussian training noise, in 1/255 of
            ``hu_window``, added with a fixed seed per slice (the same validation input at every validation).

    Raises:
        InputError: missing folders, no pairs, unmatched volumes or volumes of different shapes.
    """

    def __init__(
        self,
        low_dose: str | Path,
        normal_dose: str | Path | None = None,
        *,
        layout: Layout = "auto",
        patients: Sequence[str] | str | None = None,
        patient_regex: str = DEFAULT_PATIENT_REGEX,
        npy_units: NpyUnits = "auto",
        hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
        slice_stride: int = 1,
        max_slices: int | None = None,
        simulated_sigma: float | None = None,
    ) -> None:
        self.low_root = check_root(low_dose, "low-dose validation folder")
        self.simulated_sigma = None
        self.layout = detect_layout(self.low_root, layout)
        self.hu_window = window_from(hu_window)
        if int(slice_stride) < 1:
            raise InputError(f"slice_stride must be >= 1, got {slice_stride}.")
        matcher = PatientMatcher(patient_regex)
        wanted = held_out_set(patients)
        self._npy: list[NpySlice] = []
        self._pairs: list[tuple[Volume, Volume]] = []
        self._index: list[tuple[int, int]] = []
        if self.layout == "npy":
            slices = [s for s in scan_npy(self.low_root, matcher) if not wanted or s.patient in wanted]
            slices = [s for s in slices if s.input is not None and s.target is not None]
            if not slices:
                raise InputError(
                    f"no *{INPUT_SUFFIX} / *{TARGET_SUFFIX} pairs under {self.low_root}"
                    + (f" for patients {sorted(wanted)}" if wanted else "")
                    + ". Validation needs low-dose/normal-dose pairs: check the folder, held_out and patient_regex."
                )
            self._npy = slices
            self._is_unit = resolve_units(npy_units, [s.target for s in slices])  # type: ignore[misc]
            keys = list(range(len(slices)))
        else:
            one_folder = normal_dose is None or check_root(normal_dose, "normal-dose validation folder").resolve() \
                == self.low_root.resolve()
            if one_folder and simulated_sigma is None:
                raise InputError(
                    ("paired validation volumes need two folders: " if normal_dose is None else
                     f"the low-dose and normal-dose validation folders are the same ({self.low_root}). For volume "
                     "data give two folders: ") + "low_dose (e.g. quarter-dose series) and normal_dose (the matching "
                    "full-dose series), or simulated_sigma to validate on held-out patients with the training noise."
                )
            if one_folder:
                # normal-dose data only (the training folder): validate on its held-out patients with the
                # training noise, each volume paired with itself and the noise added per slice in __getitem__
                self.simulated_sigma = float(simulated_sigma)  # type: ignore[arg-type]
                normal = read_volumes(self.low_root, matcher, held_out=wanted, keep_held_out=True, select_regex=None)
                if not normal:
                    raise InputError(
                        f"no held-out volumes of patients {sorted(wanted)} in {self.low_root} to validate on. Name "
                        "patients that are there in held_out, or give val_low_dose_dir and val_normal_dose_dir."
                    )
                self._pairs = [(v, v) for v in normal]
            else:
                normal_root = Path(normal_dose)  # type: ignore[arg-type]
                low = read_volumes(self.low_root, matcher, held_out=set(), keep_held_out=False, select_regex=None)
                normal = read_volumes(normal_root, matcher, held_out=set(), keep_held_out=False, select_regex=None)
                self._pairs = pair_volumes(low, normal, self.low_root, normal_root)
            keys = []
            for i, (lo, _) in enumerate(self._pairs):
                keys.extend(range(len(self._index), len(self._index) + lo.hu.shape[2]))
                self._index.extend((i, z) for z in range(lo.hu.shape[2]))
        keys = keys[:: int(slice_stride)]
        if max_slices is not None and len(keys) > int(max_slices):
            pick = np.linspace(0, len(keys) - 1, int(max_slices)).round().astype(int)
            keys = [keys[i] for i in pick]
        self._keys = keys
        log.info("validation data: %d slice pairs from %s (%s layout)", len(self), self.low_root, self.layout)

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        key = self._keys[index]
        if self.layout == "npy":
            s = self._npy[key]
            image = load_npy_slice(s.input, self._is_unit, self.hu_window)  # type: ignore[arg-type]
            label = load_npy_slice(s.target, self._is_unit, self.hu_window)  # type: ignore[arg-type]
            if image.shape != label.shape:
                raise InputError(f"{s.input} and {s.target} differ in shape: {image.shape[1:]} vs {label.shape[1:]}.")
            return {"image": image, "label": label, "name": s.name, "slice": key}
        p, z = self._index[key]
        lo, nd = self._pairs[p]
        image = lo.hu[None, :, :, z].astype(np.float32)
        if self.simulated_sigma is not None:
            image = add_gaussian_noise(image, self.simulated_sigma, hu_window=self.hu_window, seed=key)
        return {
            "image": image,
            "label": nd.hu[None, :, :, z].astype(np.float32),
            "name": lo.name,
            "slice": z,
        }
