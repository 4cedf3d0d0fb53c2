"""Paired evaluation: tables, metric parity with compute_metrics, noise SD, figures, pairing errors, the CLI
and the bundle's evaluate.json merged over inference.json and train.json."""

from __future__ import annotations

import csv
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_model
from ldct_clip.checkpoints import load_checkpoint, network_overrides, save_checkpoint
from ldct_clip.cli import main
from ldct_clip.errors import InputError
from ldct_clip.evaluation.classical import denoise_nlm, estimate_noise_sd
from ldct_clip.ct.pairs import pair_cases
from ldct_clip.evaluation.scoring import evaluate_pairs
from ldct_clip.workflows import evaluate_cases
from ldct_clip.inference import denoise_volume
from ldct_clip.ct.io import find_cases, read_case
from ct_factory import ct_affine, write_nifti
from ldct_clip.metrics import compute_metrics, noise_sd
from ldct_clip.reporting.figures import save_line_plot
from ldct_clip.simulation.phantom import make_low_dose_example
from ldct_clip.engine.precision import prepare_model
from test_bundle import CONFIGS, TINY_OVERRIDES, monai_bundle

PROTOCOLS = ["paper", "redcnn", "ldct-benchmark-abdomen"]
METHODS = ["input", "network", "nlm"]
SHAPE = (128, 128, 3)  # 3.1 mm pixels: the smallest phantom with a uniform region for the noise ROI
ROI_SIZE = (128, 128)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two NIfTI pairs (ld/, nd/) of the phantom with projection-domain quarter-dose noise, and a checkpoint."""
    root = tmp_path_factory.mktemp("paired")
    ld, nd = make_low_dose_example(SHAPE, seed=0)
    affine = ct_affine((400 / 128, 400 / 128, 2.5))
    for name, flip in (("case_a", False), ("case_b", True)):
        write_nifti(root / "ld" / f"{name}.nii.gz", ld[:, :, ::-1] if flip else ld, affine)
        write_nifti(root / "nd" / f"{name}.nii.gz", nd[:, :, ::-1] if flip else nd, affine)
    save_checkpoint(tiny_model(), root / "tiny.pt")
    return root


@pytest.fixture(scope="module")
def report(data):
    return evaluate_cases(
        data / "ld", data / "nd", data / "out", ckpt_path=str(data / "tiny.pt"), roi_size=list(ROI_SIZE),
        precision="fp32", protocols=PROTOCOLS, classical=["nlm"], progress=False, print_summary=False,
        device=torch.device("cpu"), **network_overrides(data / "tiny.pt"),
    )


# -- tables ---------------------------------------------------------------------------------------------


def test_tables_have_the_expected_columns_and_rows(data, report):
    metric_cols = [f"{m}_{p}" for p in PROTOCOLS for m in ("psnr", "ssim", "rmse")]
    per_slice = read_csv(data / "out" / "per_slice.csv")
    assert list(per_slice[0]) == ["case", "slice", "method", *metric_cols, "noise_sd_hu"]
    assert len(per_slice) == 2 * SHAPE[2] * len(METHODS)
    assert {(r["case"], r["method"]) for r in per_slice} == {(c, m) for c in ("case_a", "case_b") for m in METHODS}

    per_case = read_csv(data / "out" / "per_case.csv")
    assert [(r["case"], r["method"]) for r in per_case] == [(c, m) for c in ("case_a", "case_b") for m in METHODS]
    for col in (*metric_cols, "noise_sd_hu", "reference_noise_sd_hu", "noise_roi", "roi_source", "seconds"):
        assert col in per_case[0], col
    assert all(r["roi_source"] == "auto" and r["n_slices"] == str(SHAPE[2]) for r in per_case)

    summary = read_csv(data / "out" / "summary.csv")
    assert [r["method"] for r in summary] == [*METHODS, "reference"]
    assert "psnr_paper_sd" in summary[0] and summary[0]["n_slices"] == str(2 * SHAPE[2])
    assert summary[-1]["psnr_paper"] == "" and float(summary[-1]["noise_sd_hu"]) > 0

    md = (data / "out" / "summary.md").read_text()
    for text in ("## paper", "## redcnn", "## ldct-benchmark-abdomen", "| network |", "| nlm |", "| reference |"):
        assert text in md
    assert md == report.markdown


def test_metrics_match_compute_metrics(data, report):
    ld = read_case(find_cases(data / "ld" / "case_a.nii.gz")[0]).hu
    nd = read_case(find_cases(data / "nd" / "case_a.nii.gz")[0]).hu
    model = prepare_model(load_checkpoint(data / "tiny.pt"), "cpu")
    outputs = {
        "input": ld,
        "network": denoise_volume(ld, model, roi_size=ROI_SIZE, precision="fp32", workflow="evaluate"),
        "nlm": denoise_nlm(ld, estimate_noise_sd(ld)),
    }
    rows = {r["method"]: r for r in read_csv(data / "out" / "per_case.csv") if r["case"] == "case_a"}
    for method, image in outputs.items():
        for protocol in PROTOCOLS:
            expected = compute_metrics(image, nd, protocol)
            for metric, value in expected.items():
                got = float(rows[method][f"{metric}_{protocol}"])
                assert got == pytest.approx(value, rel=1e-6, abs=1e-6), (method, protocol, metric)
    # the slice rows average to the case row
    slices = [r for r in report.per_slice if r["case"] == "case_a" and r["method"] == "nlm"]
    assert np.mean([r["ssim_paper"] for r in slices]) == pytest.approx(float(rows["nlm"]["ssim_paper"]), rel=1e-8)


def test_noise_sd_in_the_roi_for_input_output_and_reference(data, report):
    rows = {r["method"]: r for r in read_csv(data / "out" / "per_case.csv") if r["case"] == "case_a"}
    (x, y) = rows["input"]["noise_roi"].split(",")
    roi = tuple(slice(*map(int, part.split(":"))) for part in (x, y)) + (slice(None),)
    ld = read_case(find_cases(data / "ld" / "case_a.nii.gz")[0]).hu
    nd = read_case(find_cases(data / "nd" / "case_a.nii.gz")[0]).hu
    assert float(rows["input"]["noise_sd_hu"]) == pytest.approx(noise_sd(ld, roi), rel=1e-6)
    assert float(rows["input"]["reference_noise_sd_hu"]) == pytest.approx(noise_sd(nd, roi), rel=1e-6)
    # quarter dose: about twice the reference noise; non-local means removes part of it
    assert float(rows["input"]["noise_sd_hu"]) > 1.3 * float(rows["input"]["reference_noise_sd_hu"])
    assert float(rows["nlm"]["noise_sd_hu"]) < float(rows["input"]["noise_sd_hu"])
    assert math.isfinite(float(rows["network"]["noise_sd_hu"]))


def test_figures_are_valid_pngs(data, report):
    figures = data / "out" / "figures"
    names = sorted(p.name for p in figures.glob("case_a*.png"))
    assert names == [
        "case_a_nps.png", "case_a_slice1_C-600W1500.png", "case_a_slice1_C40W400.png", "case_a_slice1_diff.png"
    ]
    for name in names:
        with Image.open(figures / name) as img:
            img.verify()
        with Image.open(figures / name) as img:
            assert img.format == "PNG" and img.width > 200 and img.height > 100
            assert len(np.unique(np.asarray(img.convert("L")))) > 10  # drawn, not blank
    nps = read_csv(figures / "case_a_nps.csv")
    assert list(nps[0]) == ["frequency_per_mm", *METHODS]
    assert max(float(r["input"]) for r in nps) > max(float(r["nlm"]) for r in nps)


def test_given_noise_roi_and_no_figures(data, tmp_path):
    pairs = pair_cases(data / "ld", data / "nd")
    rep = evaluate_pairs(pairs[:1], tmp_path / "out", protocols=["paper"], classical=[], noise_roi=[60, 70, 40, 52],
                         write_png=False)
    row = rep.per_case[0]
    assert row["roi_source"] == "given" and row["noise_roi"] == "60:70,40:52"
    assert [r["method"] for r in rep.summary] == ["input", "reference"]
    assert not (tmp_path / "out" / "figures").exists()
    with pytest.raises(InputError, match="does not fit"):
        evaluate_pairs(pairs[:1], tmp_path / "out2", protocols=["paper"], classical=[], noise_roi=[0, 500, 0, 5])


def test_line_plot_linear_and_log(tmp_path):
    f = np.linspace(0, 0.5, 30)
    spectra = {"a": (f, 1e4 * np.exp(-20 * f)), "b": (f, f + 1e-3)}  # four decades: log axis picked
    for log_y, curves in ((False, {"a": (f, f * (0.5 - f))}), (None, spectra)):
        path = save_line_plot(tmp_path / f"plot_{log_y}.png", curves, title="t", xlabel="x", ylabel="y", log_y=log_y)
        with Image.open(path) as img:
            assert img.size == (720, 460)
            pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
        assert (pixels == (31, 119, 180)).all(axis=1).any()  # the first curve's colour was drawn


def test_bm3d_white_noise():
    # bm3d is in the test extra: this runs wherever the suite does
    from ldct_clip.evaluation.classical import denoise_bm3d

    rng = np.random.default_rng(0)
    clean = np.zeros((48, 48), np.float32)
    clean[12:36, 12:36] = 100.0
    noisy = clean + rng.normal(0, 20, clean.shape).astype(np.float32)
    out = denoise_bm3d(noisy, 20.0)
    assert out.shape == noisy.shape and np.std(out - clean) < 0.6 * np.std(noisy - clean)


def test_bm3d_row_with_the_estimated_psd(data, tmp_path):
    pairs = pair_cases(data / "ld" / "case_a.nii.gz", data / "nd" / "case_a.nii.gz")
    rep = evaluate_pairs(pairs, tmp_path / "out", protocols=["ldct-benchmark-abdomen"], classical=["nlm", "bm3d"],
                         write_png=False)
    rows = {r["method"]: r for r in rep.per_case}
    assert list(rows) == ["input", "nlm", "bm3d"]
    p = "ldct-benchmark-abdomen"
    # the LDCT's own correlated noise, estimated from it (the reference is a noisy normal dose: small gains)
    assert rows["bm3d"][f"psnr_{p}"] > rows["input"][f"psnr_{p}"] + 1.0
    assert rows["bm3d"]["noise_sd_hu"] < 0.5 * rows["input"]["noise_sd_hu"]
    assert "- BM3D noise PSD: estimated from each LDCT volume" in rep.markdown and "| bm3d |" in rep.markdown


def test_bm3d_is_skipped_with_a_note_where_not_installed(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # what `import bm3d` meets without the package
    pairs = pair_cases(data / "ld" / "case_a.nii.gz", data / "nd" / "case_a.nii.gz")
    rep = evaluate_pairs(pairs, tmp_path / "out", protocols=["paper"], classical=["bm3d"], write_png=False)
    assert [r["method"] for r in rep.per_case] == ["input"]
    assert "- note: BM3D skipped: the 'bm3d' denoiser needs the bm3d package" in rep.markdown


# -- pairing errors -------------------------------------------------------------------------------------


def test_unmatched_cases_are_named(data, tmp_path):
    nd = tmp_path / "nd"
    shutil.copytree(data / "nd", nd)
    (nd / "case_b.nii.gz").rename(nd / "case_c.nii.gz")
    with pytest.raises(InputError) as e:
        pair_cases(data / "ld", nd)
    assert "case_b" in str(e.value) and "case_c" in str(e.value) and "CSV" in str(e.value)


def test_single_cases_pair_whatever_their_names(data):
    pairs = pair_cases(data / "ld" / "case_a.nii.gz", data / "nd" / "case_b.nii.gz")
    assert [(p.name, p.ndct.name) for p in pairs] == [("case_a", "case_b")]


def test_shape_mismatch_is_caught_before_denoising(data, tmp_path):
    write_nifti(tmp_path / "nd" / "case_a.nii.gz", np.zeros((128, 120, 3)), ct_affine())
    write_nifti(tmp_path / "nd" / "case_b.nii.gz", np.zeros((128, 128, 3)), ct_affine())
    with pytest.raises(InputError, match=r"case_a \(LDCT \(128, 128, 3\), NDCT \(128, 120, 3\)\)"):
        pair_cases(data / "ld", tmp_path / "nd")


def test_pairs_csv(data, tmp_path):
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(f"ldct,ndct,name\n{data / 'ld' / 'case_b.nii.gz'},{data / 'nd' / 'case_b.nii.gz'},b\n")
    assert [p.name for p in pair_cases(pairs_csv=csv_path)] == ["b"]
    # relative paths are resolved against the CSV's folder
    (tmp_path / "d").mkdir()
    shutil.copy(data / "ld" / "case_a.nii.gz", tmp_path / "d" / "l.nii.gz")
    shutil.copy(data / "nd" / "case_a.nii.gz", tmp_path / "d" / "n.nii.gz")
    csv_path.write_text("ldct,ndct\nd/l.nii.gz,d/n.nii.gz\n")
    assert [(p.name, p.ndct.name) for p in pair_cases(pairs_csv=csv_path)] == [("l", "n")]
    csv_path.write_text("low,high\nd/l.nii.gz,d/n.nii.gz\n")
    with pytest.raises(InputError, match="columns 'ldct' and 'ndct'"):
        pair_cases(pairs_csv=csv_path)


def test_output_inside_an_input_is_refused(data):
    pairs = pair_cases(data / "ld", data / "nd")
    with pytest.raises(InputError, match="inside the input"):
        evaluate_pairs(pairs, data / "ld" / "case_a.nii.gz" / "out", classical=[])


# -- command line ---------------------------------------------------------------------------------------


def test_cli_evaluate_runs(data, tmp_path, capsys):
    rc = main(["evaluate", str(tmp_path / "out"), "--ldct", str(data / "ld" / "case_a.nii.gz"), "--ndct",
               str(data / "nd" / "case_a.nii.gz"), "--checkpoint", str(data / "tiny.pt"), "--roi-size", "128", "128",
               "--precision", "fp32", "--protocols", "paper", "--classical", "--no-png", "-q"])
    assert rc == 0
    assert "| network |" in capsys.readouterr().out
    assert [r["method"] for r in read_csv(tmp_path / "out" / "summary.csv")] == ["input", "network", "reference"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ndct", "{nd_other}"], "without an NDCT reference"),
        (["--ndct", "{nd_shape}"], "shapes (X, Y, Z) differ"),
        (["--ndct", "{nd}", "--protocols", "nope"], "Unknown metric protocol"),
        (["--ndct", "{nd}", "--classical", "wiener"], "unknown classical denoiser"),
        (["--ndct", "{nd}", "--checkpoint", "{missing}"], "no checkpoint at"),
    ],
)
def test_cli_bad_input_exits_2_without_traceback(data, tmp_path, capsys, args, message):
    write_nifti(tmp_path / "nd_other" / "case_a.nii.gz", np.zeros(SHAPE), ct_affine())
    write_nifti(tmp_path / "nd_other" / "case_x.nii.gz", np.zeros(SHAPE), ct_affine())
    write_nifti(tmp_path / "nd_shape" / "case_a.nii.gz", np.zeros(SHAPE), ct_affine())
    write_nifti(tmp_path / "nd_shape" / "case_b.nii.gz", np.zeros((128, 128, 4)), ct_affine())
    paths = {"nd": data / "nd", "nd_other": tmp_path / "nd_other", "nd_shape": tmp_path / "nd_shape",
             "missing": tmp_path / "missing.pt"}
    argv = ["evaluate", str(tmp_path / "out"), "--ldct", str(data / "ld"), "--checkpoint", str(data / "tiny.pt")]
    argv += [a.format(**paths) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "summary.csv").exists()


# -- bundle ---------------------------------------------------------------------------------------------


def test_bundle_evaluate_merged_over_inference(data, tmp_path):
    # evaluate.json reuses inference.json's components (dataset loading, inferer, postprocessing, weights) and adds
    # the pairs and the scoring: it runs merged over inference.json
    configs = f"['{CONFIGS / 'inference.json'}','{CONFIGS / 'evaluate.json'}']"
    r = monai_bundle(
        "run", "--config_file", configs, "--meta_file", str(CONFIGS / "metadata.json"),
        "--logging_file", str(CONFIGS / "logging.conf"), "--ldct_dir", str(data / "ld"), "--ndct_dir", str(data / "nd"),
        "--output_dir", str(tmp_path / "eval"), "--ckpt_path", str(data / "tiny.pt"), "--roi_size", "[128,128]",
        "--precision", "fp32", "--protocols", "['paper','ldct-benchmark-chest']", "--classical", "[]",
        "--write_png", "false", *TINY_OVERRIDES,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    rows = read_csv(tmp_path / "eval" / "per_case.csv")
    expected = [(c, m) for c in ("case_a", "case_b") for m in ("input", "network")]
    assert [(x["case"], x["method"]) for x in rows] == expected
    assert "psnr_ldct-benchmark-chest" in rows[0]
    assert not (tmp_path / "eval" / "figures").exists()  # `--write_png false` arrives as text and is parsed
    # the same numbers as the library run of the module fixture (same checkpoint, settings and data)
    lib = {(x["case"], x["method"]): x for x in read_csv(data / "out" / "per_case.csv")}
    for x in rows:
        assert float(x["psnr_paper"]) == pytest.approx(float(lib[(x["case"], x["method"])]["psnr_paper"]), rel=1e-6)


def test_bundle_evaluate_bad_pairs_exit_2(data, tmp_path):
    configs = f"['{CONFIGS / 'inference.json'}','{CONFIGS / 'evaluate.json'}']"
    (tmp_path / "nd").mkdir()
    shutil.copy(data / "nd" / "case_a.nii.gz", tmp_path / "nd" / "other.nii.gz")
    shutil.copy(data / "nd" / "case_b.nii.gz", tmp_path / "nd" / "case_b.nii.gz")
    r = monai_bundle(
        "run", "--config_file", configs, "--logging_file", str(CONFIGS / "logging.conf"),
        "--ldct_dir", str(data / "ld"), "--ndct_dir", str(tmp_path / "nd"), "--output_dir", str(tmp_path / "eval"),
        "--ckpt_path", str(data / "tiny.pt"), *TINY_OVERRIDES,
    )
    assert r.returncode == 2
    assert "case_a" in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr


def test_bundle_evaluate_uses_the_inference_window(data, tmp_path):
    # evaluate.json has no window of its own: `--hu_min` set for inference reaches the network of the evaluation
    configs = f"['{CONFIGS / 'inference.json'}','{CONFIGS / 'evaluate.json'}']"
    r = monai_bundle(
        "run", "--config_file", configs, "--logging_file", str(CONFIGS / "logging.conf"),
        "--ldct_dir", str(data / "ld"), "--ndct_dir", str(data / "nd"), "--output_dir", str(tmp_path / "eval"),
        "--ckpt_path", str(data / "tiny.pt"), "--roi_size", "[128,128]", "--precision", "fp32", "--hu_min", "-1000",
        "--protocols", "['paper']", "--classical", "[]", "--write_png", "false", *TINY_OVERRIDES,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[-1000, 3072]" in (tmp_path / "eval" / "summary.md").read_text()


def test_noise_estimate_of_a_slice_too_noisy_for_a_uniform_region():
    # at 10% dose no 8x8 window stays within the water band, so the estimate falls back to scikit-image's
    # wavelet estimator (PyWavelets): NLM on such a slice must still get a noise level, not an error
    noisy = np.random.default_rng(0).normal(0.0, 120.0, (96, 96))
    assert 100.0 < estimate_noise_sd(noisy) < 140.0
