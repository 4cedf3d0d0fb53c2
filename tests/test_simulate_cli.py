"""``ldct-clip simulate``: DICOM series and NIfTI in, aligned NIfTI and a derived DICOM series out, noise added,
inputs untouched, progress shown, user errors as one line with exit status 2."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from ldct_clip.cli import main
from ldct_clip.simulation.cases import simulate_case
from ldct_clip.ct.io import find_cases, read_case
from ct_factory import ct_affine, write_ct_series, write_nifti
from ldct_clip.simulation.phantom import make_phantom

SHAPE = (64, 64, 3)
SPACING = (400 / 64, 400 / 64, 2.5)


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return np.rint(make_phantom(SHAPE, seed=1))


@pytest.fixture
def dicom_series(tmp_path, phantom) -> Path:
    folder = tmp_path / "ndct" / "P001"
    write_ct_series(folder, phantom, spacing=SPACING, series_description="Abdomen 2.5mm", series_number=3)
    return folder


def body_noise(out_hu: np.ndarray, in_hu: np.ndarray) -> np.ndarray:
    return (out_hu - in_hu)[in_hu > -500]


def test_dicom_series(dicom_series, tmp_path, capsys):
    before = digest(dicom_series.parent)
    out = tmp_path / "sim"
    assert main(["simulate", str(dicom_series.parent), str(out), "--dose", "0.25", "--seed", "0"]) == 0
    captured = capsys.readouterr()
    assert "/3 [" in captured.err  # a progress bar: slices done of total
    assert digest(dicom_series.parent) == before  # never over the input

    source = read_case(find_cases(dicom_series)[0])
    nifti = nib.load(out / "nifti" / "P001.nii.gz")
    np.testing.assert_allclose(nifti.affine, source.affine, atol=1e-4)
    low = np.asarray(nifti.dataobj).astype(np.float32)
    assert low.shape == SHAPE
    noise = body_noise(low, source.hu)
    assert 5.0 < noise.std() < 500.0 and abs(noise.mean()) < 0.2 * noise.std()

    derived = read_case(find_cases(out / "dicom" / "P001")[0])
    np.testing.assert_allclose(derived.affine, source.affine, atol=1e-4)
    body = source.hu > -500  # the derived series' unsigned storage clips air noise below -1024 HU
    np.testing.assert_array_equal(derived.hu[body], low[body])
    src0 = pydicom.dcmread(sorted(dicom_series.glob("*.dcm"))[0], stop_before_pixels=True)
    ds = pydicom.dcmread(sorted((out / "dicom" / "P001").glob("*.dcm"))[0], stop_before_pixels=True)
    assert ds.SeriesDescription == "Abdomen 2.5mm [simulated 25% dose]"
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "25% dose" in ds.DerivationDescription
    assert ds.StudyInstanceUID == src0.StudyInstanceUID and ds.PatientID == src0.PatientID
    assert ds.SeriesInstanceUID != src0.SeriesInstanceUID and ds.SOPInstanceUID != src0.SOPInstanceUID
    assert ds.FrameOfReferenceUID == src0.FrameOfReferenceUID


def test_nifti_input_is_reproducible_and_aligned(tmp_path, phantom):
    affine = ct_affine(SPACING)
    src = write_nifti(tmp_path / "in" / "vol.nii.gz", phantom, affine)
    runs = []
    for name in ("a", "b"):
        assert main(["simulate", str(src), str(tmp_path / name), "--seed", "7", "--geometry", "fan", "-q"]) == 0
        runs.append(nib.load(tmp_path / name / "nifti" / "vol.nii.gz"))
    np.testing.assert_allclose(runs[0].affine, affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(runs[0].dataobj), np.asarray(runs[1].dataobj))
    assert not (tmp_path / "a" / "dicom").exists()
    assert body_noise(np.asarray(runs[0].dataobj, np.float32), phantom).std() > 5.0


def test_lower_dose_adds_more_noise(tmp_path, phantom):
    src = write_nifti(tmp_path / "in" / "vol.nii.gz", phantom, ct_affine(SPACING))
    sd = {}
    for dose in (0.5, 0.125):
        (result,) = simulate_case(src, tmp_path / f"d{dose}", dose_fraction=dose, seed=3)
        sd[dose] = result.added_noise_sd_hu
    # variance-matched noise: added SD proportional to sqrt(1/k - 1): sqrt(7) = 2.6 times
    assert sd[0.125] / sd[0.5] == pytest.approx(np.sqrt(7.0), rel=0.2)


def test_gaussian_noise_of_the_paper(tmp_path, phantom, dicom_series):
    assert main(["simulate", str(dicom_series), str(tmp_path / "g"), "--gaussian", "5", "--seed", "1", "-q"]) == 0
    low = np.asarray(nib.load(tmp_path / "g" / "nifti" / "P001.nii.gz").dataobj, np.float32)
    assert body_noise(low, phantom).std() == pytest.approx(5 / 255 * 4096, rel=0.1)
    ds = pydicom.dcmread(sorted((tmp_path / "g" / "dicom" / "P001").glob("*.dcm"))[0], stop_before_pixels=True)
    assert ds.SeriesDescription.endswith(" [simulated gaussian 5/255]")


def test_progress_callback_counts_slices(tmp_path, dicom_series):
    seen = []
    simulate_case(dicom_series, tmp_path / "out", seed=0, write_dicom=False, progress=lambda *a: seen.append(a))
    assert seen == [("P001", k, 3) for k in (1, 2, 3)]


def test_scanner_padding_is_kept(tmp_path, phantom):
    vol = phantom.copy()
    vol[:4] = -3024.0  # outside the reconstruction circle
    src = write_nifti(tmp_path / "in" / "vol.nii.gz", vol, ct_affine(SPACING))
    simulate_case(src, tmp_path / "out", seed=0)
    low = np.asarray(nib.load(tmp_path / "out" / "nifti" / "vol.nii.gz").dataobj)
    assert (low[:4] == -3024).all()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dose", "0"], "dose fraction must be in (0, 1]"),
        (["--dose", "0.25", "--geometry", "fan", "--flux", "-5"], "incident_flux must be a positive"),
    ],
)
def test_bad_parameters_exit_2(dicom_series, tmp_path, capsys, extra, message):
    assert main(["simulate", str(dicom_series), str(tmp_path / "out"), "-q", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "nifti").exists()


def test_output_inside_input_or_missing_input_exit_2(dicom_series, tmp_path, capsys):
    assert main(["simulate", str(dicom_series), str(dicom_series / "sim"), "-q"]) == 2
    assert "inside the input" in capsys.readouterr().err
    assert not (dicom_series / "sim").exists()
    assert main(["simulate", str(tmp_path / "nope"), str(tmp_path / "out"), "-q"]) == 2
    assert "does not exist" in capsys.readouterr().err
