"""Where results may be written: never over or inside an input, into a folder that exists and is writable, with a
failed write (a full disk, a permission) reported as one clear :class:`~ldct_clip.errors.InputError`.

Shared by the NIfTI writer, the derived DICOM series writer and the case outputs of the datasets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ldct_clip.errors import InputError

__all__ = ["check_output_path", "ensure_dir", "oserror_as_input_error"]


def _resolved(path: Path | str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()


def check_output_path(target: Path | str, inputs: Iterable[Path | str] = (), *, replacing: bool = False) -> None:
    """Refuse an output path that is an input, lies inside one, or (``replacing``) would delete one.

    Args:
        target: file or folder about to be written.
        inputs: files or folders that must not be touched (a volume's ``source``).
        replacing: ``target`` is an existing folder that will be replaced, so inputs inside it count too.

    Raises:
        InputError: naming both paths.
    """
    t = _resolved(target)
    for inp in inputs:
        i = _resolved(inp)
        if t == i:
            raise InputError(
                f"Refusing to write {target}: it is the input {inp}. Choose an output path outside the input."
            )
        if i in t.parents:
            raise InputError(
                f"Refusing to write {target}: it is inside the input {inp}. Choose an output path outside the input."
            )
        if replacing and t in i.parents:
            raise InputError(
                f"Refusing to replace {target}: it contains the input {inp}. Choose another output folder."
            )


def ensure_dir(folder: Path) -> None:
    """Create ``folder`` (and its parents) if needed and check it is a writable folder."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"Cannot write into {folder}: it exists and is not a folder. Choose another output path.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"Cannot create output folder {folder} ({exc.strerror or exc}). Choose a writable output path."
        ) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(
            f"Output folder {folder} is not writable. Choose a writable output path or fix its permissions."
        )


@contextmanager
def oserror_as_input_error(what: Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``what`` into an :class:`InputError` naming the system's reason."""
    try:
        yield
    except InputError:
        raise
    except OSError as exc:
        root = _system_error(exc)
        reason = root.strerror if root.errno is not None else str(root).splitlines()[0]
        raise InputError(
            f"Writing {what} failed: {reason} ({root.filename or what}). Check free space and permissions."
        ) from exc


def _system_error(exc: OSError) -> OSError:
    """The OSError that carries the errno: pydicom re-raises a write error as ``OSError("With tag ... got
    exception: ...<traceback>")`` without one, chained to the original (ENOSPC, EACCES, ...)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc
