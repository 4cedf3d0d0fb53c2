"""Fault injection: several radiologists ask one MONAI Label server at once.

A real ``monailabel start_server`` (the project's app, its own environment, see tests/test_monailabel.py) with
four CT series of different sizes on a real Orthanc gets 8 infer requests, 4 at a time (each series twice, the
same series asked for concurrently). Every answer must be its own series' denoised volume -- what
``ldct-clip denoise`` gives for that series, within 1 HU -- and the server must still be up afterwards.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests

from ct_factory import phantom_hu, write_ct_series
from ldct_clip.ct.io import find_cases
from orthanc_server import orthanc  # noqa: F401  (the shared server fixture)
from test_monailabel import MonaiLabelServer, bundle, ml_python  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow

SHAPES = [(64, 48, 6), (56, 48, 5), (64, 40, 4), (48, 48, 7)]  # distinct: a mixed-up answer cannot pass


@pytest.fixture(scope="module")
def four_series(orthanc, tmp_path_factory):
    """Four CT series in Orthanc: [(folder, SeriesInstanceUID)]."""
    found = []
    for i, shape in enumerate(SHAPES):
        folder = tmp_path_factory.mktemp(f"series{i}")
        files = write_ct_series(folder, phantom_hu(shape, noise=30.0, seed=10 + i), series_description=f"s{i}",
                                series_number=i + 1)
        orthanc.upload(files)
        found.append((folder, str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)))
    return found


@pytest.fixture(scope="module")
def server(ml_python, orthanc, four_series, bundle, tmp_path_factory):
    s = MonaiLabelServer.serving(ml_python, orthanc.dicomweb, bundle, tmp_path_factory.mktemp("monailabel"))
    try:
        yield s.wait()
    finally:
        s.stop()


def test_concurrent_infer_requests_each_get_their_own_series(server, four_series, bundle, tmp_path):
    from ldct_clip.cli import main

    # what ldct-clip denoise gives for each series, with the checkpoint the server serves
    expected = []
    for i, (folder, _) in enumerate(four_series):
        out = tmp_path / f"cli{i}"
        assert main(["denoise", str(folder), str(out), "--checkpoint", str(bundle / "models" / "model.pt"),
                     "--no-png", "--no-dicom", "--device", "cpu", "--precision", "fp32", "-q"]) == 0
        expected.append(np.asarray(nib.load(out / f"{find_cases(folder)[0].name}.nii.gz").dataobj, dtype=np.float32))

    lock = threading.Lock()
    in_flight, most = [0], [0]

    def infer(k: int) -> tuple[int, int, bytes, str]:
        i = k % len(four_series)
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            r = requests.post(f"{server.url}/infer/ldct_denoise", params={"image": four_series[i][1], "output": "image"},
                              timeout=600)
        finally:
            with lock:
                in_flight[0] -= 1
        return i, r.status_code, r.content, r.text[:300] if r.status_code != 200 else ""

    t = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(infer, range(8)))
    seconds = time.monotonic() - t
    assert most[0] == 4  # the fault happened: four requests were in flight together

    for k, (i, status, content, text) in enumerate(answers):
        assert status == 200, f"request {k} (series {i}): {status} {text}\n{server.log_tail()}"
        path = tmp_path / f"answer{k}.nii.gz"
        path.write_bytes(content)
        got = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        assert got.shape == SHAPES[i], f"request {k} got another series' volume"
        assert np.abs(got - expected[i]).max() <= 1.0, f"request {k} (series {i})"

    # the server is still up and answers
    assert server.process.poll() is None
    assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200
    again = requests.post(f"{server.url}/infer/ldct_denoise", params={"image": four_series[0][1], "output": "image"},
                          timeout=300)
    assert again.status_code == 200
    print(f"8 infer requests, 4 at a time: {seconds:.1f} s")
