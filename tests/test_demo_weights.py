"""The shipped demo weights denoise: a held-out phantom at 25 % dose gains >= 2 dB through the real path.

The demo weights are demo weights trained on synthetic data, not the paper's CLIP model
(``ldct_clip/pretrained/demo_ct.json``).  The quality check must fail when quality breaks, so the same check
runs on a wrong HU window, a damaged checkpoint and an untrained network, and must fail on each.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from ldct_clip.checkpoints import infer_config, load_checkpoint, save_checkpoint
from ldct_clip.errors import WeightsError
from ldct_clip.inference import denoise_volume
from ldct_clip.metrics import compute_metrics
from ldct_clip.networks import CLIPDenoiser
from ldct_clip.simulation.phantom import make_low_dose_example, make_phantom
from ldct_clip.weights import DEMO_LABEL, resolve_weights, weights_label

MIN_GAIN_DB = 2.0
PROTOCOL = "ldct-benchmark-abdomen"
SHAPE = (192, 192, 2)
SEED = 7000  # held out: training used seeds < 1200, validation 5000+, the benchmark 9000+


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray]:
    """(simulated 25 % dose, noise-free truth) of a held-out abdomen phantom, HU (X, Y, Z)."""
    low, _ = make_low_dose_example(SHAPE, 0.25, seed=SEED)
    return low, make_phantom(SHAPE, seed=SEED)


@pytest.fixture(scope="module")
def demo() -> CLIPDenoiser:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return load_checkpoint(resolve_weights("demo")).eval()


def gain_db(denoised: np.ndarray, low: np.ndarray, clean: np.ndarray) -> float:
    """PSNR (abdomen window) of the output minus that of the input, both against the truth."""
    return compute_metrics(denoised, clean, PROTOCOL)["psnr"] - compute_metrics(low, clean, PROTOCOL)["psnr"]


def test_shipped_weights_denoise(case, demo):
    low, clean = case
    out = denoise_volume(low, demo, precision="fp32")
    assert gain_db(out, low, clean) >= MIN_GAIN_DB


def _damaged(model: CLIPDenoiser, tmp_path: Path) -> CLIPDenoiser:
    """The shipped weights with the last conv's weights shuffled (a file that loads but is wrong)."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    w = state["last.weight"]
    perm = torch.randperm(w.numel(), generator=torch.Generator().manual_seed(0))
    state["last.weight"] = w.flatten()[perm].reshape(w.shape)
    broken = CLIPDenoiser(**infer_config(state))
    broken.load_state_dict(state)
    return load_checkpoint(save_checkpoint(broken, tmp_path / "damaged.pt")).eval()


@pytest.mark.parametrize("fault", ["wrong_window", "damaged_checkpoint", "untrained"])
def test_quality_check_fails_when_quality_breaks(case, demo, fault, tmp_path):
    low, clean = case
    if fault == "wrong_window":  # the network trained on [-1024, 3072] HU fed another convention's window
        out = denoise_volume(low, demo, precision="fp32", hu_window=(-1000.0, 1000.0))
    elif fault == "damaged_checkpoint":
        out = denoise_volume(low, _damaged(demo, tmp_path), precision="fp32")
    else:
        torch.manual_seed(0)
        out = denoise_volume(low, CLIPDenoiser(layers=[1, 1, 1, 1], width=demo.encoder.width).eval(), precision="fp32")
    assert gain_db(out, low, clean) < MIN_GAIN_DB


def test_truncated_checkpoint_is_refused(tmp_path):
    data = resolve_weights("demo").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "cut.pt")


def test_cli_denoise_with_demo_weights(case, tmp_path, caplog):
    """``ldct-clip denoise --weights demo`` on a NIfTI file: the written volume gains >= 2 dB too."""
    from ldct_clip.cli import main
    from ct_factory import write_nifti

    low, clean = case
    src = write_nifti(tmp_path / "in" / "case.nii.gz", np.rint(low))
    with caplog.at_level("INFO"):
        assert main(["denoise", str(src), str(tmp_path / "out"), "--weights", "demo", "--precision", "fp32",
                     "--no-png", "-q"]) == 0
    assert DEMO_LABEL in caplog.text
    out = np.asarray(nib.load(tmp_path / "out" / "case.nii.gz").dataobj, dtype=np.float32)
    assert out.shape == low.shape
    assert gain_db(out, np.rint(low), clean) >= MIN_GAIN_DB


def test_cli_refuses_weights_and_checkpoint_together(tmp_path, capsys):
    from ldct_clip.cli import main

    assert main(["denoise", str(tmp_path), str(tmp_path / "o"), "--weights", "demo", "--checkpoint", "x.pt"]) == 2
    assert "not both" in capsys.readouterr().err


def test_shipped_file_matches_its_provenance():
    path = resolve_weights("demo")
    prov = json.loads(path.with_suffix(".json").read_text())
    assert path.stat().st_size <= 5 * 1024 * 1024
    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["label"] == DEMO_LABEL and weights_label(path) == DEMO_LABEL
    assert weights_label(path.with_name("other.pt")) is None
    for training in [prov["training"]] + ([prov["noise_expert"]["training"]] if "noise_expert" in prov else []):
        for key in ("commands", "data", "seeds", "iterations", "wall_seconds"):
            assert training[key], key
    # plain tensors only: loads with weights_only=True (no pickled code runs)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_bundle_runs_demo_weights_by_name(case, tmp_path):
    """``python -m monai.bundle run ... --weights demo``: the network is shaped after the demo weights, the log
    names them with their label, and the written volume is denoised."""
    from ct_factory import write_nifti
    from test_bundle import run_inference

    low, clean = case
    write_nifti(tmp_path / "in" / "case.nii.gz", np.rint(low))
    r = run_inference(tmp_path / "in", tmp_path / "out", "--weights", "demo", "--precision", "fp32",
                      "--write_png", "false")
    assert r.returncode == 0, r.stdout + r.stderr
    assert DEMO_LABEL in r.stdout + r.stderr
    out = np.asarray(nib.load(tmp_path / "out" / "case.nii.gz").dataobj, dtype=np.float32)
    assert gain_db(out, np.rint(low), clean) >= MIN_GAIN_DB
