"""Cohort-scale inference: cases sharded over processes (torchrun ranks, ``--shard i/n``), resumable reruns."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import denoise
from ldct_clip.errors import InputError
from ct_factory import phantom_hu, write_nifti
from ldct_clip.engine.shards import parse_shard, select
from test_bundle import CONFIGS, TINY_OVERRIDES

CASES = [f"case{i}" for i in range(5)]


def write_cohort(root: Path) -> Path:
    for i, name in enumerate(CASES):
        write_nifti(root / f"{name}.nii.gz", phantom_hu((40, 36, 2), seed=i))
    return root




def read_summary(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["case"]: row for row in csv.DictReader(f)}


def test_parse_shard():
    assert parse_shard("0/4") == (0, 4) and parse_shard(" 3 / 4 ") == (3, 4) and parse_shard((1, 2)) == (1, 2)
    for bad in ("4/4", "1/0", "a/b", "1", "-1/3"):
        with pytest.raises(InputError, match="shard"):
            parse_shard(bad)
    assert select(list("abcde"), (1, 2)) == ["b", "d"] and select(list("abc"), None) == ["a", "b", "c"]


def test_shards_split_the_cohort_once_and_write_their_summaries(tmp_path, tiny_checkpoint):
    src, out = write_cohort(tmp_path / "in"), tmp_path / "out"
    done = {}
    for i in range(2):
        results = denoise(src, out, tiny_checkpoint, shard=f"{i}/2", write_png=False)
        assert all(r.ok and not r.skipped for r in results)
        done[i] = [r.name for r in results]
        summary = read_summary(out / f"denoise_summary_shard-{i}-of-2.csv")
        assert sorted(summary) == sorted(done[i]) and {row["status"] for row in summary.values()} == {"denoised"}
    assert sorted(done[0] + done[1]) == CASES and not set(done[0]) & set(done[1])
    assert done == {0: ["case0", "case2", "case4"], 1: ["case1", "case3"]}  # round-robin over the sorted cases
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in CASES]


def test_resume_skips_complete_cases_and_redoes_incomplete_ones(tmp_path, tiny_checkpoint):
    src, out = write_cohort(tmp_path / "in"), tmp_path / "out"
    denoise(src, out, tiny_checkpoint)
    (out / "case3.png").unlink()  # as if the run had been killed while case3 was written
    kept = {c: (out / f"{c}.nii.gz").stat().st_mtime_ns for c in CASES}
    results = {r.name: r for r in denoise(src, out, tiny_checkpoint, skip_complete=True)}
    assert [c for c, r in results.items() if not r.skipped] == ["case3"]
    assert (out / "case3.png").is_file()
    assert all((out / f"{c}.nii.gz").stat().st_mtime_ns == kept[c] for c in CASES if c != "case3")
    # without skip_complete everything is done again (the default: behaviour of a plain rerun is unchanged)
    assert not any(r.skipped for r in denoise(src, out, tiny_checkpoint))


@pytest.mark.slow
def test_torchrun_shards_cases_over_two_gloo_processes_and_resumes(tmp_path, tiny_checkpoint):
    src, out = write_cohort(tmp_path / "in"), tmp_path / "out"
    configs = f"['{CONFIGS / 'inference.json'}','{CONFIGS / 'multi_gpu_inference.json'}']"

    def run(logs: Path, *extra: str) -> dict[int, str]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
               "--log-dir", str(logs), "--redirects", "3", "-m", "monai.bundle", "run", "--config_file", configs,
               "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
               "--dataset_dir", str(src), "--output_dir", str(out), "--ckpt_path", str(tiny_checkpoint),
               "--roi_size", "[64,64]", "--precision", "fp32", "--write_png", "false", *TINY_OVERRIDES, *extra]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
        text = {int(p.parent.name): "" for p in logs.rglob("stdout.log")}
        for p in logs.rglob("std*.log"):
            text[int(p.parent.name)] += p.read_text()
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:] + "".join(t[-2000:] for t in text.values())
        return text

    text = run(tmp_path / "logs1")
    assert sorted(text) == [0, 1]
    denoised = {rank: re.findall(r"(case\d): \d+ slices in", t) for rank, t in text.items()}
    assert sorted(denoised[0] + denoised[1]) == CASES  # every case exactly once, over both ranks
    assert denoised[0] and denoised[1]
    summary = read_summary(out / "denoise_summary.csv")  # one summary, merged by rank 0
    assert sorted(summary) == CASES and {row["status"] for row in summary.values()} == {"denoised"}
    assert {c: int(summary[c]["shard"]) for c in CASES} == {c: r for r, cs in denoised.items() for c in cs}
    assert "all 2 shards done: 5 of 5 case(s) denoised" in text[0]
    assert not list(out.glob("denoise_summary_shard-*"))

    # a rerun after an interruption: the complete cases are skipped, the incomplete one is redone; the device given
    # as text on the command line (the model card's `--device cpu`) gives each rank the CPU and gloo
    (out / "case2.nii.gz").unlink()
    text = run(tmp_path / "logs2", "--device", "cpu")
    redone = [c for t in text.values() for c in re.findall(r"(case\d): \d+ slices in", t)]
    assert redone == ["case2"]
    summary = read_summary(out / "denoise_summary.csv")
    assert {c: row["status"] for c, row in summary.items()} == {c: "denoised" if c == "case2" else "skipped" for c in CASES}
