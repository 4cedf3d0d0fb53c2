"""The bundle config is the single source of defaults (#21): ``ldct-clip denoise`` follows an edited
``inference.json``, an option given on the command line still wins, and ``denoise_volume`` runs the config's
own components (the bundle's voxels, whole HU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from conftest import denoise
from ct_factory import phantom_hu, write_ct_series
from ldct_clip import bundle_root
from ldct_clip.checkpoints import load_checkpoint
from ldct_clip.inference import denoise_volume
from tolerances import assert_rounded_close

BONE = 1500.0  # HU of an insert: inside the shipped window [-1024, 3072], outside the edited one


def cli(*args: str) -> subprocess.CompletedProcess:
    """``ldct-clip`` in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "ldct_clip", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def edited_bundle(tmp_path: Path, **defaults: object) -> Path:
    """A copy of the installed bundle with ``defaults`` written into its ``configs/inference.json``."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_root(), copy)
    path = copy / "configs" / "inference.json"
    config = json.loads(path.read_text())
    for key, value in defaults.items():
        assert key in config, key  # an edit of an existing default, not a new id
        config[key] = value
    path.write_text(json.dumps(config, indent=4))
    return copy


def run(tmp_path: Path, name: str, src: Path, ckpt: Path, *extra: str) -> tuple[np.ndarray, pydicom.Dataset]:
    out = tmp_path / name
    r = cli("denoise", str(src), str(out), "--checkpoint", str(ckpt), "--device", "cpu", "--precision", "fp32",
            "--no-png", "-q", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    [nii] = out.glob("*.nii.gz")
    [first, *_] = sorted(out.glob("*_dicom/*.dcm"))
    return np.asarray(nib.load(nii).dataobj), pydicom.dcmread(first)


def test_denoise_follows_the_configs_defaults_and_given_options_win(tmp_path, tiny_checkpoint):
    hu = phantom_hu((48, 40, 3), seed=7)
    hu[20:28, 16:24] = BONE
    write_ct_series(tmp_path / "in" / "case", hu)
    copy = edited_bundle(tmp_path, hu_max=1000, series_description_suffix=" [edited default]")

    shipped, shipped_dcm = run(tmp_path, "shipped", tmp_path / "in", tiny_checkpoint)
    edited, edited_dcm = run(tmp_path, "edited", tmp_path / "in", tiny_checkpoint, "--bundle", str(copy))
    given, given_dcm = run(tmp_path, "given", tmp_path / "in", tiny_checkpoint, "--bundle", str(copy),
                           "--hu-max", "3072")

    # the shipped window denoises the insert; the edited window (hu_max 1000) keeps it as it came in
    assert np.abs(shipped[20:28, 16:24].astype(np.float64) - BONE).max() > 5
    np.testing.assert_array_equal(edited[20:28, 16:24], BONE)
    assert shipped_dcm.SeriesDescription.endswith("[ldct-clip]")
    assert edited_dcm.SeriesDescription.endswith("[edited default]")
    # the option given on the command line wins over the copy's default; the other edit still holds
    np.testing.assert_array_equal(given, shipped)
    assert given_dcm.SeriesDescription.endswith("[edited default]")


@pytest.mark.parametrize("argv", [["denoise", "IN", "OUT"], ["evaluate", "OUT"], ["iq"],
                                  ["pacs", "denoise", "--url", "http://127.0.0.1:1/dicom-web", "--series", "1.2"]])
def test_options_not_given_are_not_overrides(argv):
    # every subcommand that runs a bundle config: a bare command line overrides none of the config's settings
    from ldct_clip.cli import build_parser
    from ldct_clip.commands import EVALUATE_IDS, given, inference_overrides

    args = build_parser().parse_args(argv)
    assert inference_overrides(args) == {"checkpoint_option": "--checkpoint"}  # how messages name the option
    assert given(args, (*EVALUATE_IDS, "write_dicom", "shard", "skip_complete")) == {}
    given_args = build_parser().parse_args([*argv, "--hu-max", "1000", "--no-channels-last", "-q",
                                            "--noise-retention", "0.3"])
    assert inference_overrides(given_args) == {"checkpoint_option": "--checkpoint", "hu_max": 1000.0,
                                               "channels_last": False, "progress": False, "noise_retention": 0.3}


@pytest.mark.parametrize(("option", "value"), [
    ("--noise-retention", "1.5"), ("--noise-retention", "-0.1"), ("--noise-retention", "nan"),
    ("--noise-retention", "half"), ("--noise-retention-max-sd", "0"), ("--noise-retention-max-sd", "-5"),
    ("--noise-retention-max-sd", "nan"), ("--noise-retention-max-sd", "lots"),
])
def test_noise_retention_out_of_range_is_a_usage_error(tmp_path, option, value):
    r = cli("denoise", str(tmp_path), str(tmp_path / "out"), option, value)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    bundle_id = option.removeprefix("--").replace("-", "_")
    assert option in r.stderr and f"{bundle_id} must be" in r.stderr
    assert not (tmp_path / "out").exists()


def test_noise_retention_cap_none_is_no_cap():
    from ldct_clip.cli import build_parser
    from ldct_clip.commands import inference_overrides

    args = build_parser().parse_args(["denoise", "in", "out", "--noise-retention-max-sd", "none"])
    assert inference_overrides(args)["noise_retention_max_sd"] == float("inf")
    args = build_parser().parse_args(["denoise", "in", "out", "--noise-retention-max-sd", "8"])
    assert inference_overrides(args)["noise_retention_max_sd"] == 8.0


def test_help_shows_the_configs_default_without_overriding_it():
    r = cli("denoise", "--help")
    assert r.returncode == 0 and "default: 3072 (inference.json's hu_max)" in " ".join(r.stdout.split())


def test_denoise_volume_runs_the_bundles_components(tmp_path, tiny_checkpoint):
    # the same voxels as the bundle's run on the same input: whole HU, the window's outside kept
    hu = phantom_hu((61, 47, 3), seed=3).astype(np.float32)
    hu[:5] = -3024.0  # scanner padding, below the window
    hu[30:34, 20:24] = 3500.0  # metal, above it
    src = tmp_path / "in" / "case.nii.gz"
    src.parent.mkdir()
    nib.save(nib.Nifti1Image(hu.astype(np.int16), np.diag([0.7, 0.7, 2.5, 1.0])), src)
    [result] = denoise(src.parent, tmp_path / "out", tiny_checkpoint, precision="fp32", write_png=False,
                       write_dicom=False)
    assert result.ok
    bundle = np.asarray(nib.load(tmp_path / "out" / "case.nii.gz").dataobj)
    # the bundle folds BatchNorm into the convs (another kernel): whole HU may flip by one near .5
    got = denoise_volume(hu, load_checkpoint(tiny_checkpoint).eval(), roi_size=(64, 64), device="cpu")
    np.testing.assert_array_equal(got, np.round(got))
    np.testing.assert_array_equal(got[:5], -3024.0)
    np.testing.assert_array_equal(got[30:34, 20:24], 3500.0)
    assert_rounded_close(got, bundle, what="denoise_volume vs the bundle's run")


def test_denoise_volume_follows_an_edited_config(tmp_path, tiny_checkpoint):
    hu = phantom_hu((48, 40, 2), seed=1).astype(np.float32)
    hu[20:28, 16:24] = BONE
    model = load_checkpoint(tiny_checkpoint).eval()
    shipped = denoise_volume(hu, model, roi_size=(64, 64))
    edited = denoise_volume(hu, model, roi_size=(64, 64), bundle=edited_bundle(tmp_path, hu_max=1000))
    assert np.abs(shipped[20:28, 16:24] - BONE).max() > 5
    np.testing.assert_array_equal(edited[20:28, 16:24], BONE)
    # the evaluation's chain scores the HU before rounding
    unrounded = denoise_volume(hu, model, roi_size=(64, 64), workflow="evaluate")
    assert (unrounded != np.round(unrounded)).any()
    np.testing.assert_array_equal(np.round(unrounded), shipped)
