"""Run ``ldct-clip`` with a fault-injecting writer: files written under a folder share a byte budget.

    python tests/enospc.py BUDGET FOLDER -- denoise IN OUT ...

Every file opened for writing under FOLDER (by ``open``: NIfTI through gzip, DICOM through pydicom, PNG through
Pillow) draws on one budget of BUDGET bytes; a write past it raises ``OSError(ENOSPC)``, as a full disk does.
For tests/test_fault_disk_full.py where no small file system can be mounted.
"""

from __future__ import annotations

import builtins
import errno
import os
import sys
from pathlib import Path

_open = builtins.open


class _Budget:
    left = 0


class _LimitedFile:
    """A file object whose writes draw on the shared budget."""

    def __init__(self, f, name: str) -> None:
        self._f, self._name = f, name

    def write(self, data) -> int:
        n = len(memoryview(data).cast("B"))
        if n > _Budget.left:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._name)
        _Budget.left -= n
        return self._f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()

    def __iter__(self):
        return iter(self._f)

    def __getattr__(self, name: str):
        return getattr(self._f, name)


def _limited_open(file, mode="r", *args, **kwargs):
    f = _open(file, mode, *args, **kwargs)
    if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
        if Path(os.path.abspath(file)).is_relative_to(_Budget.folder):
            return _LimitedFile(f, os.fspath(file))
    return f


def main() -> int:
    budget, folder, sep, *args = sys.argv[1:]
    assert sep == "--"
    _Budget.left, _Budget.folder = int(budget), Path(os.path.abspath(folder))
    builtins.open = _limited_open
    from ldct_clip.cli import main as cli

    return cli(args)


if __name__ == "__main__":
    sys.exit(main())
