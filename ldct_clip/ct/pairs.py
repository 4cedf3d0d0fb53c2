"""Pairing low-dose cases with their normal-dose references, by case name or from a CSV of pairs."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ldct_clip.errors import InputError
from ldct_clip.ct.io.cases import Case, find_cases

__all__ = ["CasePair", "pair_cases"]


@dataclass
class CasePair:
    """A low-dose case and its normal-dose reference."""

    name: str
    ldct: Case
    ndct: Case


def _single_case(path: Path, what: str, line: int) -> Case:
    cases = find_cases(path)
    if len(cases) != 1:
        raise InputError(
            f"pairs CSV line {line}: {what} {path} holds {len(cases)} cases; each entry must be one series or file."
        )
    return cases[0]


def _pairs_from_csv(pairs_csv: Path) -> list[CasePair]:
    if not pairs_csv.is_file():
        raise InputError(f"pairs CSV {pairs_csv} does not exist.")
    with open(pairs_csv, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "ldct" not in columns or "ndct" not in columns:
            raise InputError(
                f"pairs CSV {pairs_csv} needs a header with columns 'ldct' and 'ndct' (and optionally 'name'), "
                f"got {reader.fieldnames}."
            )
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    if not rows:
        raise InputError(f"pairs CSV {pairs_csv} lists no pairs.")
    pairs, seen = [], set()
    for line, row in enumerate(rows, start=2):
        if not row.get("ldct") or not row.get("ndct"):
            raise InputError(f"pairs CSV {pairs_csv} line {line}: both 'ldct' and 'ndct' must be given.")
        # Relative paths are relative to the CSV, so a dataset folder with its CSV can move as a whole.
        ldct = _single_case(pairs_csv.parent / row["ldct"], "ldct", line)
        ndct = _single_case(pairs_csv.parent / row["ndct"], "ndct", line)
        name = row.get("name") or ldct.name
        if name.lower() in seen:
            raise InputError(
                f"pairs CSV {pairs_csv} line {line}: pair name {name!r} is used twice; add a 'name' column."
            )
        seen.add(name.lower())
        pairs.append(CasePair(name, ldct, ndct))
    return pairs


def pair_cases(
    ldct_dir: str | os.PathLike | None = None,
    ndct_dir: str | os.PathLike | None = None,
    *,
    pairs_csv: str | os.PathLike | None = None,
) -> list[CasePair]:
    """Match low-dose cases with their normal-dose references.

    Either two folders whose cases (:func:`~ldct_clip.ct.io.cases.find_cases`) are matched by case name (file
    name without extension, or the series folder's name; case-insensitive) -- when each side holds exactly one
    case they are paired whatever their names -- or ``pairs_csv``, a CSV with columns ``ldct``, ``ndct`` and
    optionally ``name``, one pair per line, paths relative to the CSV's folder.

    Returns:
        Pairs sorted by name.

    Raises:
        InputError: missing inputs, unmatched cases on either side (all of them named), or shapes known from
        the headers that differ.
    """
    if pairs_csv:
        pairs = _pairs_from_csv(Path(pairs_csv))
    else:
        if not ldct_dir or not ndct_dir:
            raise InputError("give both an LDCT and an NDCT folder (matched by case name), or a CSV of pairs.")
        ldct = find_cases(ldct_dir)
        ndct = find_cases(ndct_dir)
        if len(ldct) == 1 and len(ndct) == 1:
            pairs = [CasePair(ldct[0].name, ldct[0], ndct[0])]
        else:
            by_name = {c.name.lower(): c for c in ndct}
            unmatched_l = [c.name for c in ldct if c.name.lower() not in by_name]
            ldct_names = {c.name.lower() for c in ldct}
            unmatched_n = [c.name for c in ndct if c.name.lower() not in ldct_names]
            if unmatched_l or unmatched_n:
                parts = []
                if unmatched_l:
                    parts.append(f"LDCT case(s) without an NDCT reference in {ndct_dir}: {_names(unmatched_l)}")
                if unmatched_n:
                    parts.append(f"NDCT case(s) without an LDCT case in {ldct_dir}: {_names(unmatched_n)}")
                raise InputError(
                    "; ".join(parts) + ". Cases are matched by name (file name without extension, or series folder "
                    "name); rename them or give a CSV of pairs (columns ldct,ndct[,name])."
                )
            pairs = [CasePair(c.name, c, by_name[c.name.lower()]) for c in ldct]
    bad = []
    for p in pairs:
        sl, sn = _header_shape(p.ldct), _header_shape(p.ndct)
        if sl is not None and sn is not None and sl != sn:
            bad.append(f"{p.name} (LDCT {sl}, NDCT {sn})")
    if bad:
        raise InputError(f"LDCT and NDCT shapes (X, Y, Z) differ: {', '.join(bad)}. Pairs must be voxel-aligned.")
    return sorted(pairs, key=lambda p: p.name.lower())


def _names(names: Sequence[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def _header_shape(case: Case) -> tuple[int, int, int] | None:
    """(X, Y, Z) from headers only, to reject mismatched pairs before any denoising; None when unknown."""
    try:
        if case.kind == "nifti":
            import nibabel as nib

            shape = nib.load(str(case.paths[0])).shape
            return tuple(int(s) for s in shape[:3]) if len(shape) >= 3 else None
        if case.kind == "dicom":
            import pydicom

            ds = pydicom.dcmread(case.paths[0], stop_before_pixels=True)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            return int(ds.Columns), int(ds.Rows), frames if len(case.paths) == 1 else len(case.paths)
    except Exception:  # the full read reports unreadable files with a proper message
        return None
    return None
