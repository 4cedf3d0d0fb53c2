"""The precomputed noise bank: built once, resumed after an interruption, drawn from in training (train.json).

Tiny phantom volumes (NIfTI, 48 px) and 3 realisations per slice keep the simulation to a few seconds; the bundle
run uses ``TINY_TRAIN`` from ``test_training.py`` (a width-8 network with a random encoder).
"""

from __future__ import annotations

import numpy as np
import torch
import pytest

from ldct_clip.ct.training_data import TrainingSlices
from ldct_clip.transforms.ct_noise import RandCTNoise, RandCTNoised
from ldct_clip.errors import InputError
from ct_factory import write_nifti
from ldct_clip.simulation.noise_bank import build_noise_bank
from ldct_clip.simulation.phantom import make_phantom
from ldct_clip.handlers.json_lines import read_log

from test_training import CONFIGS, monai_train

N_REAL = 3
SIM = {"pixel_size_mm": 1.5}


def write_data(root, size: int = 48):
    for i in range(2):
        write_nifti(root / "train" / f"P{i}.nii.gz", np.rint(make_phantom((size, size, 3), seed=i)))
    nd = make_phantom((size, size, 2), seed=9)
    write_nifti(root / "val_nd" / "V.nii.gz", np.rint(nd))
    write_nifti(root / "val_ld" / "V.nii.gz", np.rint(nd + np.random.default_rng(1).normal(0, 40, nd.shape)))
    return root / "train"


def bank_files(bank):
    return [bank.folder / name for name in sorted(bank.files.values())]


def test_bank_resumes_after_interruption_and_matches_an_uninterrupted_build(tmp_path):
    data = TrainingSlices(write_data(tmp_path / "data"))
    kw = dict(realisations=N_REAL, dose_fraction=[0.1, 0.5], seed=4, simulation_kwargs=SIM)

    class Killed(Exception):
        pass

    def kill_after_two(done, total):
        if done == 2:
            raise Killed

    with pytest.raises(Killed):
        build_noise_bank(data, tmp_path / "bank", progress=kill_after_two, **kw)
    folder = next((tmp_path / "bank").iterdir())
    assert len(list(folder.glob("*.npy"))) == 2
    # a partial file under a final name (as a copy tool might leave) is not trusted, and temp files are ignored
    first = sorted(folder.glob("*.npy"))[0]
    first.write_bytes(first.read_bytes()[:200])
    (folder / ".tmp-0123456789ab-junk.npy").write_bytes(b"half")
    calls = []
    bank = build_noise_bank(data, tmp_path / "bank", progress=lambda d, t: calls.append(d), **kw)
    assert calls == list(range(1, len(data) + 1)) and len(bank) == len(data) == 6
    whole = build_noise_bank(data, tmp_path / "fresh", **kw)
    assert [p.name for p in bank_files(bank)] == [p.name for p in bank_files(whole)]
    for a, b in zip(bank_files(bank), bank_files(whole)):
        np.testing.assert_array_equal(np.load(a), np.load(b))  # same seeds per slice: resuming changes nothing
    noise = np.load(bank_files(bank)[0])
    assert noise.shape == (N_REAL, 48, 48) and noise.dtype == np.float16
    # the doses of the realisations differ (drawn from [0.1, 0.5]), and they are real low-dose noise levels
    sds = noise.reshape(N_REAL, -1).astype(np.float32).std(axis=1)
    assert sds.min() > 5.0 and sds.max() / sds.min() > 1.05
    # other settings or other data make another bank, never reuse this one
    other = build_noise_bank(data, tmp_path / "bank", **{**kw, "dose_fraction": 0.25})
    assert other.folder != bank.folder


def test_bank_noise_is_drawn_per_slice(tmp_path):
    data = TrainingSlices(write_data(tmp_path / "data"))
    bank = build_noise_bank(data, tmp_path / "bank", realisations=N_REAL, seed=0, simulation_kwargs=SIM)
    t = RandCTNoised(keys="image", noise="projection_bank", noise_bank=bank).set_random_state(0)
    item = data[4]
    stored = np.load(bank.folder / bank.files[item["name"], item["slice"]]).astype(np.float32)
    seen = set()
    for _ in range(12):
        noisy = t({"image": item["label"].copy(), "name": item["name"], "slice": item["slice"]})["image"]
        diff = np.asarray(noisy)[0] - item["label"][0]
        j = int(np.argmin([np.abs(diff - s).max() for s in stored]))
        np.testing.assert_allclose(diff, stored[j], atol=1e-3)
        seen.add(j)
    assert seen == set(range(N_REAL))  # every realisation gets used
    with pytest.raises(InputError, match="needs a noise bank"):
        RandCTNoise("projection_bank")
    with pytest.raises(InputError, match="has no realisations"):
        t({"image": item["label"].copy(), "name": "other", "slice": 0})


@pytest.mark.slow
def test_bundle_trains_from_a_noise_bank_and_reuses_it(tmp_path):
    train = write_data(tmp_path / "data")
    out = tmp_path / "run"
    args = ["--dataset_dir", str(train), "--val_low_dose_dir", str(tmp_path / "data" / "val_ld"),
            "--val_normal_dose_dir", str(tmp_path / "data" / "val_nd"), "--ckpt_dir", str(out / "models"),
            "--output_dir", str(out / "logs"), "--iterations", "10", "--val_interval", "10",
            "--noise", "projection_bank", "--noise_bank_dir", str(tmp_path / "bank"), "--noise_bank_size", "2",
            "--dose_fraction", "[0.1,0.5]"]
    r = monai_train(*args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "6 slices x 2 realisations (6 simulated now, 0 already there)" in r.stdout + r.stderr
    folder = next((tmp_path / "bank").iterdir())
    assert len(list(folder.glob("[!.]*.npy"))) == 6
    train_log = read_log(out / "logs" / "train_log.jsonl", "train")
    assert [rec["iteration"] for rec in train_log] == [5, 10] and all(np.isfinite(rec["loss"]) for rec in train_log)
    r = monai_train(*args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "(0 simulated now, 6 already there)" in r.stdout + r.stderr


@pytest.mark.slow
def test_bundle_trains_with_online_projection_noise_over_a_dose_range(tmp_path):
    train = write_data(tmp_path / "data")
    out = tmp_path / "run"
    r = monai_train("--dataset_dir", str(train), "--val_low_dose_dir", str(tmp_path / "data" / "val_ld"),
                    "--val_normal_dose_dir", str(tmp_path / "data" / "val_nd"), "--ckpt_dir", str(out / "models"),
                    "--output_dir", str(out / "logs"), "--iterations", "10", "--val_interval", "10",
                    "--noise", "projection", "--dose_fraction", "[0.1,0.5]")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    train_log = read_log(out / "logs" / "train_log.jsonl", "train")
    assert [rec["iteration"] for rec in train_log] == [5, 10] and all(np.isfinite(rec["loss"]) for rec in train_log)
    assert "noise bank" not in r.stdout + r.stderr  # online noise: no bank is built


def test_projection_noise_on_a_given_device_returns_a_tensor_there():
    # train.json draws the noise where the network trains when the DataLoader has no workers (noise_device)
    from ldct_clip.transforms.ct_noise import RandCTNoised

    hu = make_phantom((64, 64, 1), seed=4)[:, :, 0][None].astype(np.float32)
    on_device = RandCTNoised(keys="image", noise="projection", dose_fraction=0.25, device="cpu")
    on_device.set_random_state(3)
    out = on_device({"image": hu})["image"]
    assert isinstance(out, torch.Tensor) and out.device.type == "cpu" and out.shape == hu.shape
    plain = RandCTNoised(keys="image", noise="projection", dose_fraction=0.25)
    plain.set_random_state(3)
    same = plain({"image": hu})["image"]
    assert isinstance(same, np.ndarray)
    np.testing.assert_allclose(out.numpy(), same, atol=1e-3)  # the same draw, only where it lives differs
    assert np.abs(same - hu).std() > 5.0  # and it is noise


def test_train_config_draws_noise_on_the_training_device_without_workers():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser["num_workers"] = 0
    assert parser.get_parsed_content("noise_device") == parser.get_parsed_content("device")
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser["num_workers"] = 2
    assert parser.get_parsed_content("noise_device") is None
