"""A real Orthanc PACS with its DICOMweb plugin on 127.0.0.1, for the PACS and MONAI Label tests.

Debian packages ``orthanc`` and ``orthanc-dicomweb`` (``scripts/system_deps.sh`` installs them). Each server
gets free ports, a generated configuration and its storage in a temporary folder, no authentication, and
is stopped (and its storage removed with the folder) at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
import requests

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc", "/usr/local/share/orthanc/plugins")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_dicomweb_plugin() -> Path | None:
    given = os.environ.get("LDCT_CLIP_ORTHANC_DICOMWEB_PLUGIN")
    if given:
        return Path(given) if Path(given).is_file() else None
    for folder in PLUGIN_DIRS:
        for path in sorted(Path(folder).glob("libOrthancDicomWeb.so*")) if Path(folder).is_dir() else []:
            return path
    return None


def missing_reason() -> str | None:
    """Why no Orthanc with DICOMweb can be started here, or None."""
    if shutil.which("Orthanc") is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; see scripts/system_deps.sh)"
    if find_dicomweb_plugin() is None:
        return "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


class Orthanc:
    """``Orthanc`` started in ``folder``; ``url`` is its REST root, ``dicomweb`` its DICOMweb root."""

    def __init__(self, folder: Path, extra_config: dict | None = None) -> None:
        self.folder = Path(folder)
        self.extra_config = dict(extra_config or {})  # e.g. LuaScripts; overrides the defaults below
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.process: subprocess.Popen | None = None
        self.log = self.folder / "orthanc.log"

    def start(self, timeout: float = 30.0) -> Orthanc:
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "ldct-clip-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "LDCTCLIPTEST",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpTimeout": 120,
            "ConcurrentJobs": 1,
            "Plugins": [str(find_dicomweb_plugin())],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Ssl": False},
            **self.extra_config,
        }
        config_path = self.folder / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2))
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["Orthanc", str(config_path)], stdout=log, stderr=subprocess.STDOUT, cwd=self.folder
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.dicomweb}/studies", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.url} within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def upload(self, files: Iterable[Path]) -> list[str]:
        """Store DICOM files through Orthanc's REST API (``POST /instances``); returns Orthanc instance ids."""
        ids = []
        for path in files:
            r = requests.post(f"{self.url}/instances", data=Path(path).read_bytes(), timeout=30)
            r.raise_for_status()
            ids.append(r.json()["ID"])
        return ids

    def series_of_study(self, study_uid: str) -> list[dict]:
        """QIDO-RS: the series of a study (DICOM JSON)."""
        r = requests.get(f"{self.dicomweb}/studies/{study_uid}/series", timeout=30,
                         params={"includefield": "0008103E,00201209,00200011,00080060"})
        r.raise_for_status()
        return r.json() if r.content else []


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """A real Orthanc with DICOMweb on free loopback ports, for one test module; skipped when not installed."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    try:
        yield server
    finally:
        server.stop()
