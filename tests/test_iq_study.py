"""The simulated task-based study on a tiny configuration (small phantom, few realisations, the demo weights
through the bundle's pipeline), and the ``ldct-clip lcd`` / ``ldct-clip iq`` commands."""

from __future__ import annotations

import csv
import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ldct_clip.checkpoints import network_overrides
from ldct_clip.ct.io import write_nifti
from ldct_clip.simulation.iq_phantoms import CCT189_INSERTS, TTF_INSERTS, insert_centre_px, make_cct189, make_ttf_phantom
from ldct_clip.evaluation.iq_study import IQSettings, run_iq_study
from ldct_clip.simulation.low_dose import simulate_low_dose
from ldct_clip.errors import InputError
from ldct_clip.metrics.detectability import LCD_COLUMNS, find_inserts
from ldct_clip.metrics.resolution import task_transfer_function
from ldct_clip.evaluation.iq_report import write_iq_report
from ldct_clip.weights import resolve_weights
from ldct_clip.workflows import denoise_cases

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(size=128, pixel_size_mm=1.8, nps_roi_px=32)


def test_cct189_phantom_follows_the_mita_geometry():
    px = 0.5
    truth = make_cct189(480, px, blur_fwhm_mm=0.0)
    found = find_inserts(truth, px)
    assert sorted((round(i.diameter_mm), i.contrast_hu) for i in found) == [(3, 14.0), (5, 7.0), (7, 5.0), (10, 3.0)]
    for ins in CCT189_INSERTS:
        ci, cj = insert_centre_px(ins, 480, px)
        assert math.hypot(ci - 239.5, cj - 239.5) * px == pytest.approx(40.0)
        match = min(found, key=lambda f: math.hypot(f.centre_px[0] - ci, f.centre_px[1] - cj))
        assert match.centre_px == pytest.approx((ci, cj), abs=0.3) and match.contrast_hu == ins.hu
    absent = make_cct189(480, px, signal=False, blur_fwhm_mm=0.0)
    assert set(np.unique(absent)) == {-1000.0, 0.0} or np.abs(absent[200:280, 200:280]).max() == 0
    with pytest.raises(InputError, match="does not hold"):
        make_cct189(128, 1.0)


@pytest.fixture(scope="module")
def study():
    demo = str(resolve_weights("demo"))
    overrides = {"ckpt_path": demo, **network_overrides(demo), "device": torch.device("cpu"), "precision": "fp32",
                 "progress": False}
    settings = IQSettings(doses=(0.25, 1.0), realisations=6, ttf_realisations=2, readers=3, bootstrap=20,
                          observers=("LG_CHO", "NPW"), **SMALL)
    denoise = functools.partial(denoise_cases, **overrides, write_dicom=False, write_png=False)
    return run_iq_study(settings, denoise=denoise, progress=False)


def test_study_runs_every_method_through_its_pipeline(study):
    expected = ["fbp", "model", "nlm"] + (["bm3d"] if not study.notes else [])
    assert study.methods == expected
    if study.notes:
        assert "BM3D skipped" in study.notes[0]
    assert len(study.lcd) == len(study.methods) * 2 * len(CCT189_INSERTS) * 2
    assert len(study.ttf) == len(study.methods) * 2 * len(TTF_INSERTS)
    noise = {(r["method"], r["dose"]): r["noise_hu"] for r in study.nps}
    # the quantum law for FBP: a quarter of the dose doubles the noise SD
    assert noise[("fbp", 0.25)] / noise[("fbp", 1.0)] == pytest.approx(2.0, rel=0.2)
    for dose in (0.25, 1.0):
        assert noise[("model", dose)] < 0.7 * noise[("fbp", dose)]  # the demo model denoises
        assert noise[("nlm", dose)] < 0.7 * noise[("fbp", dose)]
    # the model's images are the inputs denoised in place (no flip, no shift): close to the phantom
    truth = make_cct189(SMALL["size"], SMALL["pixel_size_mm"])
    body = truth > -500
    err_model = np.abs(study.examples[("model", 0.25)] - truth)[body].mean()
    err_fbp = np.abs(study.examples[("fbp", 0.25)] - truth)[body].mean()
    assert err_model < err_fbp


def test_fbp_ttf_is_the_phantoms_resolution(study):
    """The simulator adds noise only, so FBP's TTF is that of the noise-free phantom (its scanner blur)."""
    s = study.settings
    clean = make_ttf_phantom(s.size, s.pixel_size_mm)
    for ins in TTF_INSERTS:
        if abs(ins.hu) < 300:
            continue  # two noisy realisations of the low-contrast edges are too few to compare closely
        ref = task_transfer_function(clean, insert_centre_px(ins, s.size, s.pixel_size_mm), ins.diameter_mm / 2,
                                     s.pixel_size_mm)
        f, ttf = study.ttf_curves[("fbp", 1.0, ins.hu)]
        np.testing.assert_allclose(f, ref.f)
        np.testing.assert_allclose(ttf, ref.ttf, atol=0.05)


def test_report_files(study, tmp_path):
    files = write_iq_report(study, tmp_path, {"model": "demo"})
    names = {p.name for p in files}
    assert names == {"lcd.csv", "nps.csv", "nps_curves.csv", "ttf.csv", "ttf_curves.csv", "summary.md",
                     "dprime_vs_dose.png", "nps.png", "ttf.png", "panel.png"}
    with open(tmp_path / "lcd.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["method", "dose", *LCD_COLUMNS]
    assert all(float(r["dprime_sd"]) >= 0 for r in rows)
    text = (tmp_path / "summary.md").read_text()
    assert "d' mean ± SD (95% CI)" in text and "f50" in text


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ldct_clip", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_lcd_command_on_nifti_stacks(tmp_path):
    px = 1.8
    truth = make_cct189(128, px)
    absent_truth = make_cct189(128, px, signal=False)
    n = 12
    present = simulate_low_dose(np.repeat(truth[:, :, None], n, 2), 1.0, noise_model="poisson", pixel_size_mm=px,
                                incident_flux=3e6, seed=1)
    absent = simulate_low_dose(np.repeat(absent_truth[:, :, None], n, 2), 1.0, noise_model="poisson",
                               pixel_size_mm=px, incident_flux=3e6, seed=2)
    affine = np.diag([px, px, 1.0, 1.0])
    for name, arr in (("p", present), ("a", absent), ("t", truth[:, :, None])):
        write_nifti(arr, affine, tmp_path / f"{name}.nii.gz")
    out = tmp_path / "lcd"
    res = _run_cli("lcd", "--present", "p.nii.gz", "--absent", "a.nii.gz", "--truth", "t.nii.gz", "--out", str(out),
                   "--observer", "LG_CHO", "NPW", "--readers", "4", "--bootstrap", "20", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with open(out / "lcd.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:7] == ["insert_hu", "insert_diameter_mm", "observer", "auc_mean", "auc_sd", "dprime_mean",
                                 "dprime_sd"]
    contrasts = sorted({float(r["insert_hu"]) for r in rows})
    # the 3 mm insert spans 1.7 pixels of 1.8 mm: blurred, its peak stays below the nominal 14 HU
    assert contrasts[:3] == [3.0, 5.0, 7.0] and 9.0 < contrasts[3] <= 14.0
    assert len(rows) == 8
    assert "| insert | observer |" in (out / "lcd.md").read_text()
    # a missing file: one line, exit 2, nothing written
    bad = _run_cli("lcd", "--present", "missing.nii.gz", "--absent", "a.nii.gz", "--truth", "t.nii.gz", "--out",
                   str(tmp_path / "bad"), cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_iq_command_tiny(tmp_path):
    res = _run_cli("iq", "--weights", "demo", "--out", "iq", "--doses", "0.5", "--realisations", "4",
                   "--ttf-realisations", "1", "--readers", "2", "--bootstrap", "10", "--iq-classical", "-q",
                   "--precision", "fp32", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "iq" / "summary.md").is_file() and (tmp_path / "iq" / "dprime_vs_dose.png").is_file()
    with open(tmp_path / "iq" / "lcd.csv", newline="") as fh:
        assert {r["method"] for r in csv.DictReader(fh)} == {"fbp", "model"}
    no_model = _run_cli("iq", "--out", "iq2", "--realisations", "4", cwd=tmp_path)
    assert no_model.returncode == 2 and "--weights demo" in no_model.stderr


def test_evaluate_with_iq_adds_the_study(tmp_path):
    """``ldct-clip evaluate ... --iq`` writes the task-based study beside the paired metrics."""
    from ldct_clip.simulation.phantom import make_phantom

    volume = make_phantom((96, 96, 2), seed=1)
    low = simulate_low_dose(volume, 0.25, noise_model="poisson", pixel_size_mm=400 / 96, seed=0)
    affine = np.diag([400 / 96, 400 / 96, 2.5, 1.0])
    write_nifti(volume, affine, tmp_path / "ndct" / "c1.nii.gz")
    write_nifti(low, affine, tmp_path / "ldct" / "c1.nii.gz")
    res = _run_cli("evaluate", "report", "--ldct", "ldct", "--ndct", "ndct", "--checkpoint",
                   str(resolve_weights("demo")), "--classical", "--protocols", "paper", "--no-png", "--iq",
                   "--doses", "0.5", "--realisations", "4", "--ttf-realisations", "1", "--readers", "2",
                   "--bootstrap", "10", "--iq-classical", "-q", "--precision", "fp32", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "report" / "summary.csv").is_file()
    with open(tmp_path / "report" / "iq" / "lcd.csv", newline="") as fh:
        assert {r["method"] for r in csv.DictReader(fh)} == {"fbp", "model"}
