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
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

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
    events = sorted((out / "logs").glob("events.out.tfevents.*"))
    assert len(events) == 2  # one writer for training, one for validation
    # the writers were closed before the worker exited: the last validation's scalars reached the files
    scalars = {}
    for path in events:
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(event.step)
    assert scalars["val_psnr"] == [5, 10] and scalars["train_loss"][-1] == 10, scalars
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


# a worker script: gathers, registers an atexit function and a finaliser probe, then calls exit_worker
WORKER = """
import atexit, os, sys
from pathlib import Path
import torch
import torch.distributed as dist
from ldct_clip.engine import exit_worker

out, rank = Path(sys.argv[1]), os.environ.get("RANK", "0")
if "TORCHELASTIC_RUN_ID" in os.environ:
    dist.init_process_group("gloo")
else:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
gathered = [torch.zeros(2) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, torch.full((2,), float(dist.get_rank())))
atexit.register(lambda: (out / f"atexit{rank}").write_text("ran"))


class Probe:  # its __del__ runs when the interpreter tears the module down
    def __del__(self):
        (out / f"finalized{rank}").write_text("yes")


probe = Probe()
print(f"rank {rank} gathered {[g.tolist() for g in gathered]}", end="")  # no newline, no flush
exit_worker()
(out / f"returned{rank}").write_text(str(dist.is_initialized()))
"""


def test_exit_worker_under_torchrun_runs_atexit_flushes_and_skips_interpreter_teardown(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    logs = tmp_path / "logs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([*TORCHRUN, "--standalone", "--nnodes=1", "--nproc_per_node=2", "--log-dir", str(logs),
                        "--redirects", "3", str(script), str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    stdout = {int(p.parent.name): p.read_text() for p in logs.rglob("stdout.log")}
    assert stdout == {0: "rank 0 gathered [[0.0, 0.0], [1.0, 1.0]]", 1: "rank 1 gathered [[0.0, 0.0], [1.0, 1.0]]"}
    for rank in (0, 1):
        assert (tmp_path / f"atexit{rank}").read_text() == "ran"  # logging and multiprocessing clean up here
        assert not (tmp_path / f"finalized{rank}").exists()  # left before the interpreter's teardown
        assert not (tmp_path / f"returned{rank}").exists()


def test_exit_worker_outside_torchrun_only_destroys_the_process_group(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if k != "TORCHELASTIC_RUN_ID"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout == "rank 0 gathered [[0.0, 0.0]]"
    assert (tmp_path / "returned0").read_text() == "False"  # returned, with the process group destroyed
    assert (tmp_path / "atexit0").read_text() == "ran"
    assert (tmp_path / "finalized0").read_text() == "yes"  # the normal teardown ran (the probe works)
