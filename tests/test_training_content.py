"""Training content with real-world statistics (ldct_clip.simulation) and the demo trainer's use of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ldct_clip.simulation.natural_content import NATURAL_IMAGES, load_natural_images, natural_slice, to_hu
from ldct_clip.simulation.textured_phantom import textured_body
from ldct_clip.simulation.textures import (
    interleave_mask,
    lumpy_background,
    lung_parenchyma,
    power_law_field,
    trabecular_bone,
    vessel_tree,
)
from ldct_clip.simulation.training_bank import ContentCrops, make_content_case

ROOT = Path(__file__).resolve().parent.parent


def _radial_psd_slope(field: np.ndarray) -> float:
    """Slope of log radial power against log frequency over the mid band."""
    n = field.shape[0]
    p = np.abs(np.fft.fft2(field)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    band = (f > 0.02) & (f < 0.25)
    return float(np.polyfit(np.log(f[band]), np.log(p[band]), 1)[0])


@pytest.mark.parametrize("beta", [1.5, 3.0])
def test_power_law_field_has_the_asked_spectrum(beta):
    field = power_law_field((256, 256), beta, np.random.default_rng(0))
    assert abs(field.mean()) < 1e-5 and abs(field.std() - 1) < 1e-4
    assert abs(_radial_psd_slope(field) + beta) < 0.2


def test_textures_are_bounded_and_reproducible():
    rng = lambda: np.random.default_rng(3)  # noqa: E731
    for make in (lambda r: lumpy_background((128, 128), r, 0.7), lambda r: interleave_mask((128, 128), r, 0.7),
                 lambda r: vessel_tree((128, 128), r, 0.5), lambda r: trabecular_bone((128, 128), r, 0.6)):
        a, b = make(rng()), make(rng())
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32 and np.isfinite(a).all()
    vessels = vessel_tree((128, 128), rng(), 0.5)
    assert vessels.min() >= 0 and vessels.max() == 1 and 0.005 < vessels.mean() < 0.6
    bone = trabecular_bone((128, 128), rng(), 0.6, bone_fraction=0.3)
    assert abs(bone.mean() - 0.3) < 0.03
    lung = lung_parenchyma((128, 128), rng(), 0.7)
    assert -950 < np.median(lung) < -750 and lung.std() > 15  # textured, not flat


def test_textured_body_is_a_plausible_slice():
    img, info = textured_body((256, 256), 1.0, np.random.default_rng(1), body_cm=18.0)
    assert img.shape == (256, 256) and img.dtype == np.float32
    assert (img[:5, :5] == -1000).all()  # an 18 cm body leaves the corners of a 25.6 cm field in air
    body = img > -900
    assert 0.2 < body.mean() < 0.6
    fat = ((img > -150) & (img < -50)).mean()
    soft = ((img > 0) & (img < 120)).mean()
    assert fat > 0.01 and soft > 0.05
    # texture: soft tissue is not flat (the procedural phantom's organs are, up to a few HU)
    assert img[(img > 20) & (img < 80)].std() > 5
    np.testing.assert_array_equal(img, textured_body((256, 256), 1.0, np.random.default_rng(1), body_cm=18.0)[0])


def test_natural_images_ship_with_scikit_image_and_are_not_ct():
    images = load_natural_images()
    assert set(images) == set(NATURAL_IMAGES) and len(images) >= 15
    assert all(a.ndim == 2 and 0 <= a.min() and a.max() <= 1 for a in images.values())
    assert not any("dcm" in n or "phantom" in n for n in NATURAL_IMAGES)


def test_to_hu_is_monotone_and_in_tissue_range():
    grey = np.linspace(0, 1, 1001, dtype=np.float32)
    for seed in range(20):
        hu, classes = to_hu(grey, np.random.default_rng(seed))
        assert np.all(np.diff(hu) >= -1e-3), classes
        assert -920 <= hu.min() and hu.max() <= 1300


def test_natural_slice_in_a_body():
    img, info = natural_slice((192, 192), 1.0, np.random.default_rng(5))
    assert info["image"] in NATURAL_IMAGES and NATURAL_IMAGES.index(info["image"]) % 5 != 4  # held-out images unused
    if info["body_cm"] < 17:
        assert (img[:3, :3] == -1000).all()
    assert img.min() >= -1000 and img.max() <= 1300


def test_content_case_noise_is_unit_sd_ct_noise():
    case = make_content_case(2, "textured")
    clean, unit = case["clean"][0].astype(np.float32), case["noise_unit"][0].astype(np.float32)
    tissue = (clean > -200) & (clean < 300)
    assert abs(unit[tissue].std() - 1) < 0.02
    assert 1 < float(case["sd_full"]) < 200
    # correlated FBP noise: its power vanishes towards zero frequency (white noise would be flat)
    n = unit.shape[0] // 2
    roi = unit[n - 48 : n + 48, n - 48 : n + 48]
    p = np.abs(np.fft.fft2(roi - roi.mean())) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(96), np.fft.fftfreq(96), indexing="ij"))
    assert p[(f > 0) & (f < 0.035)].mean() < 0.5 * p[(f > 0.1) & (f < 0.25)].mean()
    again = make_content_case(2, "textured")
    np.testing.assert_array_equal(case["clean"], again["clean"])


def test_content_crops_cover_the_noise_range(tmp_path):
    path = tmp_path / "case00000.npz"
    np.savez(path, **make_content_case(0, "natural"))
    data = ContentCrops([str(path)], crop=64, noise_sd=(10.0, 150.0), seed=0)
    it = iter(data)
    sds = []
    for _ in range(60):
        item = next(it)
        assert item["image"].shape == (1, 64, 64) and item["label"].shape == (1, 64, 64)
        diff = (item["image"] - item["label"]).numpy() * 4096.0
        label = item["label"].numpy() * 4096.0 - 1024.0
        tissue = (label > -200) & (label < 300)
        if tissue.mean() > 0.5:
            sds.append(diff[tissue].std())
    sds = np.array(sds)
    assert len(sds) > 10
    assert sds.min() < 25 and sds.max() > 80  # both ends of 10-150 HU are drawn
    first = next(iter(ContentCrops([str(path)], crop=64, seed=0)))
    np.testing.assert_array_equal(first["image"], next(iter(data))["image"])


def test_train_demo_on_content_banks_resumes(tmp_path):
    """The demo trainer makes content banks, trains on both, and the same command again resumes, not restarts."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    script = [sys.executable, str(ROOT / "scripts" / "train_demo.py")]
    for content in ("textured", "natural"):
        subprocess.run(script + ["data", "--workdir", str(tmp_path), "--bank", f"b-{content}", "--content", content,
                                 "--cases", "1", "--threads", "1"], check=True, env=env, capture_output=True)
    train = script + ["train", "--workdir", str(tmp_path), "--run", "r", "--bank", "b-textured", "b-natural",
                      "--iterations", "2", "--save-every", "1", "--batch", "2", "--crop", "32", "--threads", "1"]
    first = subprocess.run(train, check=True, env=env, capture_output=True, text=True)
    assert "resumed" not in first.stdout and "iteration 2/2" in first.stdout
    again = subprocess.run(train, check=True, env=env, capture_output=True, text=True)
    assert "resumed from" in again.stdout and "at iteration 2" in again.stdout
    wall = json.loads((tmp_path / "runs" / "r" / "wall_seconds.json").read_text())
    assert wall["iteration"] == 2
    settings = json.loads((tmp_path / "runs" / "r" / "settings.json").read_text())
    assert settings["bank_cases"] == 2 and settings["noise_sd"] == [10.0, 150.0]


def test_content_crops_towards_normal_dose(tmp_path):
    """target_sd: the label keeps normal-dose noise, and the input adds independent extra noise on top of it."""
    case = make_content_case(1, "textured")
    case["clean"] = np.full_like(case["clean"], 40)  # flat water-like slice: what is not 40 HU is noise
    path = tmp_path / "case00000.npz"
    np.savez(path, **case)
    items = iter(ContentCrops([str(path)], crop=64, noise_sd=(60.0, 60.0), seed=1, target_sd=(20.0, 20.0)))
    label_sd, extra_sd, corr = [], [], []
    for _ in range(30):
        item = next(items)
        label = item["label"].numpy()[0] * 4096.0 - 1024.0 - 40.0
        extra = item["image"].numpy()[0] * 4096.0 - 1024.0 - 40.0 - label
        label_sd.append(label.std())
        extra_sd.append(extra.std())
        corr.append(abs(np.corrcoef(label.ravel(), extra.ravel())[0, 1]))
    # unit noise has SD 1 over the slice's tissue, varying in space: medians near 20 and sqrt(60^2 - 20^2) = 56.6
    assert 10 < np.median(label_sd) < 30
    assert 30 < np.median(extra_sd) < 85
    assert abs(np.median(extra_sd) / np.median(label_sd) - 56.6 / 20) < 0.3
    assert np.median(corr) < 0.15  # independent realisations
    plain = next(iter(ContentCrops([str(path)], crop=64, noise_sd=(60.0, 60.0), seed=1)))
    assert np.allclose(plain["label"].numpy() * 4096.0 - 1024.0, 40.0, atol=0.01)  # default: noise-free label


def test_score_real_ct_caches_inputs_and_scores(tmp_path):
    """The fast model-selection score: inputs simulated once into the cache, the demo weights scored on them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "scripts" / "score_real_ct.py"), "demo", "--cache", str(tmp_path / "c"),
           "--slices", "CT_small.dcm", "--doses", "0.5", "--realisations", "1", "--json", str(tmp_path / "s.json")]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    cached = tmp_path / "c" / "ct_small_d050_r0.npz"
    stamp = cached.stat().st_mtime_ns
    # the network's output alone (noise_retention 0), as the #17 pilots were scored
    subprocess.run([*cmd[:-1], str(tmp_path / "raw.json"), "--noise-retention", "0"], check=True, env=env,
                   capture_output=True)
    assert cached.stat().st_mtime_ns == stamp  # reused, not simulated again
    with np.load(cached) as z:
        assert z["low"].shape == z["ref"].shape == (128, 128) and 15 < (z["low"] - z["ref"]).std() < 40
    scores = json.loads((tmp_path / "s.json").read_text())["demo"]
    assert 20 < scores["ct_small@0.50/psnr"] < 40 and 0.5 < scores["ct_small@0.50/ssim"] <= 1
    assert scores["mean/psnr"] == scores["ct_small@0.50/psnr"]
    assert scores["phantom_gain_db"] >= 2.0 and scores["chest_gain_db"] >= 1.0  # the shipped weights pass the CI checks
    # CT_small's reference carries its own noise and texture: giving back 15 % of the removed noise (the config's
    # default) scores about 1 dB better there than the network's output alone
    raw = json.loads((tmp_path / "raw.json").read_text())["demo"]
    assert scores["ct_small@0.50/psnr"] > raw["ct_small@0.50/psnr"] + 0.5
    assert scores["ct_small@0.50/ssim"] > raw["ct_small@0.50/ssim"] + 0.03


def test_train_demo_noise_conditioned_run_exports(tmp_path):
    """A bank at coarser pixels, a noise-conditioned run on it, and its export: the provenance says so and the file
    loads as a conditioned network."""
    from ldct_clip.checkpoints import load_checkpoint

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    script = [sys.executable, str(ROOT / "scripts" / "train_demo.py")]
    subprocess.run(script + ["data", "--workdir", str(tmp_path), "--bank", "b", "--content", "phantom", "--cases", "2",
                             "--threads", "1", "--pixel-mm", "1", "3", "--bank-seed", "7"],
                   check=True, env=env, capture_output=True)
    for case in sorted((tmp_path / "b").glob("case*.npz")):
        assert 1.0 <= float(np.load(case)["pixel_mm"]) <= 3.0
    subprocess.run(script + ["train", "--workdir", str(tmp_path), "--run", "c", "--bank", "b", "--iterations", "2",
                             "--save-every", "1", "--batch", "2", "--crop", "32", "--threads", "1",
                             "--noise-conditioning"], check=True, env=env, capture_output=True)
    out = tmp_path / "export" / "demo_ct.pt"
    out.parent.mkdir()
    subprocess.run(script + ["export", "--workdir", str(tmp_path), "--run", "c", "--out", str(out)], check=True, env=env,
                   capture_output=True)
    prov = json.loads(out.with_suffix(".json").read_text())
    assert prov["architecture"]["noise_conditioning"] is True
    assert "'b': [" in prov["training"]["data"]  # each bank's pixel range, measured on its cases
    assert load_checkpoint(out).noise_film is not None
    # --film-only: only the conditioning learns; every other weight stays that of --init-from
    subprocess.run(script + ["train", "--workdir", str(tmp_path), "--run", "f", "--bank", "b", "--iterations", "2",
                             "--save-every", "1", "--batch", "2", "--crop", "32", "--threads", "1", "--lr", "1e-2",
                             "--noise-conditioning", "--film-only", "--init-from", str(out)],
                   check=True, env=env, capture_output=True)
    before = dict(load_checkpoint(out).named_parameters())
    after = dict(load_checkpoint(tmp_path / "runs" / "f" / "final.pt").named_parameters())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("noise_film.") for k in changed), sorted(changed)[:5]
    # the BatchNorm statistics stay too: below the gate the model is exactly the one it started from
    before_buffers, after_buffers = (dict(load_checkpoint(p).named_buffers())
                                     for p in (out, tmp_path / "runs" / "f" / "final.pt"))
    assert all(torch.equal(before_buffers[k], after_buffers[k]) for k in before_buffers if "running_" in k)
    # a run exported as the noise expert of other weights: they answer below the gate, the run above it
    composite = tmp_path / "export" / "composite.pt"
    subprocess.run(script + ["export", "--workdir", str(tmp_path), "--run", "f", "--out", str(composite),
                             "--as-noise-expert-of", str(out), "--expert-gate", "15", "30"],
                   check=True, env=env, capture_output=True)
    prov = json.loads(composite.with_suffix(".json").read_text())
    assert prov["architecture"]["noise_expert_gate_hu"] == [15.0, 30.0]
    assert prov["noise_expert"]["weights_before"]["sha256"] == json.loads(out.with_suffix(".json").read_text())["sha256"]
    assert prov["noise_expert"]["training"]["trained_parameters"].startswith("noise_film.* only")
    model, base = load_checkpoint(composite).eval(), load_checkpoint(out).eval()
    torch.testing.assert_close(model.noise_expert_gate * 4096, torch.tensor([15.0, 30.0]))
    # the expert is stored in float16, the weights it is the expert of in float32 (exactly those of the file)
    stored = torch.load(composite, weights_only=True)
    run = load_checkpoint(tmp_path / "runs" / "f" / "final.pt").state_dict()
    for k, v in run.items():
        kept = stored[f"noise_expert.{k}"]
        assert torch.equal(kept, v.half() if v.dtype == torch.float32 else v), k
    assert all(v.dtype != torch.float16 for k, v in stored.items() if not k.startswith("noise_expert."))
    torch.testing.assert_close(model.noise_expert.state_dict(), {k: v.half().float() if v.is_floating_point() else v
                                                                 for k, v in run.items()})
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in base.state_dict().items())
