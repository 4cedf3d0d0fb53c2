"""The MONAI Label app (monailabel_app/) in a real `monailabel start_server`, with studies on a real Orthanc.

MONAI Label 0.8.5 needs numpy < 2, so it runs from its own environment, made (or reused) by
``scripts/setup_monailabel_env.sh``; the tests here only talk to it over HTTP or run scripts in it. They are
skipped, saying why, when that environment cannot be made (no Python 3.11, no package registry); set
``LDCT_CLIP_REQUIRE_MONAILABEL=1`` to make that a failure instead, or ``LDCT_CLIP_ML_PYTHON`` to use an
existing environment's python.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests

from conftest import TINY, tiny_model
from ldct_clip import bundle_root
from ldct_clip.checkpoints import save_checkpoint
from ldct_clip.inference import denoise_volume
from ldct_clip.ct.io import find_cases, read_case
from ct_factory import ct_affine, phantom_hu, write_ct_series
from orthanc_server import free_port, orthanc  # noqa: F401  (orthanc: the shared server fixture)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "monailabel_app"
SETUP = ROOT / "scripts" / "setup_monailabel_env.sh"
SHAPE, SPACING = (64, 48, 6), (0.8, 0.75, 2.5)
TINY_OVERRIDES = {"network_def#layers": TINY["layers"], "network_def#width": TINY["width"], "precision": "fp32"}


def _unavailable(reason: str) -> None:
    if os.environ.get("LDCT_CLIP_REQUIRE_MONAILABEL") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def ml_python() -> str:
    """python of the MONAI Label environment (made on first use: a few minutes, once per dependency set)."""
    given = os.environ.get("LDCT_CLIP_ML_PYTHON")
    if given:
        return given
    if shutil.which(os.environ.get("PYTHON311", "python3.11")) is None:
        _unavailable("no python3.11 for the MONAI Label environment (scripts/setup_monailabel_env.sh)")
    r = subprocess.run(["bash", str(SETUP)], env={**os.environ, "LDCT_CLIP_MAIN_PYTHON": sys.executable},
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        tail = "\n".join(line for line in r.stderr.splitlines() if "WARNING: Location" not in line)[-1500:]
        _unavailable(f"scripts/setup_monailabel_env.sh could not make the MONAI Label environment "
                     f"(exit {r.returncode}):\n{tail}")
    return r.stdout.strip().splitlines()[-1]


def _run_in_env(python: str, code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The project's bundle configs with a tiny random checkpoint as models/model.pt."""
    folder = tmp_path_factory.mktemp("bundle")
    shutil.copytree(Path(bundle_root()) / "configs", folder / "configs")
    save_checkpoint(tiny_model(), folder / "models" / "model.pt")
    return folder


@pytest.fixture(scope="module")
def ct_series(orthanc, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    files = write_ct_series(folder, phantom_hu(SHAPE, noise=30.0), spacing=SPACING, series_description="LDCT")
    orthanc.upload(files)
    return folder, str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)


DOORS_SHAPE = (61, 47, 5)  # odd in-plane size, not a multiple of the encoder's stride


@pytest.fixture(scope="module")
def doors_series(orthanc, tmp_path_factory):
    """A CT series with scanner padding (-3024 HU), a metal insert (3500 HU) and an odd size, in Orthanc:
    (folder, SeriesInstanceUID)."""
    folder = tmp_path_factory.mktemp("doors")
    hu = phantom_hu(DOORS_SHAPE, noise=30.0, seed=3)
    hu[:6] = -3024.0
    hu[30:34, 20:25] = 3500.0
    files = write_ct_series(folder, hu, spacing=SPACING, intercept=0.0, signed=True, series_description="doors",
                            series_number=7)
    orthanc.upload(files)
    return folder, str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)


class MonaiLabelServer:
    @classmethod
    def serving(cls, python: str, studies: str, bundle: Path, folder: Path) -> MonaiLabelServer:
        """The app serving ``bundle``'s denoise task with the tiny test network."""
        # the launcher passes its arguments on unquoted ($*): no spaces in values
        overrides = json.dumps(TINY_OVERRIDES, separators=(",", ":"))
        return cls(python, studies, {"models": "ldct_denoise", "bundle": str(bundle), "bundle_overrides": overrides},
                   folder)

    def __init__(self, python: str, studies: str, conf: dict[str, str], folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        self.log = folder / "monailabel.log"
        app = folder / "app"  # start_server creates model/, lib/, logs/, bin/ in the app folder: not in the checkout
        shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", "model", "lib", "logs", "bin"))
        cmd = [str(Path(python).parent / "monailabel"), "start_server", "--app", str(app), "--studies", studies,
               "--host", "127.0.0.1", "--port", str(self.port)]
        for key, value in conf.items():
            cmd += ["--conf", key, value]
        # as an activated environment: the `monailabel` launcher runs `python -m monailabel.main`
        bindir = str(Path(python).parent)
        env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "MONAILABEL_PYEXE": python,
               "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(folder / "dicom-cache"),
               "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false", "PYTHONUNBUFFERED": "1"}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=folder, env=env,
                                            start_new_session=True)

    def wait(self, timeout: float = 180) -> MonaiLabelServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"monailabel exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/info/", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"monailabel did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: uvicorn and any worker it started
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def server(ml_python, orthanc, ct_series, doors_series, bundle, tmp_path_factory):
    s = MonaiLabelServer.serving(ml_python, orthanc.dicomweb, bundle, tmp_path_factory.mktemp("monailabel"))
    try:
        yield s.wait()
    finally:
        s.stop()


def test_server_lists_the_denoise_task(server):
    info = requests.get(f"{server.url}/info/", timeout=30).json()
    assert info["name"] == "ldct-clip"
    assert set(info["models"]) == {"ldct_denoise"}
    assert info["models"]["ldct_denoise"]["type"] == "others"


def test_infer_returns_the_denoised_volume_on_the_input_grid(server, ct_series, bundle, tmp_path):
    folder, series_uid = ct_series
    r = requests.post(f"{server.url}/infer/ldct_denoise", params={"image": series_uid, "output": "image"},
                      timeout=300)
    assert r.status_code == 200, f"{r.status_code} {r.text[:500]}\n{server.log_tail()}"
    out_path = tmp_path / "denoised.nii.gz"
    out_path.write_bytes(r.content)
    img = nib.load(out_path)
    assert img.shape == SHAPE
    np.testing.assert_allclose(img.affine, ct_affine(SPACING), atol=1e-3)
    assert np.asarray(img.dataobj).dtype == np.int16

    # the same numbers as the library's own path (DICOM -> HU -> denoise_volume), up to rounding
    src = read_case(find_cases(folder)[0])
    model = tiny_model().eval()
    expected = np.round(denoise_volume(src.hu, model, device="cpu", precision="fp32"))
    got = np.asarray(img.dataobj, dtype=np.float32)
    assert np.abs(got - expected).max() <= 1.0
    assert np.abs(got - src.hu).max() > 0
    assert "Checkpoint keys don't match" not in server.log.read_text(errors="replace")


def test_every_door_gives_the_same_voxels(server, orthanc, doors_series, bundle, tmp_path):
    """One input with padding, metal and an odd size through the five doors, all built from inference.json's
    components: the same voxels from each, padding and metal kept at their input values."""
    from ldct_clip.cli import main

    folder, series_uid = doors_series
    ckpt = str(bundle / "models" / "model.pt")
    cpu = ["--device", "cpu", "--precision", "fp32", "-q"]
    name = find_cases(folder)[0].name
    got: dict[str, np.ndarray] = {}

    # 1. python -m monai.bundle run
    r = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
         "--bundle_root", str(bundle), "--dataset_dir", str(folder), "--output_dir", str(tmp_path / "bundle"),
         "--device", "$torch.device('cpu')", "--precision", "fp32", "--progress", "false",
         *[a for k, v in TINY_OVERRIDES.items() if k != "precision" for a in (f"--{k}", json.dumps(v))]],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    got["bundle"] = np.asarray(nib.load(tmp_path / "bundle" / f"{name}.nii.gz").dataobj)
    # 2. ldct-clip denoise
    assert main(["denoise", str(folder), str(tmp_path / "cli"), "--checkpoint", ckpt, "--no-png", *cpu]) == 0
    got["cli"] = np.asarray(nib.load(tmp_path / "cli" / f"{name}.nii.gz").dataobj)
    # 3. the MONAI Label task's REST answer (the series pulled from Orthanc by MONAI Label itself)
    answer = requests.post(f"{server.url}/infer/ldct_denoise", params={"image": series_uid, "output": "image"},
                           timeout=300)
    assert answer.status_code == 200, f"{answer.status_code} {answer.text[:500]}\n{server.log_tail()}"
    (tmp_path / "monailabel.nii.gz").write_bytes(answer.content)
    got["monailabel"] = np.asarray(nib.load(tmp_path / "monailabel.nii.gz").dataobj)
    # 4. ldct-clip pacs denoise (pulled over DICOMweb, a derived series written, not stored back)
    assert main(["pacs", "denoise", "--url", orthanc.dicomweb, "--series", series_uid, "--checkpoint", ckpt,
                 "--keep", str(tmp_path / "pacs"), "--no-store", *cpu]) == 0
    got["pacs"] = read_case(find_cases(tmp_path / "pacs" / "denoised")[0]).hu
    # 5. ldct-clip evaluate's denoising step (its network volume)
    assert main(["evaluate", str(tmp_path / "eval"), "--ldct", str(folder), "--ndct", str(folder), "--checkpoint",
                 ckpt, "--protocols", "paper", "--classical", "--no-png", "--write-volumes", *cpu]) == 0
    got["evaluate"] = np.asarray(nib.load(tmp_path / "eval" / "volumes" / f"{name}_network.nii.gz").dataobj)

    hu = read_case(find_cases(folder)[0]).hu
    for door, volume in got.items():
        assert volume.shape == DOORS_SHAPE, door
        np.testing.assert_array_equal(volume[:6], -3024, err_msg=door)
        np.testing.assert_array_equal(volume[30:34, 20:25], 3500, err_msg=door)
        np.testing.assert_array_equal(volume, got["bundle"], err_msg=f"{door} differs from the bundle run")
    assert np.abs(got["bundle"] - hu).max() > 0  # the network did change the image


def test_missing_or_unfit_weights_stop_the_app(ml_python, bundle, tmp_path):
    """No silent random weights: start-up fails, naming the problem (run in the MONAI Label environment)."""
    empty = tmp_path / "no-weights"
    shutil.copytree(bundle / "configs", empty / "configs")
    wrong = tmp_path / "wrong-weights"
    shutil.copytree(bundle / "configs", wrong / "configs")
    save_checkpoint(tiny_model(width=16), wrong / "models" / "model.pt")
    code = """
        import json, sys
        sys.path.insert(0, sys.argv[1])
        from main import LdctDenoiseTask
        for path in sys.argv[2:4]:
            try:
                LdctDenoiseTask(path, {}, json.loads(sys.argv[4]))
            except Exception as e:
                print(f"{type(e).__name__}: {e}")
            else:
                print("loaded")
        task = LdctDenoiseTask(sys.argv[5], {}, json.loads(sys.argv[4]))
        print("ok", task.type == "others")
    """
    r = _run_in_env(ml_python, code, str(APP), str(empty), str(wrong), json.dumps(TINY_OVERRIDES), str(bundle))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("WeightsError") and "model.pt is missing" in lines[0]
    assert lines[1].startswith("WeightsError") and "does not fit the network" in lines[1]
    assert lines[2] == "ok True"


def test_ldct_clip_works_with_numpy_1_26(ml_python, tmp_path):
    """The package's read -> denoise -> write path under the MONAI Label environment's numpy 1.x."""
    files = write_ct_series(tmp_path / "ct", phantom_hu((48, 40, 3)))
    code = """
        import sys
        from pathlib import Path
        import numpy as np, torch
        assert np.__version__.startswith("1."), np.__version__
        from ldct_clip.ct.io import find_cases, read_case, write_derived_series, write_nifti
        from ldct_clip.inference import denoise_volume
        from ldct_clip.networks import CLIPDenoiser
        from ldct_clip.checkpoints import save_checkpoint, load_checkpoint
        torch.manual_seed(0)
        out = Path(sys.argv[2])
        save_checkpoint(CLIPDenoiser(layers=[1, 1, 1, 1], width=8), out / "tiny.pt")
        vol = read_case(find_cases(sys.argv[1])[0])
        hu = denoise_volume(vol.hu, load_checkpoint(out / "tiny.pt").eval(), precision="fp32")
        written = write_derived_series(hu, vol.dicom_headers, out / "dicom")
        write_nifti(hu, vol.affine, out / "d.nii.gz")
        back = read_case(find_cases(out / "dicom")[0])
        assert np.abs(back.hu - np.clip(np.round(hu), -1024, None)).max() <= 1
        print("numpy", np.__version__, "slices", len(written))
    """
    r = _run_in_env(ml_python, code, str(files[0].parent), str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "numpy 1.26" in r.stdout and "slices 3" in r.stdout


@pytest.mark.skipif((Path(bundle_root()) / "models" / "model.pt").exists(),
                    reason="the project's bundle has installed weights: the demo fallback is not used")
def test_app_without_installed_weights_serves_the_demo_weights(ml_python, orthanc, ct_series, tmp_path):
    """No --conf bundle and no models/model.pt: the shipped demo weights are served, labelled as such."""
    from ldct_clip.checkpoints import load_checkpoint
    from ldct_clip.weights import DEMO_LABEL, resolve_weights

    conf = {"models": "ldct_denoise", "bundle_overrides": json.dumps({"precision": "fp32"}, separators=(",", ":"))}
    s = MonaiLabelServer(ml_python, orthanc.dicomweb, conf, tmp_path).wait()
    try:
        info = requests.get(f"{s.url}/info/", timeout=30).json()
        assert DEMO_LABEL in info["models"]["ldct_denoise"]["description"]
        assert DEMO_LABEL in s.log.read_text(errors="replace")
        folder, series_uid = ct_series
        r = requests.post(f"{s.url}/infer/ldct_denoise", params={"image": series_uid, "output": "image"}, timeout=300)
        assert r.status_code == 200, f"{r.status_code} {r.text[:500]}\n{s.log_tail()}"
    finally:
        s.stop()
    (tmp_path / "demo.nii.gz").write_bytes(r.content)
    got = np.asarray(nib.load(tmp_path / "demo.nii.gz").dataobj, dtype=np.float32)
    src = read_case(find_cases(folder)[0])
    expected = np.round(denoise_volume(src.hu, load_checkpoint(resolve_weights("demo")), precision="fp32"))
    assert np.abs(got - expected).max() <= 1.0  # the demo network's answer, not random or other weights
    assert np.abs(got - src.hu).mean() > 1.0
