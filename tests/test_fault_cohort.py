"""Fault injection: a cohort job killed by the scheduler halfway (SIGKILL to its whole process group).

Real processes: ``torchrun`` with 2 CPU (gloo) ranks running the bundle's multi-GPU inference, and
``ldct-clip denoise --shard i/n --resume``. After the kill, a rerun of the same command finishes the rest; every
case then has complete outputs, the cases finished before the kill were not written again, nothing temporary
is left in the output folder, and the summary lists every case once.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from conftest import tiny_model
from ct_factory import phantom_hu, write_ct_series, write_nifti
from ldct_clip.checkpoints import save_checkpoint
from ldct_clip.ct.io import find_cases, read_case
from test_bundle import CONFIGS, TINY_OVERRIDES

pytestmark = pytest.mark.slow

SHAPE = (64, 64, 6)
CASES = [f"case{i:02d}" for i in range(12)]
DICOM_CASES = set(CASES[::3])  # every third case is a DICOM series: a derived series folder to commit too


def write_cohort(root: Path) -> Path:
    for i, name in enumerate(CASES):
        hu = phantom_hu(SHAPE, seed=i, noise=20.0)
        if name in DICOM_CASES:
            write_ct_series(root / name, hu, series_description=name)
        else:
            write_nifti(root / f"{name}.nii.gz", hu)
    return root


def finals(out: Path, name: str) -> list[Path]:
    return [out / f"{name}.nii.gz", out / f"{name}.png", *([out / f"{name}_dicom"] if name in DICOM_CASES else [])]


def committed(out: Path) -> set[str]:
    """Cases whose every output is in place (outputs are swapped in together, so this is all or none)."""
    return {c for c in CASES if all(p.exists() for p in finals(out, c))}


def stamp(out: Path, names) -> dict[Path, tuple[int, int]]:
    paths = [p for c in names for p in finals(out, c)]
    paths += [f for c in names if c in DICOM_CASES for f in (out / f"{c}_dicom").iterdir()]
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def leftovers(out: Path) -> list[Path]:
    """Staging folders, temporary and set-aside files: every such name is hidden (starts with a dot)."""
    return [p for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith((".part", ".tmp"))]


def check_complete(out: Path) -> None:
    for c in CASES:
        img = nib.load(out / f"{c}.nii.gz")
        assert img.shape == SHAPE and np.isfinite(np.asarray(img.dataobj)).all(), c
        with Image.open(out / f"{c}.png") as png:
            png.load()  # a truncated PNG raises here
        if c in DICOM_CASES:
            assert len(list((out / f"{c}_dicom").glob("*.dcm"))) == SHAPE[2], c
            assert read_case(find_cases(out / f"{c}_dicom")[0]).hu.shape == SHAPE, c


def run_killed(cmd: list[str], out: Path, after: int, env: dict, log: Path) -> set[str]:
    """Start ``cmd`` in its own process group, SIGKILL the whole group once ``after`` cases are committed.
    Returns the cases that were complete at the kill."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 400
    while len(committed(out)) < after:
        assert proc.poll() is None, f"ended (rc {proc.returncode}) before the kill:\n" + log.read_text()[-3000:]
        assert time.monotonic() < deadline, "too slow to reach the kill point:\n" + log.read_text()[-3000:]
        time.sleep(0.02)
    running = processes_writing(out)
    assert proc.pid in running
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL  # the fault happened: killed, not finished
    deadline = time.monotonic() + 20
    while processes_writing(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    # nothing of the job survives to write on beside the rerun (torchrun's workers sit in sessions of their own)
    assert processes_writing(out) == set(), f"still running after the kill: {processes_writing(out)} of {running}"
    return committed(out)


def processes_writing(out: Path) -> set[int]:
    """Live processes whose command line names the output folder (the job's launcher and its workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(out).encode() in args and state != "Z":
            found.add(int(entry.name))
    return found


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    return write_cohort(root / "in"), save_checkpoint(tiny_model(), root / "tiny.pt")


ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def test_torchrun_killed_then_rerun_finishes_every_case_once(cohort, tmp_path):
    src, ckpt = cohort
    out = tmp_path / "out"
    configs = f"['{CONFIGS / 'inference.json'}','{CONFIGS / 'multi_gpu_inference.json'}']"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
           "-m", "monai.bundle", "run", "--config_file", configs,
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
           "--dataset_dir", str(src), "--output_dir", str(out), "--ckpt_path", str(ckpt),
           "--roi_size", "[64,64]", "--precision", "fp32", *TINY_OVERRIDES]
    done = run_killed(cmd, out, after=3, env=ENV, log=tmp_path / "killed.log")
    assert 3 <= len(done) < len(CASES)
    assert not (out / "denoise_summary.csv").exists()
    before = stamp(out, done)

    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    check_complete(out)
    assert stamp(out, done) == before  # the cases finished before the kill were not written again
    assert leftovers(out) == []
    rows = read_rows(out / "denoise_summary.csv")
    assert sorted(row["case"] for row in rows) == CASES  # every case once
    assert {row["case"]: row["status"] for row in rows} == {c: "skipped" if c in done else "denoised" for c in CASES}
    assert not list(out.glob("denoise_summary_shard-*"))


def _denoise_cmd(src: Path, out: Path, ckpt: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ldct_clip", "denoise", str(src), str(out), "--checkpoint", str(ckpt),
            "--device", "cpu", "--precision", "fp32", "--roi-size", "64", "64", "--quiet", *extra]


def test_resume_killed_then_rerun_finishes_every_case_once(cohort, tmp_path):
    src, ckpt = cohort
    out = tmp_path / "out"
    cmd = _denoise_cmd(src, out, ckpt, "--resume")
    done = run_killed(cmd, out, after=3, env=ENV, log=tmp_path / "killed.log")
    assert 3 <= len(done) < len(CASES)
    before = stamp(out, done)
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    check_complete(out)
    assert stamp(out, done) == before
    assert leftovers(out) == []
    redone = sorted(set(re.findall(r"(case\d+): \d+ slices in", r.stdout + r.stderr)))
    assert redone == sorted(set(CASES) - done)  # the rest, each once


def test_shard_resume_killed_then_rerun_finishes_every_case_once(cohort, tmp_path):
    src, ckpt = cohort
    out = tmp_path / "out"

    def cmd(shard: str) -> list[str]:
        return _denoise_cmd(src, out, ckpt, "--shard", shard, "--resume")

    shard0 = CASES[0::2]
    done = run_killed(cmd("0/2"), out, after=2, env=ENV, log=tmp_path / "killed.log")
    assert 2 <= len(done) < len(shard0) and done <= set(shard0)
    before = stamp(out, done)
    for shard in ("0/2", "1/2"):
        r = subprocess.run(cmd(shard), capture_output=True, text=True, env=ENV, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    check_complete(out)
    assert stamp(out, done) == before
    assert leftovers(out) == []
    rows = [row for i in range(2) for row in read_rows(out / f"denoise_summary_shard-{i}-of-2.csv")]
    assert sorted(row["case"] for row in rows) == CASES
    assert {row["case"]: row["status"] for row in rows} == {c: "skipped" if c in done else "denoised" for c in CASES}
