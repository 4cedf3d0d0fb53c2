"""Tables people open: CSV with a fixed column order and enough digits to compare, and text files, written
atomically."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ldct_clip.atomic import atomic_path

__all__ = ["write_csv", "write_text"]


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    def cell(v: Any) -> Any:
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, ".10g")  # enough digits to compare with recomputed values
        return v

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: cell(row.get(k, "")) for k in columns})
    return path


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
