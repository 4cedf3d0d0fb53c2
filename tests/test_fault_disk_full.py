"""Fault injection: the output folder's file system fills up while the third case is written.

The output folder is a tmpfs the test mounts (root), sized from a measured case so that two new cases and an
earlier run's outputs of the third fit, but the third case's new outputs do not. ``ldct-clip denoise`` must
name the failing case in one line, exit 2, keep the earlier cases and the third case's earlier outputs intact,
and leave no partial file. Where mounting is not allowed (no root, a container without CAP_SYS_ADMIN), the test
says why on stderr and runs the same command with a fault-injecting writer instead (``tests/enospc.py``: every
file opened for writing under the output folder draws on one byte budget and fails with ENOSPC past it).
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import tiny_model
from ct_factory import phantom_hu, write_ct_series
from ldct_clip.checkpoints import save_checkpoint
from ldct_clip.ct.io import find_cases, read_case

pytestmark = pytest.mark.slow

SHAPE = (96, 96, 8)
TESTS = Path(__file__).parent


def _tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` (relative name -> SHA-256)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))
            if p.is_file()}


def _used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _mount_tmpfs(folder: Path, size: int) -> str | None:
    """Mount a tmpfs of ``size`` bytes on ``folder``; None, or why it cannot be done here."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return "not root"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                       text=True)
    return None if r.returncode == 0 else f"mount -t tmpfs failed: {(r.stderr or r.stdout).strip()}"


@pytest.fixture
def cases(tmp_path):
    """Inputs: ``one/c`` (the third case alone, for the earlier run) and ``all/{a,b,c}``."""
    for i, name in enumerate("abc"):
        hu = phantom_hu(SHAPE, seed=i, noise=20.0)
        write_ct_series(tmp_path / "all" / name, hu, series_description=name)
        if name == "c":
            write_ct_series(tmp_path / "one" / name, hu, series_description=name)
    return tmp_path / "one", tmp_path / "all", save_checkpoint(tiny_model(), tmp_path / "tiny.pt")


def _denoise(src: Path, out: Path, ckpt: Path, budget: int | None = None) -> subprocess.CompletedProcess:
    args = ["denoise", str(src), str(out), "--checkpoint", str(ckpt), "--device", "cpu", "--precision", "fp32",
            "--roi-size", "64", "64", "-q"]
    # a budget: the fault-injecting writer stands in for a full disk (only where no tmpfs can be mounted)
    runner = [str(TESTS / "enospc.py"), str(budget), str(out), "--"] if budget is not None else ["-m", "ldct_clip"]
    return subprocess.run([sys.executable, *runner, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("disk", ["tmpfs", "fault-injecting writer"])
def test_disk_fills_up_during_the_third_case(cases, tmp_path, disk):
    one, everything, ckpt = cases
    out = tmp_path / "out"
    # the writer variant runs everywhere, so the fallback is known to work where mounting is refused
    why = _mount_tmpfs(out, 64 << 20) if disk == "tmpfs" else "asked for the fault-injecting writer"
    budget = None
    try:
        # an earlier run left the third case's outputs: they must survive the failed rerun of that case
        r = _denoise(one, out, ckpt)
        assert r.returncode == 0, r.stderr
        earlier = _tree(out)
        unit = _used(out) if why is None else sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        room = int(3.4 * unit)  # a, b and the earlier c fit; the new c's staged outputs do not
        if why is None:
            subprocess.run(["mount", "-o", f"remount,size={room}", str(out)], check=True)
        else:
            if disk == "tmpfs":  # said in pytest's warnings summary, not only in captured output
                warnings.warn(f"cannot mount a small file system here ({why}); using the fault-injecting writer "
                              "tests/enospc.py instead", stacklevel=1)
            budget = room - unit  # what new files may still take

        r = _denoise(everything, out, ckpt, budget)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "Traceback" not in r.stderr, r.stderr
        failed = [line for line in r.stderr.splitlines() if "No space left on device" in line]
        assert len(failed) == 1 and failed[0].startswith("c:"), r.stderr  # the fault happened, in case c, one line
        assert os.strerror(errno.ENOSPC) in failed[0]
        after = _tree(out)
        for name in "ab":  # the earlier cases are complete
            assert read_case(find_cases(out / f"{name}_dicom")[0]).hu.shape == SHAPE
            assert {f"{name}.nii.gz", f"{name}.png"} <= set(after)
        assert {k: v for k, v in after.items() if k.startswith("c")} == earlier  # c's earlier outputs, untouched
        assert [p for p in out.rglob("*") if p.name.startswith(".")] == []  # no staging or temporary file remains
        assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "a.png", "a_dicom", "b.nii.gz", "b.png",
                                                         "b_dicom", "c.nii.gz", "c.png", "c_dicom"]
    finally:
        if why is None:
            subprocess.run(["umount", str(out)], check=False)
