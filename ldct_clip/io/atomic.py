"""Write a file under a temporary name beside it, then rename: readers never see a half-written file."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "temp_name"]


def temp_name(final: Path, kind: str = "tmp") -> Path:
    """A hidden sibling of ``final`` (case discovery skips it) that keeps ``final``'s name at the end, so that
    writers choosing a format by suffix (nibabel's ``.nii.gz``) still see it."""
    return final.parent / f".{kind}-{uuid.uuid4().hex[:12]}-{final.name}"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` (``os.replace``), on failure it is removed.

    The parent folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
