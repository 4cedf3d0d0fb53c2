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

from ct_factory import phantom_hu, write_ct_series, write_enhanced_ct
from ldct_clip.checkpoints import network_overrides
from ldct_clip.ct.io import find_cases, read_case
from ldct_clip.pacs import denoise_series
from ldct_clip.weights import resolve_weights
from orthanc_server import Orthanc, missing_reason
from viewer_server import ViewerServer, setup_viewer_folder

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
SHAPE, SPACING = (128, 96, 8), (0.8, 0.6, 2.5)  # unequal pixel spacing: a viewer ignoring it shows a stretched image
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


KINDS = {  # kind of source series: (writer, patient as OHIF's list shows it, series description)
    "single-frame": ("series", "Phantom, Synthetic", "LDCT phantom"),
    "enhanced multi-frame": ("enhanced", "Phantom, Enhanced", "LDCT enhanced"),
}


@pytest.fixture(scope="module", params=list(KINDS))
def study(request, tmp_path_factory):
    """Source and derived series in one study on a fresh Orthanc: (kind, server, study uid, derived uid,
    derived folder)."""
    kind = request.param
    work = tmp_path_factory.mktemp("study")
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = Orthanc(work / "orthanc").start()
    try:
        hu = phantom_hu(SHAPE, noise=25.0, seed=5)
        if KINDS[kind][0] == "series":
            files = write_ct_series(work / "ct", hu, spacing=SPACING, series_number=2, series_description=KINDS[kind][2])
        else:  # frames stored out of order, per-frame rescale: the writer must put them in order for the viewer
            files = [write_enhanced_ct(work / "ct" / "enhanced.dcm", hu, spacing=SPACING, intercept=[-1024.0] * SHAPE[2],
                                       frame_order=[3, 1, 0, 2, 7, 5, 4, 6], series_description=KINDS[kind][2])]
        server.upload(files)
        src = pydicom.dcmread(files[0], stop_before_pixels=True)
        demo = resolve_weights("demo")
        overrides = {"ckpt_path": str(demo), **network_overrides(demo), "precision": "fp32",
                     "device": torch.device("cpu"), "progress": False}
        result = denoise_series(server.dicomweb, str(src.SeriesInstanceUID), study_uid=str(src.StudyInstanceUID),
                                overrides=overrides, keep=work / "pacs")
        assert result.instances == len(files)
        yield kind, server, str(src.StudyInstanceUID), result.derived_series_uid, work / "pacs" / "denoised"
    finally:
        server.stop()


def _window(ds: pydicom.Dataset) -> tuple[float, float]:
    """(center, width) of a CT image, or of an enhanced image's shared Frame VOI LUT functional group."""
    voi = ds
    if "WindowCenter" not in ds:
        voi = ds.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence[0]
    first = lambda v: float(v[0] if isinstance(v, pydicom.multival.MultiValue) else v)  # noqa: E731
    return first(voi.WindowCenter), first(voi.WindowWidth)


def _spacing(ds: pydicom.Dataset) -> tuple[float, float]:
    """(row, column) spacing in mm."""
    if "PixelSpacing" in ds:
        return tuple(float(v) for v in ds.PixelSpacing)
    return tuple(float(v) for v in ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing)


def _shown_z(ds: pydicom.Dataset, index: int) -> float:
    """Patient z (mm) of the image the viewer shows: the instance itself, or frame ``index`` (1-based) of a
    multi-frame instance."""
    if "PerFrameFunctionalGroupsSequence" in ds:
        return float(ds.PerFrameFunctionalGroupsSequence[index - 1].PlanePositionSequence[0].ImagePositionPatient[2])
    return float(ds.ImagePositionPatient[2])


def _display(hu_rows_cols: np.ndarray, center: float, width: float) -> np.ndarray:
    """HU as a viewer must show them under a linear VOI window: 8-bit gray, 0-255."""
    return np.clip((hu_rows_cols - (center - width / 2)) / width, 0, 1) * 255


def _sample(canvas: np.ndarray, rows: int, cols: int, row_mm: float, col_mm: float) -> np.ndarray:
    """The canvas at the centre of each image pixel, with the image fitted (at its physical aspect) and centred,
    as viewers first display it; (rows, columns) gray values."""
    height, width = canvas.shape
    scale = min(width / (cols * col_mm), height / (rows * row_mm))  # canvas pixels per mm
    x0, y0 = (width - cols * col_mm * scale) / 2, (height - rows * row_mm * scale) / 2
    xs = np.clip(np.round(x0 + (np.arange(cols) + 0.5) * col_mm * scale - 0.5).astype(int), 0, width - 1)
    ys = np.clip(np.round(y0 + (np.arange(rows) + 0.5) * row_mm * scale - 0.5).astype(int), 0, height - 1)
    return canvas[np.ix_(ys, xs)].astype(np.float64)


def test_ohif_shows_the_study_and_displays_the_derived_series(study, viewer_folder, tmp_path):
    kind, orthanc, study_uid, derived_uid, derived_dir = study
    _, patient, description = KINDS[kind]
    out = tmp_path / "ohif"
    with ViewerServer(viewer_folder / "ohif" / "dist", orthanc.dicomweb) as server:
        r = subprocess.run(
            ["node", str(TESTS / "ohif_check.cjs"), server.url, study_uid, derived_uid, patient, str(out),
             shutil.which("chromium") or shutil.which("chromium-browser")],
            env={**os.environ, "NODE_PATH": str(viewer_folder / "node_modules")}, capture_output=True, text=True,
            timeout=400,
        )
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    assert r.returncode == 0, f"{r.stderr[-2000:]}\nsteps done: {report.get('steps')}\nfailed: {report.get('failed')}"
    if (target := os.environ.get("LDCT_CLIP_VIEWER_SCREENSHOT")) and kind == "single-frame":
        shutil.copy(out / "viewer.png", target)
    assert report["failed"] == []  # every DICOMweb request OHIF made was answered

    # the study list: the study's series, original and derived, with their descriptions and instance counts
    files = sorted(derived_dir.glob("*.dcm"))
    listed = report["studylist"]
    series = re.findall(r"\nCT\n(.+?)\n\t?(\d+)", listed)
    assert sorted(series) == [(description, str(len(files))), (f"{description} [ldct-clip]", str(len(files)))], listed
    assert "synthetic phantom" in listed  # the study description

    # the viewer: the derived series, its window, an axial image with the patient's right on the left
    shown = report["viewer"]
    assert f"{description} [ldct-clip]" in shown
    by_number = {int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber): p for p in files}
    instance = re.search(r"I:\s*(\d+)\s*\((\d+)/(\d+)\)", shown)
    assert instance and int(instance.group(3)) == SHAPE[2], shown
    ds = pydicom.dcmread(by_number[int(instance.group(1))], stop_before_pixels=True)
    assert ds.SeriesInstanceUID == derived_uid
    center, width = _window(ds)
    window = re.search(r"W:\s*(-?[\d.]+)\s*L:\s*(-?[\d.]+)", shown)
    assert (float(window.group(1)), float(window.group(2))) == (width, center)
    lines = shown.splitlines()
    assert "A" in lines and "R" in lines  # orientation markers: anterior at the top, right on the left

    # the pixels: not blank, and the shown slice of the derived series under its window, not another slice,
    # not flipped, not stretched
    canvas = np.asarray(Image.open(out / "canvas.png").convert("L"))
    assert canvas.std() > 20 and (canvas < 10).mean() > 0.05 and (canvas > 245).mean() > 0.005
    volume = read_case(find_cases(derived_dir)[0])
    zs = [float((volume.affine @ [0, 0, k, 1])[2]) for k in range(SHAPE[2])]
    k = int(np.argmin(np.abs(np.array(zs) - _shown_z(ds, int(instance.group(2)) if len(files) == 1 else 1))))
    rows_cols = volume.hu.transpose(1, 0, 2)  # (rows, columns, slices)
    row_mm, col_mm = _spacing(ds)
    got = _sample(canvas, SHAPE[1], SHAPE[0], row_mm, col_mm)
    per_slice = [float(np.abs(got - _display(rows_cols[:, :, j], center, width)).mean()) for j in range(SHAPE[2])]
    error = per_slice[k]
    hu = rows_cols[:, :, k]
    expected = _display(hu, center, width)
    wrong = {"mirrored left-right": expected[:, ::-1], "upside down": expected[::-1, :],
             "full range, no window": (hu - hu.min()) / (hu.max() - hu.min()) * 255,
             "a bone window (W 1500, L 300)": _display(hu, 300, 1500),
             "another slice": _display(rows_cols[:, :, (k + 4) % SHAPE[2]], center, width)}
    errors = {name: float(np.abs(got - image).mean()) for name, image in wrong.items()}
    print(f"{kind}: mean |displayed - expected| {error:.2f} gray levels (slice {k}); as if {errors}")
    assert error <= 3 and int(np.argmin(per_slice)) == k, per_slice
    # the same comparison fails for a mirrored or flipped image, another window or slice: the check has teeth
    assert all(e > 4 * max(error, 1) for e in errors.values()), errors
    assert (out / "viewer.png").stat().st_size > 0 and (out / "studylist.png").stat().st_size > 0
