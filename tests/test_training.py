"""The training recipe: data sources, online noise, mixup, clipping, schedule, and train.json end to end.

The bundle runs (``python -m monai.bundle run`` in subprocesses) use a width-8 network, a random encoder
(``encoder_weights=$None``: no CLIP download) and tiny phantom data written to ``tmp_path``, with one torch
thread each (tiny models run faster single-threaded, and CI machines have 2 cores).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ldct_clip import bundle_root
from ldct_clip.checkpoints import load_checkpoint
from ldct_clip.ct.training_data import DosePairSlices, TrainingSlices
from ldct_clip.transforms.ct_noise import RandCTNoised, sigma_for_slice_thickness
from ldct_clip.errors import InputError
from ct_factory import write_nifti
from ldct_clip.simulation.phantom import make_phantom
from ldct_clip.engine.mixup import BatchMixup
from ldct_clip.engine.trainer import DenoisingTrainer, num_epochs, trainable_parameter_names
from ldct_clip.handlers.json_lines import read_log
from ldct_clip.metrics.cumulative import CTImageQualityMetric

from conftest import TINY, tiny_model

CONFIGS = Path(bundle_root()) / "configs"
TINY_TRAIN = [
    "--network_def#layers", "[1,1,1,1]", "--network_def#width", "8", "--network_def#encoder_weights", "$None",
    "--num_workers", "0", "--batch_size", "4", "--crop_size", "48", "--lr", "0.001", "--log_interval", "5",
]


# ----------------------------------------------------------------------------------------------------------
# tiny data on disk
# ----------------------------------------------------------------------------------------------------------


def _noisy(hu: np.ndarray, seed: int, sd: float = 80.0) -> np.ndarray:
    return hu + np.random.default_rng(seed).normal(0.0, sd, hu.shape).astype(np.float32)


def write_volumes(root: Path, size: int = 64) -> dict[str, Path]:
    """3 training volumes (normal dose) and one low/normal-dose validation pair, as NIfTI."""
    for i in range(3):
        write_nifti(root / "train" / f"P{i}.nii.gz", np.rint(make_phantom((size, size, 6), seed=i)))
    nd = make_phantom((size, size, 3), seed=9)
    write_nifti(root / "val_nd" / "V.nii.gz", np.rint(nd))
    write_nifti(root / "val_ld" / "V.nii.gz", np.rint(_noisy(nd, 1)))
    return {"train": root / "train", "val_ld": root / "val_ld", "val_nd": root / "val_nd"}


def write_npy(root: Path, patients=("L067", "L096", "L506"), slices: int = 3, size: int = 64, unit: bool = True) -> Path:
    """RED-CNN layout: <patient>_<k>_input.npy / _target.npy, (rows, cols), (HU + 1024) / 4096 if ``unit``."""
    root.mkdir(parents=True, exist_ok=True)
    for j, p in enumerate(patients):
        vol = make_phantom((size, size, slices), seed=20 + j)
        for k in range(slices):
            nd = vol[:, :, k].T
            ld = _noisy(nd, 100 * j + k)
            scale = (lambda a: (a + 1024.0) / 4096.0) if unit else (lambda a: a)
            np.save(root / f"{p}_{k}_target.npy", scale(nd).astype(np.float32))
            np.save(root / f"{p}_{k}_input.npy", scale(ld).astype(np.float32))
    return root


# ----------------------------------------------------------------------------------------------------------
# data sources
# ----------------------------------------------------------------------------------------------------------


def test_npy_training_excludes_held_out_and_validation_uses_it(tmp_path):
    root = write_npy(tmp_path / "npy", slices=11)
    train = TrainingSlices(root)
    assert train.layout == "npy" and train.patients == ["L067", "L096"] and len(train) == 22
    assert all(not item["name"].startswith("L506") for item in (train[i] for i in range(len(train))))
    assert [train[i]["name"] for i in range(3)] == ["L067_0", "L067_1", "L067_2"]  # natural order
    assert train[10]["name"] == "L067_10"
    val = DosePairSlices(root, patients=["L506"])
    assert len(val) == 11 and {val[i]["name"][:4] for i in range(len(val))} == {"L506"}
    item = val[0]
    assert item["image"].shape == item["label"].shape == (1, 64, 64) and item["label"].dtype == np.float32
    # (HU + 1024) / 4096 files come back in HU, transposed to (X, Y)
    expected = make_phantom((64, 64, 11), seed=22)[:, :, 0]
    np.testing.assert_allclose(item["label"][0], expected, atol=0.05)
    assert len(DosePairSlices(root, patients=["L506"], max_slices=4)) == 4


def test_npy_in_hu_and_custom_patient_regex(tmp_path):
    root = write_npy(tmp_path / "npy", patients=("pat-a", "pat-b"), unit=False)
    for f in list(root.iterdir()):
        f.rename(root / ("study_" + f.name))  # study_pat-a_0_target.npy
    train = TrainingSlices(root, held_out=["pat-b"], patient_regex=r"^study_(?P<patient>[^_]+)_")
    assert train.patients == ["pat-a"]
    assert float(train[0]["label"].min()) < -900  # read as HU, not rescaled


def test_volume_training_slices(tmp_path):
    paths = write_volumes(tmp_path)
    train = TrainingSlices(paths["train"], min_size=48)
    assert train.layout == "volumes" and len(train) == 18
    assert train[0]["label"].shape == (1, 64, 64)
    assert len(TrainingSlices(paths["train"], slice_stride=2)) == 9
    val = DosePairSlices(paths["val_ld"], paths["val_nd"])
    assert len(val) == 3 and val[1]["slice"] == 1
    assert not np.array_equal(val[0]["image"], val[0]["label"])


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "is not a folder"),
        ("empty", "No DICOM series or NIfTI"),
        ("unpaired", "have only one of"),
        ("only_held_out", "no training slices left"),
        ("too_small", "smaller than the training crop"),
    ],
)
def test_bad_training_folders(tmp_path, setup, message):
    root = tmp_path / "data"
    kwargs = {}
    if setup == "empty":
        root.mkdir()
        (root / "notes.txt").write_text("nothing here")
    elif setup == "unpaired":
        write_npy(root)
        (root / "L067_1_input.npy").unlink()
    elif setup == "only_held_out":
        write_npy(root, patients=("L506",))
    elif setup == "too_small":
        write_npy(root, size=32)
        kwargs["min_size"] = 64
    with pytest.raises(InputError, match=message):
        TrainingSlices(root, **kwargs)


def test_bad_validation_folders(tmp_path):
    paths = write_volumes(tmp_path)
    with pytest.raises(InputError, match="are the same"):
        DosePairSlices(paths["train"], paths["train"])
    with pytest.raises(InputError, match="do not pair up by name"):
        DosePairSlices(paths["train"], _copy_renamed(paths, tmp_path))
    write_nifti(tmp_path / "short" / "V.nii.gz", np.zeros((64, 64, 2)))
    with pytest.raises(InputError, match="differs in shape"):
        DosePairSlices(paths["val_ld"], tmp_path / "short")
    with pytest.raises(InputError, match="pairs"):
        DosePairSlices(write_npy(tmp_path / "npy"), patients=["L999"])


def _copy_renamed(paths: dict[str, Path], tmp_path: Path) -> Path:
    """The training volumes under other names: nothing pairs with them."""
    out = tmp_path / "renamed"
    out.mkdir()
    for f in sorted(paths["train"].iterdir()):
        (out / ("X" + f.name)).write_bytes(f.read_bytes())
    return out


# ----------------------------------------------------------------------------------------------------------
# online noise
# ----------------------------------------------------------------------------------------------------------


def test_gaussian_training_noise_level_and_reproducibility():
    clean = np.zeros((1, 128, 128), np.float32)
    t = RandCTNoised(keys="image", sigma=5.0).set_random_state(3)
    a = t({"image": clean})["image"]
    sd = float(np.std(a))
    assert abs(sd - 5.0 / 255.0 * 4096.0) < 3.0  # 5/255 of the [0, 1] window: about 80 HU
    b = RandCTNoised(keys="image", sigma=5.0).set_random_state(3)({"image": clean})["image"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, t({"image": clean})["image"])  # a new draw on every call
    # thicker slices: smaller sigma (variance ~ 1 / thickness)
    assert sigma_for_slice_thickness(5.0, 3.0) == pytest.approx(5.0 / math.sqrt(3.0))
    thick = RandCTNoised(keys="image", sigma=5.0, slice_thickness_mm=3.0).set_random_state(3)
    assert float(np.std(thick({"image": clean})["image"])) == pytest.approx(sd / math.sqrt(3.0), rel=1e-5)
    # tensors keep their type
    out = t({"image": torch.zeros(1, 32, 32)})["image"]
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32


def test_projection_training_noise_option():
    clean = make_phantom((64, 64), seed=1)[None]
    t = RandCTNoised(keys="image", noise="projection", dose_fraction=0.25,
                     simulation_kwargs={"pixel_size_mm": 6.0}).set_random_state(0)
    noisy = t({"image": clean})["image"]
    assert noisy.shape == clean.shape and float(np.std(noisy - clean)) > 1.0
    with pytest.raises(InputError, match="noise must be"):
        RandCTNoised(keys="image", noise="poisson")


def test_projection_noise_dose_range_per_plane_and_tensors():
    # 8 planes in one call: each draws its dose from [0.05, 1.0], so their noise levels spread widely,
    # while a fixed dose gives them all one level.  Tensors stay tensors.
    clean = torch.from_numpy(np.repeat(make_phantom((64, 64), seed=1)[None], 8, axis=0).astype(np.float32))
    body = clean[0] > -500
    kw = {"simulation_kwargs": {"pixel_size_mm": 6.0}}
    spread = RandCTNoised(keys="image", noise="projection", dose_fraction=[0.05, 1.0], **kw).set_random_state(0)
    fixed = RandCTNoised(keys="image", noise="projection", dose_fraction=0.25, **kw).set_random_state(0)
    sd_spread = [float((n - clean[0])[body].std()) for n in spread({"image": clean})["image"]]
    out = fixed({"image": clean})["image"]
    assert isinstance(out, torch.Tensor) and out.shape == clean.shape and out.dtype == torch.float32
    sd_fixed = [float((n - clean[0])[body].std()) for n in out]
    assert max(sd_fixed) / min(sd_fixed) < 1.3
    assert max(sd_spread) / min(sd_spread) > 2.0
    with pytest.raises(InputError, match="dose_fraction"):
        RandCTNoised(keys="image", noise="projection", dose_fraction=[0.5, 0.1])


# ----------------------------------------------------------------------------------------------------------
# recipe pieces
# ----------------------------------------------------------------------------------------------------------


def test_mixup_same_lambda_and_permutation_on_half_of_the_batches():
    mix = BatchMixup(alpha=1.2, prob=0.5, seed=0)
    target = torch.arange(8, dtype=torch.float32).reshape(8, 1, 1, 1).expand(8, 1, 4, 4).contiguous()
    noisy = 3.0 * target + 1.0  # an affine relation survives mixing only with one lambda and one permutation
    mixed, lambdas = 0, []
    for _ in range(2000):
        x, y = mix(noisy, target)
        if mix.last_lambda is None:
            assert x is noisy and y is target
            continue
        mixed += 1
        lambdas.append(mix.last_lambda)
        torch.testing.assert_close(x, 3.0 * y + 1.0)
    assert abs(mixed / 2000 - 0.5) < 0.05
    lam = np.asarray(lambdas)
    assert 0 < lam.min() and lam.max() < 1 and abs(lam.mean() - 0.5) < 0.02  # Beta(1.2, 1.2) is symmetric
    assert abs(lam.var() - 1.0 / (4 * (2 * 1.2 + 1))) < 0.01  # Var Beta(a, a) = 1 / (4 (2a + 1))
    assert BatchMixup(prob=0.0, seed=1)(noisy, target)[0] is noisy


def _parsed(**overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(CONFIGS / "train.json")
    parser["network_def#layers"] = [1, 1, 1, 1]
    parser["network_def#width"] = 8
    parser["network_def#encoder_weights"] = None
    parser["device"] = "$torch.device('cpu')"
    for k, v in overrides.items():
        parser[k] = v
    return parser


def test_config_recipe_values_and_optimizer_skips_the_encoder():
    parser = _parsed()
    for key, value in {"iterations": 40000, "batch_size": 16, "lr": 3e-4, "lr_min": 1e-6, "weight_decay": 1e-4,
                       "grad_clip_norm": 0.01, "mixup_alpha": 1.2, "mixup_prob": 0.5, "aug_level": 0.025,
                       "crop_size": 128, "sigma": 5.0, "noise": "gaussian"}.items():
        assert parser.get_parsed_content(key) == value, key
    net = parser.get_parsed_content("network_def")
    assert net.aug_level == 0.025
    opt = parser.get_parsed_content("optimizer")
    assert isinstance(opt, torch.optim.AdamW)
    group = opt.param_groups[0]
    assert group["lr"] == 3e-4 and group["weight_decay"] == 1e-4 and tuple(group["betas"]) == (0.9, 0.999)
    names = trainable_parameter_names(net, opt)
    assert names and not [n for n in names if n.startswith("encoder.")]
    assert "first.weight" in names and "last.weight" in names and any(n.startswith("up_path.") for n in names)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(
        p.numel() for n, p in net.named_parameters() if not n.startswith("encoder."))
    from monai.bundle import ConfigParser

    for config in ("train.json", "multi_gpu_train.json"):
        ConfigParser.load_config_file(CONFIGS / config)  # valid JSON
    for key in ("bundle_root", "device", "dataset_dir", "network_def", "train#preprocessing", "train#dataset",
                "train#dataloader", "train#inferer", "train#handlers", "train#trainer", "validate#preprocessing",
                "validate#dataset", "validate#dataloader", "validate#inferer", "validate#postprocessing",
                "validate#handlers", "validate#evaluator", "initialize", "run", "finalize"):
        assert key in parser, key


def test_cosine_schedule_endpoints():
    parser = _parsed(iterations=100)
    opt = parser.get_parsed_content("optimizer")
    sched = parser.get_parsed_content("lr_scheduler")
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(100):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(3e-4)
    assert lrs[50] == pytest.approx((3e-4 + 1e-6) / 2)
    assert lrs[100] == pytest.approx(1e-6)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert num_epochs(40000, 1000) == 40
    with pytest.raises(InputError, match="multiple of val_interval"):
        num_epochs(100, 30)


def test_trainer_clips_gradients_and_keeps_the_encoder_frozen():
    from monai.engines.utils import IterationEvents

    torch.manual_seed(0)
    net = tiny_model(aug_level=0.025)
    opt = torch.optim.AdamW(net.trainable_parameters(), lr=1e-3)
    clean = torch.rand(4, 1, 32, 32)
    loader = [{"image": clean + 0.5 * torch.randn_like(clean), "label": clean}] * 3
    trainer = DenoisingTrainer(device="cpu", max_epochs=1, train_data_loader=loader, network=net, optimizer=opt,
                               mixup=BatchMixup(seed=0), grad_clip_norm=0.01)
    seen = []

    def after_clipping(engine):  # registered after the trainer's own clipping handler
        grads = [p.grad for p in net.trainable_parameters() if p.grad is not None]
        seen.append((float(engine.state.grad_norm), float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads])))))

    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, after_clipping)
    encoder_before = {k: v.clone() for k, v in net.encoder.named_parameters()}
    trainer.run()
    assert len(seen) == 3
    for before, after in seen:
        assert before > 0.01  # the raw gradient is larger than the limit here ...
        assert after <= 0.01 * (1 + 1e-4)  # ... and the optimizer sees it clipped
    for k, v in net.encoder.named_parameters():
        torch.testing.assert_close(v, encoder_before[k], rtol=0, atol=0)
    assert float(trainer.state.output[0]["loss"]) > 0
    with pytest.raises(ValueError, match="accumulation"):
        DenoisingTrainer(device="cpu", max_epochs=1, train_data_loader=loader, network=net, optimizer=opt,
                         accumulation_steps=2)


def test_metric_matches_the_metrics_module():
    from ldct_clip.metrics import compute_metrics

    nd = make_phantom((48, 48, 2), seed=3)
    ld = _noisy(nd, 5)
    ref = compute_metrics(ld, nd, "paper")
    pred = torch.from_numpy(np.moveaxis(ld, -1, 0)[:, None])
    target = torch.from_numpy(np.moveaxis(nd, -1, 0)[:, None])
    for name in ("psnr", "ssim", "rmse"):
        metric = CTImageQualityMetric(name, "paper")
        metric(y_pred=pred, y=target)
        assert float(metric.aggregate()) == pytest.approx(ref[name], rel=1e-5), name


# ----------------------------------------------------------------------------------------------------------
# train.json end to end
# ----------------------------------------------------------------------------------------------------------


def monai_train(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIGS / "train.json"),
         "--logging_file", str(CONFIGS / "logging.conf"), *TINY_TRAIN, *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )


@pytest.mark.slow
def test_bundle_train_volumes_learns_saves_and_resumes(tmp_path):
    paths = write_volumes(tmp_path / "data")
    out = tmp_path / "run"
    common = ["--dataset_dir", str(paths["train"]), "--val_low_dose_dir", str(paths["val_ld"]),
              "--val_normal_dose_dir", str(paths["val_nd"]), "--ckpt_dir", str(out / "models"),
              "--output_dir", str(out / "logs"), "--iterations", "40", "--val_interval", "20"]
    # first run stops after one of two validation periods, as if interrupted
    r = monai_train(*common, "--train#trainer#max_epochs", "1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (out / "models" / "model.pt").exists() and (out / "models" / "checkpoint_last.pt").exists()
    last = torch.load(out / "models" / "checkpoint_last.pt", weights_only=True)
    assert set(last) == {"model", "optimizer", "lr_scheduler", "trainer"} and last["trainer"]["iteration"] == 20

    r = monai_train(*common, "--resume_from", str(out / "models" / "checkpoint_last.pt"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Restored all variables" in r.stdout + r.stderr

    train = read_log(out / "logs" / "train_log.jsonl", "train")
    assert [rec["iteration"] for rec in train] == [5, 10, 15, 20, 25, 30, 35, 40]  # resumed at 21, not at 1
    assert train[-1]["lr"] == pytest.approx(1e-6)  # the cosine schedule went on from the saved state
    assert train[0]["lr"] < 1e-3 and all(rec["grad_norm"] > 0 for rec in train)
    losses = [rec["loss"] for rec in train]
    assert np.mean(losses[-2:]) < 0.6 * losses[0], losses  # it learns
    val = read_log(out / "logs" / "train_log.jsonl", "validation")
    assert [rec["iteration"] for rec in val] == [20, 40]
    assert all(np.isfinite(rec["val_psnr"]) and 0 < rec["val_ssim"] <= 1 for rec in val)
    assert list((out / "logs").glob("events.out.tfevents.*"))

    # the best model is a plain state dict that load_checkpoint rebuilds and runs
    model = load_checkpoint(out / "models" / "model.pt").eval()
    assert model.encoder.width == TINY["width"]
    with torch.no_grad():
        y = model(torch.rand(1, 1, 64, 80))
    assert y.shape == (1, 1, 64, 80) and torch.isfinite(y).all()
    assert load_checkpoint(out / "models" / "checkpoint_last.pt").encoder.width == 8


@pytest.mark.slow
def test_bundle_train_npy_layout_holds_out_l506(tmp_path):
    root = write_npy(tmp_path / "npy")
    out = tmp_path / "run"
    r = monai_train("--dataset_dir", str(root), "--ckpt_dir", str(out / "models"), "--output_dir", str(out / "logs"),
                    "--iterations", "10", "--val_interval", "10")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = r.stdout + r.stderr
    assert "training data: 6 slices of 2 patient(s)" in text
    assert "validation data: 3 slice pairs" in text
    assert load_checkpoint(out / "models" / "model.pt") is not None
    val = read_log(out / "logs" / "train_log.jsonl", "validation")
    assert len(val) == 1 and val[0]["val_psnr"] > 0


def test_config_empty_folder_says_what_to_do(tmp_path):
    # what `monai.bundle run` reports (it prints the InputError) when dataset_dir holds no CT data
    (tmp_path / "empty").mkdir()
    parser = _parsed(dataset_dir=str(tmp_path / "empty"))
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("train#dataset")
    chain, e = [], info.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    assert any(isinstance(x, InputError) and "Point to the folder" in str(x) for x in chain)


def test_one_validation_folder_validates_held_out_patients_with_the_training_noise(tmp_path):
    # train.json's default: the training folder for both validation folders; the held-out patient's normal-dose
    # volume is the label, and the input is the same slice with the paper's Gaussian noise at a fixed seed
    paths = write_volumes(tmp_path)
    held_out = DosePairSlices(paths["train"], paths["train"], patients=["P1"], simulated_sigma=5.0)
    assert len(held_out) == 6 and {held_out[i]["name"] for i in range(len(held_out))} == {"P1"}
    item = held_out[0]
    noise_sd = float(np.std(item["image"] - item["label"]))
    assert 70.0 < noise_sd < 90.0  # 5/255 of the 4096 HU window is 80 HU
    np.testing.assert_array_equal(held_out[0]["image"], item["image"])  # the same input at every validation
    with pytest.raises(InputError, match="no held-out volumes"):
        DosePairSlices(paths["train"], None, patients=["L999"], simulated_sigma=5.0)
