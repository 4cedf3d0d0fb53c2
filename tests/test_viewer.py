"""The derived series in a real viewer: OHIF (the web viewer MONAI Label users work in) on a real Orthanc.

A CT series goes into Orthanc, ``ldct-clip pacs denoise``'s library call (pull over DICOMweb, denoise with the
shipped demo weights, STOW-RS back) adds the derived series to the study, and OHIF 3 -- its published static
app from the npm registry (``scripts/setup_viewer.sh``), served with Orthanc's DICOMweb from one origin
(tests/viewer_server.py) -- is opened by Debian's headless chromium (tests/ohif_check.cjs). The test checks
that the study list shows both series with their descriptions, and that the viewport displays the derived
series: its description, its Window Center/Width, and pixels that are the derived slice under that window,
the right way round and at its pixel spacing (not blank, not flipped, not stretched).

Skipped, saying why, when Orthanc, node, chromium or the npm packages are missing; set
``LDCT_CLIP_REQUIRE_VIEWER=1`` (CI does) to make that a failure. ``LDCT_CLIP_VIEWER_SCREENSHOT=PATH`` also copies
the viewer screenshot to PATH (how ``docs/ohif_derived_series.png`` was made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from ct_factory import phantom_hu, write_ct_series
from ldct_clip.checkpoints import network_overrides
from ldct_clip.ct.pacs import connect, denoise_series
from ldct_clip.weights import resolve_weights
from orthanc_server import orthanc  # noqa: F401  (the shared server fixture)
from viewer_server import ViewerServer, setup_viewer_folder

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
SHAPE, SPACING = (128, 96, 8), (0.8, 0.6, 2.5)  # unequal pixel spacing: a viewer ignoring it shows a stretched image
PATIENT = "Phantom, Synthetic"  # how OHIF's list shows ct_factory's PatientName Phantom^Synthetic
CHROMIUM = ("chromium", "chromium-browser")


def _unavailable(reason: str) -> None:
    if os.environ.get("LDCT_CLIP_REQUIRE_VIEWER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def viewer_folder() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        _unavailable("node/npm not installed (apt-get install nodejs npm; see scripts/system_deps.sh)")
    if not any(shutil.which(c) for c in CHROMIUM):
        _unavailable("chromium not installed (apt-get install chromium; see scripts/system_deps.sh)")
    found = setup_viewer_folder()
    if isinstance(found, str):
        _unavailable(found)
    return found


@pytest.fixture(scope="module")
def study(orthanc, tmp_path_factory):
    """Source and derived series in one study on Orthanc: (study uid, source uid, derived uid, derived folder)."""
    work = tmp_path_factory.mktemp("study")
    files = write_ct_series(work / "ct", phantom_hu(SHAPE, noise=25.0, seed=5), spacing=SPACING, series_number=2,
                            series_description="LDCT phantom")
    orthanc.upload(files)
    src = pydicom.dcmread(files[0], stop_before_pixels=True)
    demo = resolve_weights("demo")
    overrides = {"ckpt_path": str(demo), **network_overrides(demo), "precision": "fp32",
                 "device": torch.device("cpu"), "progress": False}
    result = denoise_series(orthanc.dicomweb, str(src.SeriesInstanceUID), study_uid=str(src.StudyInstanceUID),
                            overrides=overrides, keep=work / "pacs")
    assert result.instances == SHAPE[2]
    return str(src.StudyInstanceUID), str(src.SeriesInstanceUID), result.derived_series_uid, work / "pacs" / "denoised"


def _expected_display(ds: pydicom.Dataset) -> np.ndarray:
    """The slice as a viewer must show it: stored values -> HU (rescale) -> 8-bit gray under the series' own
    linear VOI window; (rows, columns)."""
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    return np.clip((hu - (center - width / 2)) / width, 0, 1) * 255


def _sample(canvas: np.ndarray, rows: int, cols: int, row_mm: float, col_mm: float) -> np.ndarray:
    """The canvas at the centre of each image pixel, with the image fitted (at its physical aspect) and centred,
    as viewers first display it; (rows, columns) gray values."""
    height, width = canvas.shape
    scale = min(width / (cols * col_mm), height / (rows * row_mm))  # canvas pixels per mm
    x0, y0 = (width - cols * col_mm * scale) / 2, (height - rows * row_mm * scale) / 2
    xs = np.clip(np.round(x0 + (np.arange(cols) + 0.5) * col_mm * scale - 0.5).astype(int), 0, width - 1)
    ys = np.clip(np.round(y0 + (np.arange(rows) + 0.5) * row_mm * scale - 0.5).astype(int), 0, height - 1)
    return canvas[np.ix_(ys, xs)].astype(np.float64)


def test_ohif_shows_the_study_and_displays_the_derived_series(orthanc, study, viewer_folder, tmp_path):
    study_uid, source_uid, derived_uid, derived_dir = study
    out = tmp_path / "ohif"
    with ViewerServer(viewer_folder / "ohif" / "dist", orthanc.dicomweb) as server:
        r = subprocess.run(
            ["node", str(TESTS / "ohif_check.cjs"), server.url, study_uid, derived_uid, PATIENT, str(out),
             shutil.which("chromium") or shutil.which("chromium-browser")],
            env={**os.environ, "NODE_PATH": str(viewer_folder / "node_modules")}, capture_output=True, text=True,
            timeout=400,
        )
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    assert r.returncode == 0, f"{r.stderr[-2000:]}\nsteps done: {report.get('steps')}\nfailed: {report.get('failed')}"
    if target := os.environ.get("LDCT_CLIP_VIEWER_SCREENSHOT"):
        shutil.copy(out / "viewer.png", target)
    assert report["failed"] == []  # every DICOMweb request OHIF made was answered

    # the study list: the study's series, original and derived, with their descriptions and instance counts
    listed = report["studylist"]
    series = re.findall(r"\nCT\n(.+?)\n\t?(\d+)", listed)
    assert sorted(series) == [("LDCT phantom", str(SHAPE[2])), ("LDCT phantom [ldct-clip]", str(SHAPE[2]))], listed
    assert "synthetic phantom" in listed  # the study description

    # the viewer: the derived series, its window, an axial image with the patient's right on the left
    shown = report["viewer"]
    assert "LDCT phantom [ldct-clip]" in shown
    files = {int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber): p for p in derived_dir.glob("*.dcm")}
    instance = re.search(r"I:\s*(\d+)\s*\((\d+)/(\d+)\)", shown)
    assert instance and int(instance.group(3)) == SHAPE[2], shown
    ds = pydicom.dcmread(files[int(instance.group(1))])
    assert ds.SeriesInstanceUID == derived_uid
    window = re.search(r"W:\s*(-?[\d.]+)\s*L:\s*(-?[\d.]+)", shown)
    assert (float(window.group(1)), float(window.group(2))) == (float(ds.WindowWidth), float(ds.WindowCenter))
    lines = shown.splitlines()
    assert "A" in lines and "R" in lines  # orientation markers: anterior at the top, right on the left

    # the pixels: not blank, and the derived slice under the series' window, not flipped, not stretched
    canvas = np.asarray(Image.open(out / "canvas.png").convert("L"))
    assert canvas.std() > 20 and (canvas < 10).mean() > 0.05 and (canvas > 245).mean() > 0.005
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
    got = _sample(canvas, int(ds.Rows), int(ds.Columns), row_mm, col_mm)
    expected = _expected_display(ds)
    error = np.abs(got - expected).mean()  # in gray levels of 255
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    wrong = {"mirrored left-right": expected[:, ::-1], "upside down": expected[::-1, :],
             "full range, no window": (hu - hu.min()) / (hu.max() - hu.min()) * 255,
             "a bone window (W 1500, L 300)": np.clip((hu - (300 - 750)) / 1500, 0, 1) * 255}
    errors = {name: float(np.abs(got - image).mean()) for name, image in wrong.items()}
    print(f"mean |displayed - expected| {error:.2f} gray levels; as if {errors}")
    assert error <= 3
    # the same comparison fails for a mirrored or flipped image or the raw (unwindowed) range: the check has teeth
    assert all(e > 4 * max(error, 1) for e in errors.values()), errors
    assert (out / "viewer.png").stat().st_size > 0 and (out / "studylist.png").stat().st_size > 0
    assert source_uid != derived_uid and connect(orthanc.dicomweb)  # both series stayed in the PACS
