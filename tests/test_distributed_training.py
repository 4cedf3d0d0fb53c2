"""Multi-process training: ``torchrun --nproc_per_node=2`` with train.json + multi_gpu_train.json on CPU (gloo).

The same configs pick NCCL and one GPU per process on CUDA machines; here both processes run on the CPU, so the
test exercises the real process group, DistributedSampler, DistributedDataParallel and the rank-0-only writers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ldct_clip.checkpoints import load_checkpoint
from ldct_clip.handlers.json_lines import read_log

from conftest import TINY
from test_training import CONFIGS, TINY_TRAIN, write_volumes

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def test_multi_gpu_config_follows_the_machine():
    cfg = json.loads((CONFIGS / "multi_gpu_train.json").read_text())
    text = json.dumps(cfg)
    # no hard-coded CUDA device or NCCL backend: CPU machines get gloo and the CPU device
    assert "nccl" in cfg["dist_backend"] and "gloo" in cfg["dist_backend"]
    assert "torch.cuda.is_available()" in cfg["device"]
    assert "backend=@dist_backend" in text


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_and_only_rank0_writes(tmp_path):
    paths = write_volumes(tmp_path / "data", size=48)
    out = tmp_path / "run"
    configs = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'multi_gpu_train.json'}']"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    logs = tmp_path / "torchrun_logs"
    cmd = [
        *TORCHRUN, "--standalone", "--nnodes=1", "--nproc_per_node=2", "--log-dir", str(logs), "--redirects", "3",
        "-m", "monai.bundle", "run", "--config_file", configs, "--logging_file", str(CONFIGS / "logging.conf"),
        *TINY_TRAIN, "--dataset_dir", str(paths["train"]), "--val_low_dose_dir", str(paths["val_ld"]),
        "--val_normal_dose_dir", str(paths["val_nd"]), "--ckpt_dir", str(out / "models"),
        "--output_dir", str(out / "logs"), "--iterations", "10", "--val_interval", "5", "--log_interval", "1",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    rank_output = {int(p.parent.name): p.read_text() for p in logs.rglob("stdout.log")}
    rank_output.update({k: rank_output.get(k, "") + p.read_text() for p in logs.rglob("stderr.log")
                        for k in [int(p.parent.name)]})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:] + "".join(v[-3000:] for v in rank_output.values())
    # both processes ran the trainer through both epochs (DDP would hang if one of them did not step)
    assert sorted(rank_output) == [0, 1]
    for rank, text in rank_output.items():
        assert len(re.findall(r"DenoisingTrainer - INFO - Epoch\[2\] Complete", text)) == 1, (rank, text[-2000:])
    # each iteration is logged once (rank 0 only), not once per process
    train = read_log(out / "logs" / "train_log.jsonl", "train")
    assert [rec["iteration"] for rec in train] == list(range(1, 11))
    assert [rec["iteration"] for rec in read_log(out / "logs" / "train_log.jsonl", "validation")] == [5, 10]
    assert len(list((out / "logs").glob("events.out.tfevents.*"))) == 2  # one writer for training, one for validation
    # rank 0 alone wrote the checkpoints: one best model, one last checkpoint, no per-rank duplicates
    assert sorted(p.name for p in (out / "models").iterdir()) == ["checkpoint_epoch=2.pt", "checkpoint_last.pt", "model.pt"]
    last = torch.load(out / "models" / "checkpoint_last.pt", weights_only=True)
    assert last["trainer"]["iteration"] == 10
    assert not any(k.startswith("module.") for k in last["model"])  # saved without the DDP wrapper
    model = load_checkpoint(out / "models" / "model.pt").eval()
    assert model.encoder.width == TINY["width"]
    with torch.no_grad():
        y = model(torch.rand(1, 1, 48, 48))
    assert y.shape == (1, 1, 48, 48) and torch.isfinite(y).all()
