"""Finding and reading CT training data on disk: the ``"volumes"`` and ``"npy"`` layouts, patient ids, held-out
patients, and the pairing of validation volumes (the datasets built on them are in :mod:`ldct_clip.ct.training_data`,
whose docstring describes the layouts).

Volumes are ``(X, Y, Z)`` in HU; npy slices are read as ``(1, X, Y)`` float32 HU.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ldct_clip.ct.hu import unit_to_hu
from ldct_clip.errors import InputError

__all__ = [
    "DEFAULT_HELD_OUT",
    "DEFAULT_PATIENT_REGEX",
    "INPUT_SUFFIX",
    "TARGET_SUFFIX",
    "Layout",
    "NpySlice",
    "NpyUnits",
    "PatientMatcher",
    "Volume",
    "check_root",
    "check_size",
    "detect_layout",
    "held_out_set",
    "load_npy_slice",
    "natural_key",
    "npy_is_unit",
    "pair_volumes",
    "read_volumes",
    "resolve_units",
    "scan_npy",
]

log = logging.getLogger("ldct_clip")

#: Patients the paper keeps out of training (Mayo-2016 L506 is its test patient).
DEFAULT_HELD_OUT: tuple[str, ...] = ("L506",)
#: Leading letters, digits and dashes of the relative path: ``L067`` from ``L067_12_target.npy``.
DEFAULT_PATIENT_REGEX = r"^([A-Za-z0-9-]+)"

Layout = Literal["auto", "volumes", "npy"]
NpyUnits = Literal["auto", "hu", "unit"]

INPUT_SUFFIX = "_input.npy"
TARGET_SUFFIX = "_target.npy"


def natural_key(text: str) -> list[Any]:
    """Sort ``L067_2`` before ``L067_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def check_root(root: str | Path, what: str) -> Path:
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
    path = check_root(root, "data folder")
    for pattern in ("*" + TARGET_SUFFIX, "*" + INPUT_SUFFIX):
        if next(path.rglob(pattern), None) is not None:
            return "npy"
    return "volumes"


class PatientMatcher:
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


def held_out_set(held_out: Iterable[str] | str | None) -> set[str]:
    if held_out is None:
        return set()
    if isinstance(held_out, str):
        return {held_out}
    return {str(p) for p in held_out}


@dataclass(frozen=True)
class NpySlice:
    """One slice of the npy layout: files of its low-dose (``input``) and normal-dose (``target``) versions."""

    name: str  # relative path without the _input/_target suffix, e.g. "L067_12"
    patient: str
    input: Path | None
    target: Path | None


def scan_npy(root: Path, matcher: PatientMatcher) -> list[NpySlice]:
    """All ``*_input.npy``/``*_target.npy`` slices under ``root``, naturally sorted; unpaired files are an error
    when both kinds are present (a folder of only ``*_target.npy`` files is a valid normal-dose-only set)."""
    found: dict[str, dict[str, Path]] = {}
    for kind, suffix in (("input", INPUT_SUFFIX), ("target", TARGET_SUFFIX)):
        for path in root.rglob("*" + suffix):
            rel = path.relative_to(root).as_posix()
            found.setdefault(rel[: -len(suffix)], {})[kind] = path
    if not found:
        raise InputError(
            f"no *{INPUT_SUFFIX} / *{TARGET_SUFFIX} slice files under {root}. Use the RED-CNN layout "
            "(<patient>_<slice>_input.npy beside <patient>_<slice>_target.npy) or a folder of CT volumes."
        )
    n_in = sum("input" in v for v in found.values())
    n_tg = sum("target" in v for v in found.values())
    if n_in and n_tg:
        lonely = sorted(k for k, v in found.items() if len(v) == 1)
        if lonely:
            examples = ", ".join(lonely[:5]) + (" ..." if len(lonely) > 5 else "")
            raise InputError(
                f"{len(lonely)} slice(s) under {root} have only one of {INPUT_SUFFIX} / {TARGET_SUFFIX} "
                f"({examples}). Every <name>{INPUT_SUFFIX} needs a <name>{TARGET_SUFFIX} beside it: "
                "re-run the data preparation or remove the stray files."
            )
    return [
        NpySlice(name, matcher(name), v.get("input"), v.get("target"))
        for name, v in sorted(found.items(), key=lambda kv: natural_key(kv[0]))
    ]


def npy_is_unit(paths: Sequence[Path]) -> bool:
    """Guess the units of a set of npy slices from a few of them: all values in [-0.5, 1.5] means ``[0, 1]``."""
    picks = {paths[0], paths[len(paths) // 2], paths[-1]}
    for p in picks:
        a = np.load(p, mmap_mode="r")
        if float(np.min(a)) < -0.5 or float(np.max(a)) > 1.5:
            return False
    return True


def load_npy_slice(path: Path, is_unit: bool, hu_window: tuple[float, float]) -> np.ndarray:
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
class Volume:
    name: str
    patient: str
    relative: str
    hu: np.ndarray  # (X, Y, Z), int16 or float32


def compact_hu(hu: np.ndarray) -> np.ndarray:
    """int16 when the HU values are whole numbers in range (halves the memory), else float32."""
    if hu.size and np.all(np.isfinite(hu)) and hu.min() >= -32768 and hu.max() <= 32767:
        rounded = np.rint(hu)
        if np.array_equal(rounded, hu):
            return rounded.astype(np.int16)
    return hu.astype(np.float32, copy=False)


def read_volumes(
    root: Path,
    matcher: PatientMatcher,
    *,
    held_out: set[str],
    keep_held_out: bool,
    select_regex: str | None,
) -> list[Volume]:
    """Read the cases under ``root`` (training: all but ``held_out``; ``keep_held_out``: only those)."""
    from ldct_clip.ct.io import find_cases, read_case

    try:
        select = re.compile(select_regex) if select_regex else None
    except re.error as exc:
        raise InputError(f"select_regex {select_regex!r} is not a valid regular expression ({exc}).") from exc
    volumes: list[Volume] = []
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
        volumes.append(Volume(case.name, patient, rel, compact_hu(vol.hu)))
    return volumes


def check_size(shape: Sequence[int], min_size: int, where: str) -> None:
    if min_size and min(shape) < min_size:
        raise InputError(
            f"{where}: slices of {shape[0]}x{shape[1]} px are smaller than the training crop of {min_size} px. "
            "Lower crop_size or leave these data out."
        )



def resolve_units(npy_units: str, paths: Sequence[Path]) -> bool:
    if npy_units not in ("auto", "hu", "unit"):
        raise InputError(f"npy_units must be 'auto', 'hu' or 'unit', got {npy_units!r}.")
    if npy_units == "auto":
        is_unit = npy_is_unit(paths)
        log.info("npy slices read as %s", "(HU + 1024) / 4096" if is_unit else "HU")
        return is_unit
    return npy_units == "unit"



def pair_volumes(low: list[Volume], normal: list[Volume], low_root: Path, normal_root: Path) -> list[tuple[Volume, Volume]]:
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

