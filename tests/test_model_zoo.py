"""The MONAI model zoo's own CI on the bundle, as the zoo runs it on a bundle it accepts.

The zoo's scripts are not part of the project: they are read from ``../shared/model-zoo-ci`` (its ``ci/`` at a pinned
commit; ``$LDCT_CLIP_MODEL_ZOO_CI`` points elsewhere) and copied with the bundle into a temporary zoo checkout,
the bundle at ``models/ldct_clip_denoising``. Run there, from the zoo's root, exactly as its CI does:

- ``ci/prepare_schema.py`` (the published schema is put where its download lands, so it runs offline),
- ``ci/get_bundle_requirements.py``: the versions the zoo would install are the ones this suite runs on,
- ``ci/verify_bundle.py -m min`` and ``-m full``, with one step skipped: downloading ``large_files.yml``'s
  ``models/model.pt``, which is not published; ``models/model.pt`` is made as the zoo makes fake weights
  (the config's ``network_def`` with random weights, ``verify_bundle._produce_fake_weights``),
- ``ci/unit_tests/runner.py -b ldct_clip_denoising`` and ``--dist True`` with this project's
  ``tests/model_zoo/test_ldct_clip_denoising{,_dist}.py``: train, evaluate and infer workflows built by
  ``ConfigWorkflow`` under ``check_properties()`` and run on fake data.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ldct_clip import bundle_root

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ZOO_CI = Path(os.environ.get("LDCT_CLIP_MODEL_ZOO_CI", ROOT.parent / "shared" / "model-zoo-ci"))
NAME = "ldct_clip_denoising"
SCHEMA = Path(__file__).parent / "fixtures" / "meta_schema_20240725.json"

if not (ZOO_CI / "ci" / "verify_bundle.py").is_file():
    pytest.skip(f"the model zoo's CI scripts are not at {ZOO_CI}", allow_module_level=True)


def _run(zoo: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    # the zoo's scripts run from its root with its ci/ on the path; torchrun must be the one beside this python
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = subprocess.run([sys.executable, *args], cwd=zoo, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
    return r


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """A zoo checkout: its ci/ and model_info.json, the bundle copied in, the schema prepared, fake weights."""
    zoo = tmp_path_factory.mktemp("model-zoo")
    shutil.copytree(ZOO_CI / "ci", zoo / "ci")
    (zoo / "models").mkdir()
    shutil.copy(ZOO_CI / "models" / "model_info.json", zoo / "models" / "model_info.json")
    shutil.copytree(bundle_root(), zoo / "models" / NAME, ignore=shutil.ignore_patterns("models", "eval", "logs"))
    for test in (ROOT / "tests" / "model_zoo").glob(f"test_{NAME}*.py"):
        shutil.copy(test, zoo / "ci" / "unit_tests" / test.name)
    # prepare_schema.py downloads the metadata's schema URL to models/<file name> unless that file exists
    shutil.copy(SCHEMA, zoo / "models" / SCHEMA.name)
    _run(zoo, "ci/prepare_schema.py", "--l", NAME)
    assert (zoo / "models" / NAME / "eval" / "schema.json").read_bytes() == SCHEMA.read_bytes()
    bundle = zoo / "models" / NAME
    (bundle / "models").mkdir()
    _run(zoo, "-c", "import sys; sys.path.insert(0, 'ci'); from verify_bundle import _produce_fake_weights; "
         f"_produce_fake_weights('{bundle}/configs/inference.json', '{bundle}/configs/metadata.json', '{NAME}', 'cpu')")
    shutil.move(zoo / "model.pt", bundle / "models" / "model.pt")
    return zoo


def test_the_zoo_installs_the_versions_this_suite_runs_on(zoo):
    r = _run(zoo, "ci/get_bundle_requirements.py", "--b", NAME)
    requirements = Path(zoo / r.stdout.strip().splitlines()[-1]).read_text().split()
    assert any(req.startswith("torch==") for req in requirements) and "ldct-clip==0.1.0" in requirements
    for req in requirements:
        name, version = req.split("==")
        if name == "monai":
            continue  # the zoo asks for a range of release candidates up to the next patch (ALLOW_MONAI_RC)
        assert importlib.metadata.version(name) == version, f"metadata.json pins {req}"


@pytest.mark.parametrize("mode", ["min", "full"])
def test_verify_bundle(zoo, mode):
    # verify_bundle.py as the zoo's CI runs it (-b NAME -m MODE), less the download of unpublished weights
    r = _run(zoo, "-c", "import sys, runpy; sys.path.insert(0, 'ci'); import verify_bundle; "
             "verify_bundle.download_large_files = lambda **kw: print('skipped: download of', kw); "
             f"sys.argv = ['verify_bundle.py', '-b', '{NAME}', '-m', '{mode}']; verify_bundle.verify('{NAME}', 'models', '{mode}')")
    assert "skipped: download of" in r.stdout and "metadata format is verified correctly." in r.stdout
    if mode == "full":
        assert "data shape is verified correctly." in r.stdout
        assert "export weights into TorchScript module successfully." in r.stdout


def test_unit_tests(zoo):
    r = _run(zoo, "ci/unit_tests/runner.py", "-b", NAME)
    text = r.stdout + r.stderr
    assert "Ran 2 tests" in text and "OK" in text, text[-3000:]


def test_unit_tests_dist(zoo):
    r = _run(zoo, "ci/unit_tests/runner.py", "-b", NAME, "--dist", "True")
    text = r.stdout + r.stderr
    assert "Ran 2 tests" in text and "OK" in text, text[-3000:]
