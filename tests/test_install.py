"""ldct-clip installed, not run from a checkout: a wheel built from the sdist, and ``pip install git+URL``.

Each install goes into a fresh virtual environment that reuses this suite's dependencies (a ``.pth`` file names
the suite's site-packages, so nothing is downloaded) but not its editable ldct-clip; the commands then run from a
folder outside the checkout, with no ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ct_factory import phantom_hu, write_nifti

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUNDLE_FILES = ["configs/inference.json", "configs/metadata.json", "configs/logging.conf", "configs/train.json",
                "configs/evaluate.json", "configs/multi_gpu_inference.json", "docs/README.md", "LICENSE"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {"PYTHONUNBUFFERED": "1"}


def _run(*cmd: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _fresh_venv(folder: Path) -> Path:
    """A venv without pip of its own; the suite's site-packages (pip, setuptools, torch, monai ...) behind its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    # a .pth line adds a folder to sys.path without running that folder's .pth files: the suite's editable
    # ldct-clip (an __editable__ .pth there) stays out
    (Path(own) / "suite.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _check_installed(python: Path, work: Path) -> None:
    """From a folder outside the checkout: the package and its bundle come from the venv, and both doors run."""
    where = _run(python, "-c", "import ldct_clip; print(ldct_clip.__file__)", cwd=work).stdout.strip()
    assert str(python.parent.parent) in where and str(ROOT) not in where
    ldct_clip = python.parent / "ldct-clip"
    bundle = Path(_run(ldct_clip, "bundle-path", cwd=work).stdout.strip())
    assert bundle.is_relative_to(python.parent.parent)
    for name in BUNDLE_FILES:
        assert (bundle / name).is_file(), name

    cases = work / "in"
    write_nifti(cases / "case.nii.gz", phantom_hu((48, 40, 2), seed=3))
    _run(ldct_clip, "denoise", cases, work / "cli", "--weights", "demo", "--no-dicom", "-q", cwd=work)
    configs = bundle / "configs"
    _run(python, "-m", "monai.bundle", "run", "--config_file", configs / "inference.json", "--meta_file",
         configs / "metadata.json", "--logging_file", configs / "logging.conf", "--dataset_dir", cases,
         "--output_dir", work / "bundle", "--weights", "demo", "--write_dicom", "false", "--progress", "false",
         cwd=work)
    by_cli = np.asarray(nib.load(work / "cli" / "case.nii.gz").dataobj)
    by_bundle = np.asarray(nib.load(work / "bundle" / "case.nii.gz").dataobj)
    np.testing.assert_array_equal(by_cli, by_bundle)
    assert np.abs(by_cli.astype(float) - phantom_hu((48, 40, 2), seed=3)).max() > 0  # it did denoise


def test_wheel_built_from_the_sdist(tmp_path):
    # sdist from the checkout, the wheel from the unpacked sdist: both must carry the bundle
    from setuptools import build_meta

    dist = tmp_path / "dist"
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        sdist = dist / build_meta.build_sdist(str(dist))
    finally:
        os.chdir(cwd)
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "src", filter="data")
    assert any(n.endswith("ldct_clip/monai_bundle/configs/inference.json") for n in names)
    source = next((tmp_path / "src").iterdir())
    python = _fresh_venv(tmp_path / "venv")
    _run(python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, source, cwd=tmp_path)
    wheel = next(dist.glob("ldct_clip-*.whl"))
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    _check_installed(python, work)


def test_pip_install_from_a_git_url(tmp_path):
    # what `pip install git+https://...` does: clone the committed tree, build, install
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("the checkout is not a git repository")
    python = _fresh_venv(tmp_path / "venv")
    _run(python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", f"git+file://{ROOT}", cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    _check_installed(python, work)
