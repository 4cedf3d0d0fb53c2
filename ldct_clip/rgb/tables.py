"""The RGB evaluations' tables: ``per_image.csv``, ``metrics.csv`` (means per dataset and setting) and
``metrics.md``."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.atomic import atomic_path

__all__ = ["write_tables"]

log = logging.getLogger("ldct_clip")


def fmt_level(level: float) -> str:
    return f"{level:g}"


_METRICS = ("psnr_in", "psnr", "ssim")


def _summarise(rows: Sequence[Mapping[str, Any]], group_keys: Sequence[str]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in group_keys), []).append(r)
    return [
        {**dict(zip(group_keys, key)), "images": len(members),
         **{m: float(np.mean([r[m] for r in members])) for m in _METRICS}}
        for key, members in groups.items()
    ]


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: f"{v:.6f}" if isinstance(v, float) and k in _METRICS else v for k, v in r.items()})
    return path


def write_tables(
    rows: Sequence[Mapping[str, Any]], output_dir: str | os.PathLike, group_keys: Sequence[str], *, title: str = "Results"
) -> dict[str, Path]:
    """Write ``per_image.csv``, ``metrics.csv`` (means per ``group_keys``) and ``metrics.md`` (a table per dataset).

    ``rows`` hold ``dataset``, ``image``, the ``group_keys`` and the metrics ``psnr_in``, ``psnr``, ``ssim``.
    Returns the paths by name (``"per_image"``, ``"csv"``, ``"markdown"``).
    """
    if not rows:
        raise InputError("nothing was evaluated: no images.")
    out = Path(output_dir)
    summary = _summarise(rows, group_keys)
    paths = {"per_image": _write_csv(out / "per_image.csv", rows), "csv": _write_csv(out / "metrics.csv", summary)}
    setting_keys = [k for k in group_keys if k != "dataset"]

    def cells(r: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
        return [fmt_level(r[k]) if isinstance(r[k], float) else str(r[k]) for k in keys] + [
            str(r["images"]), f"{r['psnr_in']:.2f}", f"{r['psnr']:.2f}", f"{r['ssim']:.4f}"]

    def table(keys: Sequence[str], members: Sequence[Mapping[str, Any]]) -> list[str]:
        head = [k.capitalize() for k in keys] + ["Images", "Input PSNR", "PSNR", "SSIM"]
        return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                + ["| " + " | ".join(cells(r, keys)) + " |" for r in members] + [""])

    lines = [f"# {title}", ""]
    if setting_keys:  # one table per dataset, a row per setting
        for dataset in dict.fromkeys(r["dataset"] for r in summary):
            lines += [f"## {dataset}", ""] + table(setting_keys, [s for s in summary if s["dataset"] == dataset])
    else:  # one row per dataset
        lines += table(["dataset"], summary)
    md = out / "metrics.md"
    md.write_text("\n".join(lines))
    paths["markdown"] = md
    for r in summary:
        what = " ".join([r["dataset"]] + cells(r, setting_keys)[: len(setting_keys)])
        log.info("%s: PSNR %.2f dB (input %.2f), SSIM %.4f over %d image(s)", what, r["psnr"], r["psnr_in"], r["ssim"],
                 r["images"])
    return paths


# ----------------------------------------------------------------------------------------------------------
# training and validation data, metric, schedule
# ----------------------------------------------------------------------------------------------------------
