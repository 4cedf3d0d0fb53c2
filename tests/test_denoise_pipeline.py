"""The volume path end to end: denoise_volume, the case workflow, the CLI and the bundle on DICOM input."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from conftest import denoise, tiny_model
from ldct_clip.checkpoints import save_checkpoint
from ldct_clip.errors import InputError
from ldct_clip.inference import denoise_volume
from ct_factory import phantom_hu, write_ct_series
from test_bundle import TINY_OVERRIDES, run_inference
from tolerances import assert_rounded_close




# -- denoise_volume ---------------------------------------------------------------------------------------


def test_identity_model_returns_input_hu():
    # whole HU in (as CT stores them), whole HU out: the config's postprocessing rounds (#21)
    hu = np.random.default_rng(0).integers(-1024, 3072, (70, 90, 7)).astype(np.float32)
    out = denoise_volume(hu, torch.nn.Identity(), roi_size=(64, 64), overlap=0.25, sw_batch_size=3)
    assert out.shape == hu.shape and out.dtype == np.float32
    assert np.abs(out - hu).max() < 0.5
    np.testing.assert_array_equal(out, hu)


def test_output_is_rounded_to_whole_hu():
    # README promises whole HU, as the bundle writes them: fractional input comes back rounded (an identity network)
    hu = np.random.default_rng(5).uniform(-1000, 3000, (40, 40, 3)).astype(np.float32)
    out = denoise_volume(hu, torch.nn.Identity())
    np.testing.assert_array_equal(out, np.round(out))
    assert_rounded_close(out, np.round(hu), max_fraction=0.002, what="identity output")


def test_outside_window_kept_or_clipped():
    hu = np.full((40, 40, 2), 100.0, np.float32)
    hu[:5] = -3024.0  # scanner padding outside the field of view
    kept = denoise_volume(hu, torch.nn.Identity(), hu_window=(-1024, 3072))
    clipped = denoise_volume(hu, torch.nn.Identity(), hu_window=(-1024, 3072), keep_outside_window=False,
                             noise_retention=0)
    assert kept[0, 0, 0] == -3024.0 and clipped[0, 0, 0] == -1024.0


class _Flat(torch.nn.Module):
    """A "denoiser" that outputs 0 HU everywhere (0.25 in the [-1024, 3072] window): the removed residual is the
    input itself, so the retained share can be read off the output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, 0.25)


def test_noise_retention_gives_back_the_configured_share():
    hu = np.full((40, 40, 2), 100.0, np.float32)
    hu[:3] = -3024.0  # outside the window: kept as it came in, whatever the retention
    default = denoise_volume(hu, _Flat())  # inference.json's noise_retention, 0.15
    assert default[20, 20, 0] == 15.0 and default[0, 0, 0] == -3024.0
    for fraction, expected in ((0, 0.0), (0.5, 50.0), (1, 100.0)):
        out = denoise_volume(hu, _Flat(), noise_retention=fraction)
        assert out[20, 20, 1] == expected and out[0, 0, 1] == -3024.0, fraction
    with pytest.raises(ValueError, match=r"noise_retention must be in \[0, 1\]"):
        denoise_volume(hu, _Flat(), noise_retention=1.5)


def test_noise_retention_is_capped_in_hu_per_slice():
    # inference.json's noise_retention_max_sd (5 HU): where the removed residual is strong (here 80 HU of noise
    # in slice 1), the share falls to 5 / SD, so no more than about 5 HU of noise comes back; slice 0 (20 HU)
    # keeps the share itself
    rng = np.random.default_rng(11)
    hu = np.stack([rng.normal(0.0, 20.0, (96, 96)), rng.normal(0.0, 80.0, (96, 96))], axis=-1).astype(np.float32)
    default = denoise_volume(hu, _Flat())
    uncapped = denoise_volume(hu, _Flat(), noise_retention_max_sd=float("inf"))
    share = lambda out, k: float((out[..., k] * hu[..., k]).sum() / (hu[..., k] ** 2).sum())  # noqa: E731
    assert abs(share(default, 0) - 0.15) < 0.002 and abs(share(uncapped, 1) - 0.15) < 0.002
    assert abs(share(default, 1) - 5.0 / 80.0) < 0.004  # robust SD of 9216 samples: +-2 %, rounding to whole HU
    assert abs(share(denoise_volume(hu, _Flat(), noise_retention_max_sd=10.0), 1) - 10.0 / 80.0) < 0.006
    with pytest.raises(ValueError, match="noise_retention_max_sd must be"):
        denoise_volume(hu, _Flat(), noise_retention_max_sd=0)


def test_single_slice_and_int16_input():
    model = tiny_model().eval()
    hu = phantom_hu((48, 40, 3))
    vol = denoise_volume(hu.astype(np.int16), model, roi_size=(64, 64))
    one = denoise_volume(hu[:, :, 1].astype(np.float32), model, roi_size=(64, 64))
    assert one.shape == (48, 40)
    # whole HU; batch size changes the float summation order, which may flip a rounding
    assert_rounded_close(vol[:, :, 1], one, what="slice 1 alone and in the volume")


def test_sliding_windows_blend_to_the_whole_slice_result():
    # on an identity network, overlapping windows with gaussian blending reproduce the input exactly
    hu = np.random.default_rng(1).normal(0, 100, (96, 80, 2)).round().astype(np.float32)
    out = denoise_volume(hu, torch.nn.Identity(), roi_size=(48, 48), overlap=0.5)
    assert np.abs(out - hu).max() < 0.05
    # before the rounding: the inferer's own blend, in HU (the window is 4096 HU wide)
    from ldct_clip.engine import SliceSlidingWindowInferer

    x = torch.as_tensor(np.random.default_rng(1).uniform(0, 1, (1, 1, 96, 80, 2)).astype(np.float32))
    blended = SliceSlidingWindowInferer((48, 48), overlap=0.5, sw_batch_size=4)(x, torch.nn.Identity())
    assert (blended - x).abs().max() * 4096 < 0.05


@pytest.mark.parametrize(
    "shape,match",
    [((20, 64, 3), "too small"), ((64, 64, 2, 2), "4D|3D volume"), ((64,), "3D volume")],
)
def test_bad_shapes(shape, match):
    with pytest.raises(InputError, match=match):
        denoise_volume(np.zeros(shape, np.float32), torch.nn.Identity())


def test_nan_input():
    hu = np.zeros((40, 40, 3), np.float32)
    hu[3, 3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        denoise_volume(hu, torch.nn.Identity())


# -- the case workflow --------------------------------------------------------------------------------------


def test_dicom_series_in_derived_series_out(tmp_path, tiny_checkpoint):
    hu = phantom_hu((64, 48, 5), seed=2)
    src_files = write_ct_series(tmp_path / "in" / "patient1", hu, intercept=-1024.0, slope=1.0)
    before = {p: p.read_bytes() for p in src_files}
    out = tmp_path / "out"
    [result] = denoise(tmp_path / "in", out, tiny_checkpoint, precision="fp32")
    assert result.ok and result.slices == 5
    # NIfTI: same grid as the input, int16 HU
    nii = nib.load(out / f"{result.name}.nii.gz")
    assert nii.shape == hu.shape and nii.get_data_dtype() == np.int16
    # derived series: identity kept, new UIDs, same geometry, HU re-encoded with the source rescale
    derived = sorted((out / f"{result.name}_dicom").glob("*.dcm"))
    assert len(derived) == 5
    src = {round(float(pydicom.dcmread(p).ImagePositionPatient[2]), 3): pydicom.dcmread(p) for p in src_files}
    expected = model_output(tmp_path, tiny_checkpoint, hu)
    for k, p in enumerate(derived):
        d = pydicom.dcmread(p)
        s = src[round(float(d.ImagePositionPatient[2]), 3)]
        assert d.StudyInstanceUID == s.StudyInstanceUID and d.PatientID == s.PatientID
        assert d.SeriesInstanceUID != s.SeriesInstanceUID and d.SOPInstanceUID != s.SOPInstanceUID
        assert list(d.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert d.SeriesDescription.endswith("[ldct-clip]")
        assert [float(v) for v in d.ImageOrientationPatient] == [float(v) for v in s.ImageOrientationPatient]
        assert (d.Rows, d.Columns) == (s.Rows, s.Columns)
        assert [float(v) for v in d.PixelSpacing] == [float(v) for v in s.PixelSpacing]
        hu_k = d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
        # the source stores unsigned values with intercept -1024: HU below -1024 cannot be represented
        # (whole HU computed on other kernels -- folded BatchNorm, channels_last -- may flip by 1 near .5)
        assert_rounded_close(hu_k.T, np.clip(np.rint(expected[:, :, k]), -1024, None), what=f"slice {k} HU")
    assert (out / f"{result.name}.png").exists()
    assert all(p.read_bytes() == b for p, b in before.items())  # inputs untouched


def test_derived_series_is_named_by_its_source_and_weights(tmp_path, tiny_checkpoint):
    # a rerun with the same weights names the same series and instances (a PACS store can be redone without
    # duplicates); other weights on the same source make another series, whose description names them
    write_ct_series(tmp_path / "in" / "p", phantom_hu((48, 40, 3), seed=4))
    other = save_checkpoint(tiny_model(seed=1), tmp_path / "other.pt")

    def derived(out: str, ckpt: Path) -> list[pydicom.Dataset]:
        [result] = denoise(tmp_path / "in", tmp_path / out, ckpt, precision="fp32", write_png=False)
        return [pydicom.dcmread(p) for p in sorted((tmp_path / out / f"{result.name}_dicom").glob("*.dcm"))]

    first, again, second = derived("a", tiny_checkpoint), derived("b", tiny_checkpoint), derived("c", other)
    uids = lambda series: [(d.SeriesInstanceUID, d.SOPInstanceUID) for d in series]  # noqa: E731
    assert uids(first) == uids(again)
    assert first[0].SeriesInstanceUID != second[0].SeriesInstanceUID
    assert {d.SOPInstanceUID for d in first}.isdisjoint(d.SOPInstanceUID for d in second)
    digest = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert first[0].DerivationDescription == f"ldct-clip denoised; weights tiny.pt, SHA-256 {digest}"


def model_output(tmp_path: Path, ckpt: Path, hu: np.ndarray) -> np.ndarray:
    from ldct_clip.checkpoints import load_checkpoint

    return denoise_volume(hu, load_checkpoint(ckpt).eval(), roi_size=(64, 64), precision="fp32")


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) is not installed")
def test_derived_series_passes_dciodvfy(tmp_path, tiny_checkpoint):
    write_ct_series(tmp_path / "in" / "s", phantom_hu((48, 40, 3)))
    [result] = denoise(tmp_path / "in", tmp_path / "out", tiny_checkpoint, write_png=False)
    for p in sorted((tmp_path / "out" / f"{result.name}_dicom").glob("*.dcm")):
        r = subprocess.run(["dciodvfy", str(p)], capture_output=True, text=True)
        errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")]
        assert not errors, errors


def test_bad_cases_fail_alone(tmp_path, tiny_checkpoint, caplog):
    inp = tmp_path / "in"
    write_ct_series(inp / "good", phantom_hu((48, 40, 3)))
    broken = write_ct_series(inp / "corrupt", phantom_hu((48, 40, 3)), series_description="corrupt")[1]
    broken.write_bytes(broken.read_bytes()[:1200])  # truncated in the pixel data
    write_ct_series(inp / "mr", phantom_hu((48, 40, 3)), modality="MR", series_description="T1")
    write_ct_series(inp / "tiny", phantom_hu((20, 20, 2)), series_description="tiny")
    nan = np.zeros((40, 40, 2), np.float32)
    nan[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), inp / "nan.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 2, 2), np.int16), np.eye(4)), inp / "fourd.nii.gz")
    with caplog.at_level(logging.INFO, logger="ldct_clip"):
        results = denoise(inp, tmp_path / "out", tiny_checkpoint, write_png=False)
    by_ok = {r.name: r for r in results}
    assert sum(r.ok for r in results) == 1, [(r.name, r.message) for r in results]
    messages = " | ".join(r.message for r in results if not r.ok)
    for expected in ("MR", "too small", "NaN", "4D"):
        assert expected in messages, (expected, messages)
    assert any(broken.name in r.message for r in results if not r.ok), messages
    # only the good case produced files
    produced = sorted(p.name for p in (tmp_path / "out").iterdir())
    good = [r.name for r in by_ok.values() if r.ok][0]
    assert produced == sorted([f"{good}.nii.gz", f"{good}_dicom"])
    assert "FAILED" in caplog.text


def test_mixed_series_are_split(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in" / "study"
    write_ct_series(folder, phantom_hu((48, 40, 3), seed=1), series_description="low dose", series_number=2, prefix="A")
    write_ct_series(folder, phantom_hu((48, 40, 4), seed=2), series_description="full dose", series_number=3, prefix="B")
    results = denoise(tmp_path / "in", tmp_path / "out", tiny_checkpoint, write_png=False, write_dicom=False)
    assert sorted(r.slices for r in results) == [3, 4] and all(r.ok for r in results)
    assert len({r.name for r in results}) == 2


def test_missing_slice_warns_and_goes_on(tmp_path, tiny_checkpoint, caplog):
    files = write_ct_series(tmp_path / "in" / "s", phantom_hu((48, 40, 5)))
    files[2].unlink()
    with caplog.at_level(logging.WARNING, logger="ldct_clip"):
        [result] = denoise(tmp_path / "in", tmp_path / "out", tiny_checkpoint, write_png=False)
    assert result.ok and result.slices == 4
    assert "spacing" in caplog.text.lower() or "missing" in caplog.text.lower()


def test_unwritable_output(tmp_path, tiny_checkpoint):
    write_ct_series(tmp_path / "in" / "s", phantom_hu((48, 40, 2)))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    [result] = denoise(tmp_path / "in", blocker / "out", tiny_checkpoint)
    assert not result.ok and str(blocker) in result.message


def test_output_inside_input_is_refused(tmp_path, tiny_checkpoint):
    files = write_ct_series(tmp_path / "in" / "s", phantom_hu((48, 40, 2)))
    before = {p: p.read_bytes() for p in files}
    with pytest.raises(InputError, match="is the input"):
        denoise(tmp_path / "in" / "s", tmp_path / "in" / "s", tiny_checkpoint)
    assert sorted((tmp_path / "in" / "s").iterdir()) == sorted(files)
    assert all(p.read_bytes() == b for p, b in before.items())


# -- doors: CLI and bundle ------------------------------------------------------------------------------------


def test_cli_denoise(tmp_path, tiny_checkpoint):
    write_ct_series(tmp_path / "in" / "s", phantom_hu((48, 40, 3)))
    r = subprocess.run(
        [sys.executable, "-m", "ldct_clip", "denoise", str(tmp_path / "in"), str(tmp_path / "out"),
         "--checkpoint", str(tiny_checkpoint), "--roi-size", "64", "64", "-q"],
        capture_output=True, text=True, env={**os.environ},
    )
    assert r.returncode == 0, r.stderr
    assert "slices/s" in r.stderr
    assert len(list((tmp_path / "out").glob("*.nii.gz"))) == 1


def test_cli_user_error_has_no_traceback(tmp_path, tiny_checkpoint):
    (tmp_path / "empty").mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "ldct_clip", "denoise", str(tmp_path / "empty"), str(tmp_path / "out"),
         "--checkpoint", str(tiny_checkpoint)], capture_output=True, text=True,
    )
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr


def test_bundle_on_dicom_keeps_geometry_and_identity(tmp_path, tiny_checkpoint):
    hu = phantom_hu((64, 48, 4), seed=5)
    src = write_ct_series(tmp_path / "in" / "ct", hu)
    r = run_inference(tmp_path / "in", tmp_path / "out", "--ckpt_path", str(tiny_checkpoint), *TINY_OVERRIDES,
                      "--roi_size", "[64,64]")
    assert r.returncode == 0, r.stdout + r.stderr
    from ldct_clip.ct.io import find_cases, read_case

    [orig] = [read_case(c) for c in find_cases(tmp_path / "in")]
    nii = nib.load(next((tmp_path / "out").glob("*.nii.gz")))
    np.testing.assert_allclose(nii.affine, orig.affine, atol=1e-4)
    [derived] = [read_case(c) for c in find_cases(next((tmp_path / "out").glob("*_dicom")))]
    np.testing.assert_allclose(derived.affine, orig.affine, atol=1e-4)
    # same values, except that the source's unsigned storage (intercept -1024) cannot go below -1024 HU
    np.testing.assert_array_equal(derived.hu, np.clip(np.asarray(nii.dataobj), -1024, None).astype(np.float32))
    d0 = pydicom.dcmread(next((tmp_path / "out").glob("*_dicom/*.dcm")))
    s0 = pydicom.dcmread(src[0])
    assert (d0.PatientName, d0.StudyInstanceUID) == (s0.PatientName, s0.StudyInstanceUID)
