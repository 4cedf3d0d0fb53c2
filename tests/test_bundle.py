"""The MONAI bundle through `python -m monai.bundle` in subprocesses: metadata, net in/out, export, run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from ldct_clip import bundle_root

BUNDLE = Path(bundle_root())
CONFIGS = BUNDLE / "configs"
TINY_OVERRIDES = ["--network_def#layers", "[1,1,1,1]", "--network_def#width", "8"]
# MONAI's published bundle metadata schema (a copy of the file the zoo's CI downloads; it runs offline)
SCHEMA = Path(__file__).parent / "fixtures" / "meta_schema_20240725.json"


def monai_bundle(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def run_inference(dataset_dir: Path, output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return monai_bundle(
        "run", "--config_file", str(CONFIGS / "inference.json"), "--meta_file", str(CONFIGS / "metadata.json"),
        "--logging_file", str(CONFIGS / "logging.conf"), "--dataset_dir", str(dataset_dir),
        "--output_dir", str(output_dir), *extra,
    )


def test_verify_metadata_offline(tmp_path):
    r = monai_bundle("verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"),
                     "--filepath", str(SCHEMA))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "metadata is verified with no error" in r.stdout + r.stderr


def test_verify_metadata_catches_a_broken_file(tmp_path):
    import json

    meta = json.loads((CONFIGS / "metadata.json").read_text())
    del meta["network_data_format"]["outputs"]
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    r = monai_bundle("verify_metadata", "--meta_file", str(tmp_path / "metadata.json"),
                     "--filepath", str(SCHEMA))
    assert r.returncode != 0


def test_verify_net_in_out():
    r = monai_bundle("verify_net_in_out", "network_def", "--meta_file", str(CONFIGS / "metadata.json"),
                     "--config_file", str(CONFIGS / "inference.json"), "--n", "2", "--device", "cpu", *TINY_OVERRIDES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "data shape of network is verified with no error" in r.stdout + r.stderr


def test_ckpt_export_torchscript(tmp_path, tiny_checkpoint):
    ts = tmp_path / "model.ts"
    r = monai_bundle("ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file", str(tiny_checkpoint),
                     "--meta_file", str(CONFIGS / "metadata.json"), "--config_file", str(CONFIGS / "inference.json"),
                     *TINY_OVERRIDES)
    assert r.returncode == 0, r.stdout + r.stderr
    scripted = torch.jit.load(str(ts))
    from ldct_clip.checkpoints import load_checkpoint

    x = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        assert torch.allclose(scripted(x), load_checkpoint(tiny_checkpoint).eval()(x), atol=1e-6)


ONNX_AXES = "{'input_names':['image'],'output_names':['pred'],'dynamic_axes':{'image':{0:'b',2:'h',3:'w'},'pred':{0:'b',2:'h',3:'w'}}}"


def test_onnx_export_matches_eager_pytorch(tmp_path, tiny_checkpoint):
    # the model card's command: one ONNX graph with dynamic batch, height and width, run by onnxruntime
    ort = pytest.importorskip("onnxruntime", reason="the export extra (pip install 'ldct-clip[export]')")
    onnx_file = tmp_path / "model.onnx"
    r = monai_bundle("onnx_export", "network_def", "--filepath", str(onnx_file), "--ckpt_file", str(tiny_checkpoint),
                     "--meta_file", str(CONFIGS / "metadata.json"), "--config_file", str(CONFIGS / "inference.json"),
                     "--input_shape", "[1,1,64,64]", "--converter_kwargs", ONNX_AXES, *TINY_OVERRIDES)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    from ldct_clip.checkpoints import load_checkpoint

    model = load_checkpoint(tiny_checkpoint).eval()
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 512, 512), (1, 1, 77, 101)]:  # a whole slice and one whose sides need padding
        x = rng.random(shape, dtype=np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        got = session.run(None, {"image": x})[0]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_tracing_the_network_gives_no_tracer_warning(tiny_checkpoint):
    # the input padding must not depend on Python tests of the input size, which a trace would freeze silently
    import warnings

    from ldct_clip.checkpoints import load_checkpoint

    model = load_checkpoint(tiny_checkpoint).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, torch.rand(1, 1, 64, 64))
    x = torch.rand(1, 1, 77, 101)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), atol=1e-6, rtol=0)


def _nifti_case(folder: Path, name: str = "case.nii.gz", shape=(64, 72, 5)) -> tuple[Path, np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    hu = np.round(rng.normal(40.0, 25.0, shape)).astype(np.int16)
    affine = np.array([[-0.7, 0, 0, 120.0], [0, -0.7, 0, 95.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
    path = folder / name
    nib.save(nib.Nifti1Image(hu, affine), path)
    return path, hu, affine


def test_bundle_run_nifti(tmp_path, tiny_checkpoint):
    src, hu, affine = _nifti_case(tmp_path / "in")
    before = src.read_bytes()
    out = tmp_path / "out"
    r = run_inference(tmp_path / "in", out, "--ckpt_path", str(tiny_checkpoint), *TINY_OVERRIDES)
    assert r.returncode == 0, r.stdout + r.stderr
    img = nib.load(out / "case.nii.gz")
    assert img.shape == hu.shape and img.get_data_dtype() == np.int16
    np.testing.assert_allclose(img.affine, affine, atol=1e-5)
    assert (out / "case.png").stat().st_size > 0
    assert "slices/s" in r.stdout + r.stderr
    assert src.read_bytes() == before


def test_bundle_refuses_to_run_without_weights(tmp_path):
    _nifti_case(tmp_path / "in")
    r = run_inference(tmp_path / "in", tmp_path / "out", "--ckpt_path", str(tmp_path / "none.pt"), *TINY_OVERRIDES)
    assert r.returncode == 2
    assert "no checkpoint at" in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr
    assert not (tmp_path / "out" / "case.nii.gz").exists()


def test_bundle_untrained_run_says_so(tmp_path):
    _nifti_case(tmp_path / "in")
    r = run_inference(tmp_path / "in", tmp_path / "out", "--allow_untrained", "true", *TINY_OVERRIDES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "UNTRAINED weights" in r.stdout + r.stderr


def test_bundle_empty_folder(tmp_path, tiny_checkpoint):
    (tmp_path / "in").mkdir()
    r = run_inference(tmp_path / "in", tmp_path / "out", "--ckpt_path", str(tiny_checkpoint), *TINY_OVERRIDES)
    assert r.returncode == 2
    assert "Traceback" not in r.stdout + r.stderr


def test_bundle_identity_network_returns_input_hu(tmp_path):
    # the whole bundle path (read, window, infer, inverse, write) with an identity network is lossless
    src, hu, _ = _nifti_case(tmp_path / "in", shape=(48, 40, 3))
    r = run_inference(tmp_path / "in", tmp_path / "out", "--network_def", "$torch.nn.Identity()",
                      "--allow_untrained", "true", "--write_png", "false")
    assert r.returncode == 0, r.stdout + r.stderr
    out = np.asarray(nib.load(tmp_path / "out" / "case.nii.gz").dataobj)
    np.testing.assert_array_equal(out, hu)


@pytest.mark.parametrize("config", ["inference.json"])
def test_config_has_the_keys_tools_rely_on(config):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(CONFIGS / config)
    for key in ("bundle_root", "device", "dataset_dir", "dataset", "evaluator", "network_def", "inferer",
                "preprocessing", "postprocessing", "handlers", "output_dir"):
        assert key in parser, key


def test_false_from_the_command_line_means_false(tmp_path, tiny_checkpoint):
    _nifti_case(tmp_path / "in")
    r = run_inference(tmp_path / "in", tmp_path / "out", "--ckpt_path", str(tiny_checkpoint), "--write_png", "false",
                      *TINY_OVERRIDES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "out" / "case.nii.gz").exists() and not (tmp_path / "out" / "case.png").exists()


def test_declared_components_give_the_cli_voxels(tmp_path, tiny_checkpoint):
    # MONAI Label's BundleInferTask runs inference.json's preprocessing -> inferer -> postprocessing; on an odd-sized
    # volume with scanner padding (-3024 HU) and a metal insert (3500 HU), outside the HU window, that chain must
    # give the voxels `ldct-clip denoise` writes (the padding and the metal kept at their input value)
    from monai.bundle import ConfigParser

    from ldct_clip.checkpoints import load_checkpoint
    from ldct_clip.cli import main
    from ldct_clip.engine.precision import prepare_model
    from ldct_clip.transforms import CASE_WRITERS
    from monai.transforms import Compose

    rng = np.random.default_rng(0)
    hu = rng.normal(40, 30, (61, 47, 3)).round().astype(np.int16)
    hu[:5] = -3024
    hu[30:34, 20:24] = 3500
    src = tmp_path / "in" / "case.nii.gz"
    src.parent.mkdir()
    nib.save(nib.Nifti1Image(hu, np.diag([0.7, 0.7, 2.5, 1.0])), src)
    assert main(["denoise", str(src.parent), str(tmp_path / "cli"), "--checkpoint", str(tiny_checkpoint),
                 "--device", "cpu", "--precision", "fp32", "--no-png", "-q"]) == 0
    cli = np.asarray(nib.load(tmp_path / "cli" / "case.nii.gz").dataobj)

    parser = ConfigParser()
    parser.read_config(CONFIGS / "inference.json")
    parser.update({"device": "$torch.device('cpu')", "precision": "fp32"})
    network = prepare_model(load_checkpoint(tiny_checkpoint), "cpu")
    data = parser.get_parsed_content("preprocessing")({"image": str(src)})
    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None], network)[0]
    # as MONAI Label's post_filter does: the declared postprocessing without the transforms that write case files
    post = [t for t in parser.get_parsed_content("postprocessing").transforms if not isinstance(t, CASE_WRITERS)]
    pred = Compose(post)(data)["pred"]
    got = np.asarray(pred[0])
    assert got.shape == hu.shape
    np.testing.assert_array_equal(got[:5], -3024)
    np.testing.assert_array_equal(got[30:34, 20:24], 3500)
    np.testing.assert_array_equal(got, cli)


def test_overriding_a_declared_component_changes_the_run(tmp_path, tiny_checkpoint):
    # inference.json is the run path: a component edited from the command line is what `monai.bundle run` executes
    src, hu, _ = _nifti_case(tmp_path / "in")
    hu[:4] = -3024  # scanner padding, below the HU window
    nib.save(nib.Nifti1Image(hu, nib.load(src).affine), src)
    args = ("--ckpt_path", str(tiny_checkpoint), "--write_png", "false", *TINY_OVERRIDES)
    r = run_inference(tmp_path / "in", tmp_path / "plain", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    plain = np.asarray(nib.load(tmp_path / "plain" / "case.nii.gz").dataobj)
    np.testing.assert_array_equal(plain[:4], -3024)  # KeepOutsideWindowd keeps the padding

    # 1. a postprocessing component switched off: the padding is now the network's output, inside the window
    r = run_inference(tmp_path / "in", tmp_path / "no_keep", *args, "--denoised_hu#transforms#1#_disabled_", "true")
    assert r.returncode == 0, r.stdout + r.stderr
    no_keep = np.asarray(nib.load(tmp_path / "no_keep" / "case.nii.gz").dataobj)
    assert (no_keep[:4] > -1500).all()  # near the window edge (-1024), far from -3024
    np.testing.assert_array_equal(no_keep[4:], plain[4:])

    # 2. the inferer's windows made smaller: 32 px windows blended over each slice instead of the whole slice
    r = run_inference(tmp_path / "in", tmp_path / "windows", *args, "--inferer#roi_size", "[32,32]")
    assert r.returncode == 0, r.stdout + r.stderr
    windows = np.asarray(nib.load(tmp_path / "windows" / "case.nii.gz").dataobj)
    np.testing.assert_array_equal(windows[:4], -3024)
    assert np.abs(windows.astype(np.int32) - plain).max() >= 2  # more than a rounding step (kernels may differ by 1)

    # 3. the noise retention (denoised_hu's RetainNoised) set to 0: the network's output as it is; the shipped
    # default (0.15) gives back that share of what the network removed
    r = run_inference(tmp_path / "in", tmp_path / "no_retention", *args, "--noise_retention", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    raw = np.asarray(nib.load(tmp_path / "no_retention" / "case.nii.gz").dataobj).astype(np.float64)
    removed = hu - raw
    assert np.abs(removed[4:]).max() > 20  # the random network changes the image: a share of 0.15 is measurable
    # ... at most 5 HU of it (noise_retention_max_sd): per axial slice, 0.15 or 5 / the robust SD of the removed
    # residual in soft tissue, whichever is smaller
    share = np.full(hu.shape[-1], 0.15)
    for k in range(hu.shape[-1]):
        r = removed[..., k][(raw[..., k] >= -300) & (raw[..., k] <= 300)]
        if r.size >= 256:
            share[k] = min(0.15, 5.0 / (1.4826 * np.median(np.abs(r - np.median(r)))))
    assert np.abs(plain - (raw + share * removed)).max() <= 1.0  # each run rounds to whole HU
    # the cap switched off: the share itself everywhere
    r = run_inference(tmp_path / "in", tmp_path / "no_cap", *args, "--noise_retention_max_sd", "null")
    assert r.returncode == 0, r.stdout + r.stderr
    no_cap = np.asarray(nib.load(tmp_path / "no_cap" / "case.nii.gz").dataobj)
    assert np.abs(no_cap - (raw + 0.15 * removed)).max() <= 1.0


def test_model_card_follows_the_model_zoo_template():
    # the zoo's template headings, in its order; paths relative to the bundle wherever the bundle is copied
    import re

    card = (BUNDLE / "docs" / "README.md").read_text()
    headings = re.findall(r"^#{2,3} \*\*(.+?)\*\*", card, flags=re.MULTILINE)
    template = ["Authors", "Tags", "Model Description", "Data", "Performance", "Additinal Usage Steps",
                "System Configuration", "Limitations", "Citation Info", "References"]
    assert [h for h in headings if h in template] == template, headings
    assert "monai_bundle/" not in card and "tests/" not in card
    for link in re.findall(r"\]\(([^)#]+)\)", card):  # images and links into the bundle exist in the copy
        if not link.startswith("http"):
            assert (BUNDLE / "docs" / link).exists(), link
