"""Write a file under a temporary name beside it, then rename: readers never see a half-written file.

:func:`replace_together` extends this to the several outputs of one case (NIfTI, DICOM folder, PNG): they
are all written under temporary names first and swapped in only once every one of them is complete, so a
case either has exactly this run's outputs or keeps the previous run's untouched.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "remove_path", "replace_together", "temp_name"]


def temp_name(final: Path, kind: str = "tmp") -> Path:
    """A hidden sibling of ``final`` (case discovery skips it) that keeps ``final``'s name at the end, so that
    writers choosing a format by suffix (nibabel's ``.nii.gz``) still see it."""
    return final.parent / f".{kind}-{uuid.uuid4().hex[:12]}-{final.name}"


def remove_path(path: Path) -> None:
    """Remove a file, link or folder tree; a missing path is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError):  # never created (its folder may not even be one)
        pass


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


def replace_together(staged: Sequence[tuple[Path, Path]], obsolete: Sequence[Path] = ()) -> None:
    """Move each finished ``(temporary, final)`` pair into place and remove ``obsolete`` paths, all or nothing.

    Existing finals and obsolete paths are first renamed aside; if any rename fails, everything is put back
    as it was (the temporaries are removed) and the error propagates.  Only after all renames succeeded are
    the set-aside previous versions deleted.  Each rename is atomic on one file system; the group is not,
    but a failure part-way is rolled back.
    """
    aside: list[tuple[Path, Path]] = []  # (original location, where it was moved)
    placed: list[Path] = []
    try:
        for final in [f for _, f in staged] + list(obsolete):
            if os.path.lexists(final):
                old = temp_name(final, "old")
                os.replace(final, old)
                aside.append((final, old))
        for tmp, final in staged:
            os.replace(tmp, final)
            placed.append(final)
    except BaseException:
        for final in placed:
            remove_path(final)
        for final, old in reversed(aside):
            os.replace(old, final)
        for tmp, _ in staged:
            remove_path(tmp)
        raise
    for _, old in aside:
        remove_path(old)
