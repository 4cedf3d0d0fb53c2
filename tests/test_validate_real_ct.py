"""scripts/validate_real_ct.py: the two real validation slices, read in HU, simulated low dose and scored."""

from __future__ import annotations

import csv
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "validate_real_ct.py"


def load_script():
    spec = importlib.util.spec_from_file_location("validate_real_ct", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("file_name", ["CT_small.dcm", "bad_sequence.dcm"])
def test_validation_slices_in_hu_and_monai_order(file_name):
    script = load_script()
    hu, px, path = script.read_validation_slice(file_name)
    ds = pydicom.dcmread(get_testdata_file(file_name))
    np.testing.assert_array_equal(hu, apply_modality_lut(ds.pixel_array, ds).T.astype(np.float32))
    assert px == pytest.approx(float(ds.PixelSpacing[1]))
    assert hu.shape == (ds.Columns, ds.Rows) and -1100 < hu.min() < -800  # air in HU, not stored values
    with pytest.raises(ValueError, match="not a validation slice"):
        script.read_validation_slice("MR_small.dcm")


def test_validation_run_on_ct_small(tmp_path):
    out = tmp_path / "val"
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--slices", "CT_small.dcm", "--doses", "0.25",
                        "--realisations", "1"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(out / "validation.csv", newline="") as fh:
        rows = {row["method"]: row for row in csv.DictReader(fh)}
    assert list(rows) == ["input", "demo", "NLM (tuned)", "BM3D (noise PSD)"]
    psnr = {m: float(row["psnr_abd"]) for m, row in rows.items()}
    assert psnr["NLM (tuned)"] > psnr["input"] + 1.0 and psnr["BM3D (noise PSD)"] > psnr["NLM (tuned)"]
    # the simulator is calibrated to the slice's own noise: quarter dose adds sqrt(1/0.25 - 1) times it
    row = rows["input"]
    assert float(row["added_noise_sd"]) == pytest.approx(math.sqrt(3) * float(row["real_noise_sd"]), rel=0.15)
    md = (out / "validation.md").read_text()
    assert "ct_small 25%: demo vs tuned NLM" in md and "distance to BM3D" in md
    panel = out / "ct_small_panel.png"
    assert panel.stat().st_size < 300_000
    with Image.open(panel) as img:
        assert img.format == "PNG" and img.width > 5 * 256 and img.height == 256
