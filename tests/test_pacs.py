"""`ldct-clip pacs` against a real Orthanc PACS (DICOMweb plugin) on 127.0.0.1: pull, denoise, store back."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
import torch

from conftest import tiny_model
from ldct_clip.checkpoints import load_checkpoint, network_overrides, save_checkpoint
from ldct_clip.cli import main
from ldct_clip.inference import denoise_volume
from ldct_clip.ct.io import find_cases, read_case
from ct_factory import phantom_hu, write_ct_series
from ldct_clip.pacs import PacsError, connect, denoise_series, find_series, list_series
from orthanc_server import free_port, orthanc  # noqa: F401  (orthanc: the shared server fixture)

pytestmark = pytest.mark.slow

SHAPE = (64, 48, 5)


@pytest.fixture(scope="module")
def ct_series(orthanc, tmp_path_factory):
    """A CT series uploaded to Orthanc: (folder, study uid, series uid)."""
    folder = tmp_path_factory.mktemp("ct")
    files = write_ct_series(folder, phantom_hu(SHAPE, noise=30.0), spacing=(0.8, 0.75, 2.5), series_number=3,
                            series_description="LDCT phantom")
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    orthanc.upload(files)
    return folder, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tiny_model(), tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _overrides(checkpoint: Path) -> dict:
    """Bundle overrides of the inference: the checkpoint, a network that fits it, CPU, fp32."""
    return {"ckpt_path": str(checkpoint), **network_overrides(checkpoint), "precision": "fp32",
            "device": torch.device("cpu"), "progress": False}


def _value(item: dict, tag: str):
    return item.get(tag, {}).get("Value", [None])[0]


def test_cli_denoises_a_series_and_stores_it_in_the_same_study(orthanc, ct_series, checkpoint, tmp_path):
    folder, study_uid, series_uid = ct_series
    r = subprocess.run(
        [sys.executable, "-m", "ldct_clip", "pacs", "denoise", "--url", orthanc.dicomweb, "--series", series_uid,
         "--checkpoint", str(checkpoint), "--device", "cpu", "--precision", "fp32"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    derived_uid = r.stdout.split("derived series:")[1].split()[0]
    assert derived_uid != series_uid
    assert f"study: {study_uid}" in r.stdout

    # the PACS now has both series in the study (QIDO-RS)
    series = {_value(s, "0020000E"): s for s in orthanc.series_of_study(study_uid)}
    assert set(series) == {series_uid, derived_uid}
    derived = series[derived_uid]
    assert _value(derived, "00080060") == "CT"
    assert _value(derived, "00201209") == SHAPE[2]
    assert _value(derived, "0008103E") == "LDCT phantom [ldct-clip]"
    assert _value(derived, "00200011") == 1003

    # what is stored is what the library computes from the source (WADO-RS back through dicomweb-client)
    client = connect(orthanc.dicomweb)
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    for k, ds in enumerate(client.api.iter_series(study_uid, derived_uid)):
        assert ds.StudyInstanceUID == study_uid and ds.SeriesInstanceUID == derived_uid
        assert "DERIVED" in ds.ImageType
        ds.save_as(pulled / f"{k}.dcm", enforce_file_format=True)
    out = read_case(find_cases(pulled)[0])
    src = read_case(find_cases(folder)[0])
    np.testing.assert_allclose(out.affine, src.affine, atol=1e-4)
    expected = denoise_volume(src.hu, load_checkpoint(checkpoint).eval(), device="cpu", precision="fp32")
    # the source stores unsigned values with intercept -1024, so the derived series clips at -1024 HU too
    assert np.abs(out.hu - np.clip(np.round(expected), -1024, None)).max() <= 1.0
    assert np.abs(out.hu - src.hu).max() > 0  # it did change the pixels


def test_library_keeps_files_and_can_skip_the_upload(orthanc, ct_series, checkpoint, tmp_path):
    _, study_uid, series_uid = ct_series
    before = len(orthanc.series_of_study(study_uid))
    result = denoise_series(orthanc.dicomweb, series_uid, overrides=_overrides(checkpoint), study_uid=study_uid,
                            keep=tmp_path / "work", store=False)
    assert result.instances == 0 and result.kept == tmp_path / "work"
    assert len(list((tmp_path / "work" / "source").glob("*.dcm"))) == SHAPE[2]
    assert len(list((tmp_path / "work" / "denoised").glob("*.dcm"))) == SHAPE[2]
    assert len(orthanc.series_of_study(study_uid)) == before


def test_list_and_find(orthanc, ct_series):
    _, study_uid, series_uid = ct_series
    client = connect(orthanc.dicomweb)
    info = find_series(client, series_uid)
    assert (info.study_uid, info.modality, info.instances, info.series_number) == (study_uid, "CT", SHAPE[2], 3)
    assert series_uid in {s.series_uid for s in list_series(client, modality="CT")}


def test_unknown_series_is_a_clear_error(orthanc, ct_series, checkpoint, capsys):
    with pytest.raises(PacsError, match="is not in the server"):
        denoise_series(orthanc.dicomweb, "1.2.3.4.5.6.7.8.9", overrides=_overrides(checkpoint))
    code = main(["pacs", "denoise", "--url", orthanc.dicomweb, "--series", "1.2.3.999", "--checkpoint", str(checkpoint)])
    assert code == 2 and "1.2.3.999 is not in the server" in capsys.readouterr().err


def test_non_ct_series_is_refused(orthanc, checkpoint, tmp_path):
    files = write_ct_series(tmp_path / "mr", phantom_hu((48, 48, 2)), modality="MR", series_description="T1")
    orthanc.upload(files)
    mr_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    with pytest.raises(PacsError, match="is MR, not CT"):
        denoise_series(orthanc.dicomweb, mr_uid, overrides=_overrides(checkpoint))


def test_unreachable_server_is_a_clear_error(checkpoint, capsys):
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    t = time.monotonic()
    assert main(["pacs", "denoise", "--url", url, "--series", "1.2.3", "--checkpoint", str(checkpoint)]) == 2
    assert "cannot reach the DICOMweb server" in capsys.readouterr().err
    assert time.monotonic() - t < 10  # a few quick retries, not dicomweb-client's default 30 s back-off


def test_wrong_url_path_is_a_clear_error(orthanc):
    with pytest.raises(PacsError, match="HTTP 404"):
        find_series(connect(f"{orthanc.url}/not-dicom-web"), "1.2.3")


def test_missing_checkpoint_is_refused(tmp_path, capsys):
    args = ["pacs", "denoise", "--url", "http://127.0.0.1:9/dicom-web", "--series", "1.2.3",
            "--checkpoint", str(tmp_path / "none.pt")]
    assert main(args) == 2 and "no checkpoint" in capsys.readouterr().err


def test_orthanc_rest_sees_the_upload(orthanc, ct_series):
    # sanity check of the fixture itself: Orthanc's own REST API knows the study
    _, study_uid, _ = ct_series
    r = requests.post(f"{orthanc.url}/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}},
                      timeout=10)
    assert r.status_code == 200 and len(r.json()) == 1
