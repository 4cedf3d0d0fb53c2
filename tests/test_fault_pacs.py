"""Fault injection: the PACS goes away in the middle of ``ldct-clip pacs denoise``'s STOW-RS store.

A real Orthanc (DICOMweb plugin) on 127.0.0.1 is killed (SIGKILL) once part of the derived series has been
stored. The command must say so in one line and exit non-zero; after Orthanc is back, a rerun of the same
command must leave the study with the complete derived series once: the same SeriesInstanceUID, every
instance, no duplicates.

To stop the server *during* the store rather than before or after it, Orthanc stores the derived instances
slowly: a Lua ``ReceivedInstanceFilter`` sleeps 50 ms on each instance of a series described "[ldct-clip]"
(a slow PACS; the source series is stored at full speed).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pydicom
import pytest
import requests

from conftest import tiny_model
from ct_factory import phantom_hu, write_ct_series
from ldct_clip.checkpoints import save_checkpoint
from orthanc_server import Orthanc, missing_reason

pytestmark = pytest.mark.slow

SLICES = 96  # three STOW-RS batches of 32: the kill lands between or inside them
SLOW_STORE = """
function ReceivedInstanceFilter(dicom, origin, info)
  if string.find(dicom.SeriesDescription or "", "[ldct-clip]", 1, true) then
    os.execute("sleep 0.05")
  end
  return true
end
"""


def _derived_series(server: Orthanc, study_uid: str, source_uid: str) -> dict[str, list[str]]:
    """The series of the study other than the source: {SeriesInstanceUID: [SOPInstanceUID per stored instance]}."""
    found: dict[str, list[str]] = {}
    r = requests.post(f"{server.url}/tools/find", timeout=30, json={
        "Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True})
    r.raise_for_status()
    for inst in r.json():
        series = requests.get(f"{server.url}/instances/{inst['ID']}/tags?simplify", timeout=30).json()
        if series["SeriesInstanceUID"] != source_uid:
            found.setdefault(series["SeriesInstanceUID"], []).append(series["SOPInstanceUID"])
    return found


def _count(server: Orthanc) -> int:
    return int(requests.get(f"{server.url}/statistics", timeout=5).json()["CountInstances"])


def test_pacs_killed_during_store_then_rerun_stores_the_series_once(tmp_path):
    if reason := missing_reason():
        pytest.skip(reason)
    lua = tmp_path / "slow_store.lua"
    lua.write_text(SLOW_STORE)
    server = Orthanc(tmp_path / "orthanc", {"LuaScripts": [str(lua)]}).start()
    try:
        files = write_ct_series(tmp_path / "ct", phantom_hu((64, 48, SLICES), noise=30.0), series_number=2,
                                series_description="LDCT phantom")
        src = pydicom.dcmread(files[0], stop_before_pixels=True)
        study_uid, source_uid = str(src.StudyInstanceUID), str(src.SeriesInstanceUID)
        server.upload(files)
        ckpt = save_checkpoint(tiny_model(), tmp_path / "tiny.pt")
        cmd = [sys.executable, "-m", "ldct_clip", "pacs", "denoise", "--url", server.dicomweb, "--series", source_uid,
               "--study", study_uid, "--checkpoint", str(ckpt), "--device", "cpu", "--precision", "fp32"]

        # 1. the store is cut: Orthanc is killed once a few derived instances are in
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while _count(server) < SLICES + 4:
            assert proc.poll() is None, "the command ended before the kill: " + proc.stderr.read()
            assert time.monotonic() < deadline, "the derived series never started to arrive"
            time.sleep(0.02)
        server.process.kill()
        server.process.wait(timeout=10)
        killed_at = time.monotonic()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode not in (0, None), out + err
        assert proc.returncode == 2 and "Traceback" not in err, err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and "cannot reach the DICOMweb server" in errors[0] and "storing instances" in errors[0], err
        assert time.monotonic() - killed_at < 60  # it gives up after a few retries, it does not hang

        # 2. the fault happened mid-store: after a restart Orthanc holds part of the derived series
        server.start()
        partial = _derived_series(server, study_uid, source_uid)
        assert len(partial) == 1
        ((derived_uid, stored),) = partial.items()
        assert 0 < len(stored) < SLICES

        # 3. the rerun stores the rest: one derived series, the same UID, every instance once
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"derived series: (\S+)", r.stdout).group(1) == derived_uid
        final = _derived_series(server, study_uid, source_uid)
        assert list(final) == [derived_uid]
        assert len(final[derived_uid]) == len(set(final[derived_uid])) == SLICES
        assert set(stored) <= set(final[derived_uid])  # what the first run stored is part of the same series
        assert _count(server) == 2 * SLICES
        series = requests.get(f"{server.dicomweb}/studies/{study_uid}/series", timeout=30).json()
        assert sorted(s["0020000E"]["Value"][0] for s in series) == sorted([source_uid, derived_uid])
    finally:
        server.stop()
