"""Training and validation data for CLIPDenoiser on CT: axial slices in HU (the online training noise is
:class:`~ldct_clip.transforms.ct_noise.RandCTNoised`).

Two on-disk layouts are read:

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
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ldct_clip.ct.hu import DEFAULT_HU_WINDOW, unit_to_hu, window_from
from ldct_clip.errors import InputError
from ldct_clip.simulation.gaussian import add_gaussian_noise

__all__ = [
    "DEFAULT_HELD_OUT",
    "DEFAULT_PATIENT_REGEX",
    "DosePairSlices",
    "TrainingSlices",
    "detect_layout",
]

log = logging.getLogger("ldct_clip")

#: Patients the paper keeps out of training (Mayo-2016 L506 is its test patient).
DEFAULT_HELD_OUT: tuple[str, ...] = ("L506",)
#: Leading letters, digits and dashes of the relative path: ``L067`` from ``L067_12_target.npy``.
DEFAULT_PATIENT_REGEX = r"^([A-Za-z0-9-]+)"

Layout = Literal["auto", "volumes", "npy"]
NpyUnits = Literal["auto", "hu", "unit"]

_INPUT_SUFFIX = "_input.npy"
_TARGET_SUFFIX = "_target.npy"


# ----------------------------------------------------------------------------------------------------------
# discovery helpers
# ----------------------------------------------------------------------------------------------------------


def _natural_key(text: str) -> list[Any]:
    """Sort ``L067_2`` before ``L067_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _check_root(root: str | Path, what: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise InputError(
            f"{what} {path} is not a folder. Point it to a folder of CT volumes (DICOM/NIfTI) or of "
            "RED-CNN style *_input.npy / *_target.npy slice files."
        )
    return path


def detect_layout(root: str | Path, layout: Layout = "auto") -> str:
    """``"npy"`` if ``root`` holds ``*_target.npy``/``*_input.npy`` files (searched recursively), else ``"volumes"``.

    An explicit ``layout`` (``"volumes"`` or ``"npy"``) is validated and returned.
    """
    if layout not in ("auto", "volumes", "npy"):
        raise InputError(f"layout must be 'auto', 'volumes' or 'npy', got {layout!r}.")
    if layout != "auto":
        return layout
    path = _check_root(root, "data folder")
    for pattern in ("*" + _TARGET_SUFFIX, "*" + _INPUT_SUFFIX):
        if next(path.rglob(pattern), None) is not None:
            return "npy"
    return "volumes"


class _PatientMatcher:
    """Patient id of a path (relative to the data folder) from a user regex."""

    def __init__(self, pattern: str) -> None:
        try:
            self.regex = re.compile(pattern)
        except re.error as exc:
            raise InputError(f"patient_regex {pattern!r} is not a valid regular expression ({exc}).") from exc
        self.pattern = pattern

    def __call__(self, relative: str) -> str:
        m = self.regex.search(relative)
        if m is None:
            raise InputError(
                f"cannot find a patient id in {relative!r} with patient_regex {self.pattern!r}. "
                "Give a pattern that matches every file or series path (group 1 or (?P<patient>...) is the id)."
            )
        if "patient" in self.regex.groupindex:
            return m.group("patient")
        return m.group(1) if self.regex.groups else m.group(0)


def _held_out_set(held_out: Iterable[str] | str | None) -> set[str]:
    if held_out is None:
        return set()
    if isinstance(held_out, str):
        return {held_out}
    return {str(p) for p in held_out}


@dataclass(frozen=True)
class _NpySlice:
    """One slice of the npy layout: files of its low-dose (``input``) and normal-dose (``target``) versions."""

    name: str  # relative path without the _input/_target suffix, e.g. "L067_12"
    patient: str
    input: Path | None
    target: Path | None


def _scan_npy(root: Path, matcher: _PatientMatcher) -> list[_NpySlice]:
    """All ``*_input.npy``/``*_target.npy`` slices under ``root``, naturally sorted; unpaired files are an error
    when both kinds are present (a folder of only ``*_target.npy`` files is a valid normal-dose-only set)."""
    found: dict[str, dict[str, Path]] = {}
    for kind, suffix in (("input", _INPUT_SUFFIX), ("target", _TARGET_SUFFIX)):
        for path in root.rglob("*" + suffix):
            rel = path.relative_to(root).as_posix()
            found.setdefault(rel[: -len(suffix)], {})[kind] = path
    if not found:
        raise InputError(
            f"no *{_INPUT_SUFFIX} / *{_TARGET_SUFFIX} slice files under {root}. Use the RED-CNN layout "
            "(<patient>_<slice>_input.npy beside <patient>_<slice>_target.npy) or a folder of CT volumes."
        )
    n_in = sum("input" in v for v in found.values())
    n_tg = sum("target" in v for v in found.values())
    if n_in and n_tg:
        lonely = sorted(k for k, v in found.items() if len(v) == 1)
        if lonely:
            examples = ", ".join(lonely[:5]) + (" ..." if len(lonely) > 5 else "")
            raise InputError(
                f"{len(lonely)} slice(s) under {root} have only one of {_INPUT_SUFFIX} / {_TARGET_SUFFIX} "
                f"({examples}). Every <name>{_INPUT_SUFFIX} needs a <name>{_TARGET_SUFFIX} beside it: "
                "re-run the data preparation or remove the stray files."
            )
    return [
        _NpySlice(name, matcher(name), v.get("input"), v.get("target"))
        for name, v in sorted(found.items(), key=lambda kv: _natural_key(kv[0]))
    ]


def _npy_is_unit(paths: Sequence[Path]) -> bool:
    """Guess the units of a set of npy slices from a few of them: all values in [-0.5, 1.5] means ``[0, 1]``."""
    picks = {paths[0], paths[len(paths) // 2], paths[-1]}
    for p in picks:
        a = np.load(p, mmap_mode="r")
        if float(np.min(a)) < -0.5 or float(np.max(a)) > 1.5:
            return False
    return True


def _load_npy_slice(path: Path, is_unit: bool, hu_window: tuple[float, float]) -> np.ndarray:
    """One npy slice as ``(1, X, Y)`` float32 HU (files hold (rows, columns), as a DICOM viewer shows them)."""
    try:
        a = np.load(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the npy file ({exc}). Re-create or remove it.") from exc
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
        raise InputError(f"{path}: expected one 2D numeric slice, got an array of shape {a.shape} ({a.dtype}).")
    a = a.astype(np.float32)
    if is_unit:
        a = unit_to_hu(a, *hu_window)
    return np.ascontiguousarray(a.T)[None]


@dataclass
class _Volume:
    name: str
    patient: str
    relative: str
    hu: np.ndarray  # (X, Y, Z), int16 or float32


def _compact(hu: np.ndarray) -> np.ndarray:
    """int16 when the HU values are whole numbers in range (halves the memory), else float32."""
    if hu.size and np.all(np.isfinite(hu)) and hu.min() >= -32768 and hu.max() <= 32767:
        rounded = np.rint(hu)
        if np.array_equal(rounded, hu):
            return rounded.astype(np.int16)
    return hu.astype(np.float32, copy=False)


def _read_volumes(
    root: Path,
    matcher: _PatientMatcher,
    *,
    held_out: set[str],
    keep_held_out: bool,
    select_regex: str | None,
) -> list[_Volume]:
    """Read the cases under ``root`` (training: all but ``held_out``; ``keep_held_out``: only those)."""
    from ldct_clip.ct.io import find_cases, read_case

    try:
        select = re.compile(select_regex) if select_regex else None
    except re.error as exc:
        raise InputError(f"select_regex {select_regex!r} is not a valid regular expression ({exc}).") from exc
    volumes: list[_Volume] = []
    for case in find_cases(root):
        source = case.source
        try:
            rel = source.relative_to(root).as_posix()
        except ValueError:
            rel = case.name
        if rel == ".":
            rel = case.name
        if select is not None and not select.search(rel):
            continue
        patient = matcher(rel)
        if (patient in held_out) != keep_held_out:
            continue
        vol = read_case(case)
        if vol.hu.ndim != 3:
            raise InputError(f"{source}: expected a 3D volume (X, Y, Z), got shape {vol.hu.shape}.")
        log.info("read %s: %s slices of %sx%s", rel, vol.hu.shape[2], vol.hu.shape[0], vol.hu.shape[1])
        volumes.append(_Volume(case.name, patient, rel, _compact(vol.hu)))
    return volumes


def _check_size(shape: Sequence[int], min_size: int, where: str) -> None:
    if min_size and min(shape) < min_size:
        raise InputError(
            f"{where}: slices of {shape[0]}x{shape[1]} px are smaller than the training crop of {min_size} px. "
            "Lower crop_size or leave these data out."
        )


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
        self.root = _check_root(root, "training data folder")
        self.layout = detect_layout(self.root, layout)
        self.hu_window = window_from(hu_window)
        if int(slice_stride) < 1:
            raise InputError(f"slice_stride must be >= 1, got {slice_stride}.")
        stride = int(slice_stride)
        matcher = _PatientMatcher(patient_regex)
        held = _held_out_set(held_out)
        self._npy: list[_NpySlice] = []
        self._volumes: list[_Volume] = []
        self._index: list[tuple[int, int]] = []  # (volume, z) for volumes
        if self.layout == "npy":
            slices = [s for s in _scan_npy(self.root, matcher) if s.target is not None]
            if not slices:
                raise InputError(
                    f"{self.root} has *{_INPUT_SUFFIX} files but no *{_TARGET_SUFFIX} (normal-dose) files; "
                    "training needs the normal-dose slices."
                )
            kept = [s for s in slices if s.patient not in held]
            self.patients = sorted({s.patient for s in kept})
            self._npy = kept[::stride]
            if self._npy:
                self._is_unit = _resolve_units(npy_units, [s.target for s in self._npy])  # type: ignore[misc]
                _check_size(np.load(self._npy[0].target, mmap_mode="r").shape, min_size, str(self._npy[0].target))
        else:
            self._volumes = _read_volumes(self.root, matcher, held_out=held, keep_held_out=False,
                                          select_regex=select_regex)
            self.patients = sorted({v.patient for v in self._volumes})
            for i, v in enumerate(self._volumes):
                _check_size(v.hu.shape[:2], min_size, v.relative)
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
            label = _load_npy_slice(s.target, self._is_unit, self.hu_window)  # type: ignore[arg-type]
            return {"label": label, "name": s.name, "slice": index}
        v, z = self._index[index]
        vol = self._volumes[v]
        return {"label": vol.hu[None, :, :, z].astype(np.float32), "name": vol.name, "slice": z}


def _resolve_units(npy_units: str, paths: Sequence[Path]) -> bool:
    if npy_units not in ("auto", "hu", "unit"):
        raise InputError(f"npy_units must be 'auto', 'hu' or 'unit', got {npy_units!r}.")
    if npy_units == "auto":
        is_unit = _npy_is_unit(paths)
        log.info("npy slices read as %s", "(HU + 1024) / 4096" if is_unit else "HU")
        return is_unit
    return npy_units == "unit"


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
        self.low_root = _check_root(low_dose, "low-dose validation folder")
        self.simulated_sigma = None
        self.layout = detect_layout(self.low_root, layout)
        self.hu_window = window_from(hu_window)
        if int(slice_stride) < 1:
            raise InputError(f"slice_stride must be >= 1, got {slice_stride}.")
        matcher = _PatientMatcher(patient_regex)
        wanted = _held_out_set(patients)
        self._npy: list[_NpySlice] = []
        self._pairs: list[tuple[_Volume, _Volume]] = []
        self._index: list[tuple[int, int]] = []
        if self.layout == "npy":
            slices = [s for s in _scan_npy(self.low_root, matcher) if not wanted or s.patient in wanted]
            slices = [s for s in slices if s.input is not None and s.target is not None]
            if not slices:
                raise InputError(
                    f"no *{_INPUT_SUFFIX} / *{_TARGET_SUFFIX} pairs under {self.low_root}"
                    + (f" for patients {sorted(wanted)}" if wanted else "")
                    + ". Validation needs low-dose/normal-dose pairs: check the folder, held_out and patient_regex."
                )
            self._npy = slices
            self._is_unit = _resolve_units(npy_units, [s.target for s in slices])  # type: ignore[misc]
            keys = list(range(len(slices)))
        else:
            one_folder = normal_dose is None or _check_root(normal_dose, "normal-dose validation folder").resolve() \
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
                normal = _read_volumes(self.low_root, matcher, held_out=wanted, keep_held_out=True, select_regex=None)
                if not normal:
                    raise InputError(
                        f"no held-out volumes of patients {sorted(wanted)} in {self.low_root} to validate on. Name "
                        "patients that are there in held_out, or give val_low_dose_dir and val_normal_dose_dir."
                    )
                self._pairs = [(v, v) for v in normal]
            else:
                normal_root = Path(normal_dose)  # type: ignore[arg-type]
                low = _read_volumes(self.low_root, matcher, held_out=set(), keep_held_out=False, select_regex=None)
                normal = _read_volumes(normal_root, matcher, held_out=set(), keep_held_out=False, select_regex=None)
                self._pairs = _pair_volumes(low, normal, self.low_root, normal_root)
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
            image = _load_npy_slice(s.input, self._is_unit, self.hu_window)  # type: ignore[arg-type]
            label = _load_npy_slice(s.target, self._is_unit, self.hu_window)  # type: ignore[arg-type]
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


def _pair_volumes(low: list[_Volume], normal: list[_Volume], low_root: Path, normal_root: Path) -> list[tuple[_Volume, _Volume]]:
    if not low or not normal:
        empty = low_root if not low else normal_root
        raise InputError(f"no CT volumes for validation in {empty}. Give folders with matching low/normal-dose cases.")
    if len(low) == 1 and len(normal) == 1:
        pairs = [(low[0], normal[0])]
    else:
        by_name = {v.name: v for v in normal}
        missing = [v.name for v in low if v.name not in by_name]
        extra = sorted(set(by_name) - {v.name for v in low})
        if missing or extra:
            raise InputError(
                f"validation volumes do not pair up by name: low-dose without normal-dose {missing[:5]}, "
                f"normal-dose without low-dose {extra[:5]} ({low_root} vs {normal_root}). Give both folders the "
                "same case names."
            )
        pairs = [(v, by_name[v.name]) for v in low]
    for lo, nd in pairs:
        if lo.hu.shape != nd.hu.shape:
            raise InputError(
                f"validation pair {lo.relative} / {nd.relative} differs in shape: {lo.hu.shape} vs {nd.hu.shape}. "
                "Low-dose and normal-dose volumes must be reconstructed on the same grid."
            )
    return pairs


# ----------------------------------------------------------------------------------------------------------
# online training noise
# ----------------------------------------------------------------------------------------------------------






