"""Natural-image and sRGB tasks: the alternate bundle configs in configs/ run end to end through
`python -m monai.bundle run` (inference, evaluation, training), plus the library pieces they wire."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from ldct_clip import bundle_root
from ldct_clip.bundle import run_config
from ldct_clip.checkpoints import load_checkpoint
from ldct_clip.errors import InputError, WeightsError
from ldct_clip.rgb.folders import find_images, output_names
from ldct_clip.rgb.io import read_rgb, write_png
from ldct_clip.metrics.rgb import psnr_8bit, ssim_8bit, to_uint8
from ldct_clip.rgb.pairs import find_pairs
from ldct_clip.rgb.datasets import NoisyImageSet, noise_seed
from ldct_clip.rgb.evaluation import RGBEvaluationHandler
from ldct_clip.metrics.cumulative import RGBImageQualityMetric
from ldct_clip.rgb.noise import NOISE_SUITE, noise_suite_settings
from test_bundle import monai_bundle
from tolerances import assert_rounded_close, assert_text_matches

REPO = Path(__file__).resolve().parent.parent
BUNDLE_CONFIGS = Path(bundle_root()) / "configs"
CONFIGS = BUNDLE_CONFIGS  # the alternate configs ship in the bundle: configs/natural, configs/srgb
RGB_CHECKPOINT = REPO / "tests" / "fixtures" / "reference_parity" / "tiny_rgb_checkpoint.pth"
# the RGB parity fixture's shape: width 8, layers [2, 1, 2, 1], conv biases in the decoder
RGB_OVERRIDES = ["--network_def#layers", "[2,1,2,1]", "--network_def#width", "8", "--network_def#bias", "True"]
TINY_TRAIN = [
    "--network_def#layers", "[1,1,1,1]", "--network_def#width", "8", "--network_def#encoder_weights", "$None",
    "--batch_size", "2", "--num_workers", "0", "--crop_size", "32", "--log_interval", "1",
]

NATURAL_INFERENCE = [BUNDLE_CONFIGS / "inference.json", CONFIGS / "natural" / "inference.json"]
NATURAL_EVALUATE = NATURAL_INFERENCE + [CONFIGS / "natural" / "evaluate.json"]
SRGB_INFERENCE = NATURAL_INFERENCE + [CONFIGS / "srgb" / "inference.json"]
SRGB_EVALUATE = SRGB_INFERENCE + [CONFIGS / "srgb" / "evaluate.json"]
NATURAL_TRAIN = [BUNDLE_CONFIGS / "train.json", CONFIGS / "natural" / "train.json"]
SRGB_TRAIN = NATURAL_TRAIN + [CONFIGS / "srgb" / "train.json"]


def run_configs(configs: list[Path], *args: str):
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    return monai_bundle("run", "--config_file", files, "--meta_file", str(BUNDLE_CONFIGS / "metadata.json"),
                        "--logging_file", str(BUNDLE_CONFIGS / "logging.conf"), *args)


def rgb_config(configs: list[Path], **overrides):
    """The config chain parsed with ``overrides``, as `monai.bundle run --config_file ... --<id> <value>` builds it."""
    parser = parse(configs)
    for key, value in overrides.items():
        parser[key] = value
    return parser


def folder_run(folder: Path, output_dir: Path, **overrides):
    """configs/natural/inference.json over ``folder``: its parser and the evaluator it declares (not yet run)."""
    parser = rgb_config(NATURAL_INFERENCE, dataset_dir=str(folder), output_dir=str(output_dir), **overrides)
    return parser, parser.get_parsed_content("evaluator")


def written_paths(parser) -> list[Path]:
    """The PNGs the last run of a folder config wrote, in order (its summary handler's record)."""
    return [p for r in parser.get_parsed_content("case_summary").results if r.ok for p in r.outputs]


def crop(name: str, size: int = 64) -> np.ndarray:
    """A small crop of a scikit-image sample image, (H, W, 3) uint8."""
    img = getattr(skdata, name)()
    return np.ascontiguousarray(img[:size, :size])


def save(path: Path, hwc: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(hwc).save(path, **kwargs)
    return path


def noisy_version(hwc: np.ndarray, seed: int, sd: float = 12.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(hwc + rng.normal(0.0, sd, hwc.shape)), 0, 255).astype(np.uint8)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_ok(r) -> None:
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


# ----------------------------------------------------------------------------------------------------------
# end to end through `python -m monai.bundle run`
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_natural_inference_with_the_authors_rgb_checkpoint(tmp_path):
    src = tmp_path / "in"
    save(src / "astronaut.png", crop("astronaut"))
    save(src / "coffee.jpg", crop("coffee"), quality=95)
    save(src / "sub" / "chelsea.tif", crop("chelsea"))
    save(src / "camera.png", crop("camera"))  # grey
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    r = run_configs(NATURAL_INFERENCE, "--dataset_dir", str(src), "--output_dir", str(out),
                    "--ckpt_path", str(RGB_CHECKPOINT), "--precision", "fp32", *RGB_OVERRIDES)
    check_ok(r)
    assert "done: 4 of 4 image(s) denoised" in r.stdout + r.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["astronaut.png", "camera.png", "coffee.png", "sub/chelsea.png"]
    for name in written:
        img = Image.open(out / name)
        assert img.mode == "RGB" and img.size == (64, 64)
    # the bundle's output is the authors' network's output, clipped and rounded to 8 bits
    model = load_checkpoint(RGB_CHECKPOINT).eval()
    for src_name, out_name in (("astronaut.png", "astronaut.png"), ("sub/chelsea.tif", "sub/chelsea.png")):
        with torch.no_grad():
            expected = to_uint8(model(torch.from_numpy(read_rgb(src / src_name))[None])[0])
        got = np.asarray(Image.open(out / out_name)).transpose(2, 0, 1)
        assert_rounded_close(got, expected, what=out_name)  # 8 bits: a level may flip on other CPU kernels
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_the_declared_components_are_what_the_bundle_runs(tmp_path):
    # an identity network, so that what reaches the PNGs is what the declared components do to the images
    src = tmp_path / "in"
    save(src / "top.png", crop("astronaut", 40))
    save(src / "sub" / "a.png", crop("coffee", 40))
    save(src / "sub" / "b.png", crop("chelsea", 40))
    identity = ["--network_def", "$torch.nn.Identity()", "--allow_untrained", "True"]
    plain, edited = tmp_path / "plain", tmp_path / "edited"
    check_ok(run_configs(NATURAL_INFERENCE, "--dataset_dir", str(src), "--output_dir", str(plain), *identity))
    assert sorted(p.relative_to(plain).as_posix() for p in plain.rglob("*.png")) == ["sub/a.png", "sub/b.png", "top.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(plain / "sub" / "a.png")), crop("coffee", 40))
    # edit the dataset (another folder), the preprocessing (a flip added) and the postprocessing (another range)
    r = run_configs(NATURAL_INFERENCE, "--dataset_dir", str(src), "--output_dir", str(edited), *identity,
                    "--dataset#data#folder", str(src / "sub"),
                    "--preprocessing#transforms", "[{'_target_': 'ldct_clip.rgb.io.LoadRGBd', 'keys': 'image'}, "
                    "{'_target_': 'Flipd', 'keys': 'image', 'spatial_axis': 1}]",
                    "--postprocessing#transforms#0#b_max", "127.0")
    check_ok(r)
    assert "done: 2 of 2 image(s) denoised" in r.stdout + r.stderr
    assert sorted(p.relative_to(edited).as_posix() for p in edited.rglob("*.png")) == ["a.png", "b.png"]
    for name, image in (("a.png", "coffee"), ("b.png", "chelsea")):
        expected = np.rint(crop(image, 40)[:, ::-1].astype(np.float64) * 127.0 / 255.0)  # flipped left-right
        assert_rounded_close(np.asarray(Image.open(edited / name)), expected.astype(np.uint8), what=name)


def _natural_test_root(root: Path) -> Path:
    save(root / "CBSD68" / "astronaut.png", crop("astronaut"))
    save(root / "CBSD68" / "coffee.png", crop("coffee"))
    save(root / "Kodak24" / "chelsea.png", crop("chelsea"))
    return root


@pytest.mark.slow
def test_natural_evaluation_tables(tmp_path):
    # an identity "denoiser": the output PSNR must then equal the noisy input's, setting by setting
    root = _natural_test_root(tmp_path / "test")
    out = tmp_path / "eval"
    r = run_configs(NATURAL_EVALUATE, "--dataset_dir", str(root), "--output_dir", str(out),
                    "--network_def", "$torch.nn.Identity()", "--allow_untrained", "True")
    check_ok(r)
    settings = noise_suite_settings()
    summary = read_csv(out / "metrics.csv")
    assert [(row["dataset"], row["noise"], float(row["level"])) for row in summary] == [
        (d, k, lv) for d in ("CBSD68", "Kodak24") for k, lv in settings
    ]
    assert [int(row["images"]) for row in summary] == [2] * len(settings) + [1] * len(settings)
    per_image = read_csv(out / "per_image.csv")
    assert len(per_image) == 3 * len(settings)
    for row in per_image:
        assert float(row["psnr"]) == pytest.approx(float(row["psnr_in"]), abs=1e-5)
        assert 0.0 < float(row["ssim"]) < 1.0
    gauss = [float(row["psnr_in"]) for row in summary if row["dataset"] == "CBSD68" and row["noise"] == "gaussian"]
    assert gauss == sorted(gauss, reverse=True)  # 15 > 25 > 50
    # sigma 15 on 8-bit images: about 24.7 dB (clipping at 0/255 helps a little)
    assert 24.0 < gauss[0] < 26.0
    md = (out / "metrics.md").read_text()
    assert "## CBSD68" in md and "## Kodak24" in md
    assert md.count("| gaussian | 15 |") == 2 and md.count("| salt_pepper |") == 2 * len(NOISE_SUITE["salt_pepper"])


@pytest.mark.slow
def test_srgb_evaluation_on_paired_sets_with_the_authors_checkpoint(tmp_path):
    root = tmp_path / "test"
    pairs = {}
    for i, name in enumerate(("astronaut", "coffee")):  # CC: *_real.png / *_mean.png
        clean = crop(name)
        pairs[("CC", f"{name}_iso1600")] = (save(root / "CC" / f"{name}_iso1600_real.png", noisy_version(clean, i)),
                                            save(root / "CC" / f"{name}_iso1600_mean.png", clean))
    clean = crop("chelsea")  # PolyU: *_Real.JPG / *_mean.JPG
    pairs[("PolyU", "Canon5D2_cat")] = (save(root / "PolyU" / "Canon5D2_cat_Real.JPG", noisy_version(clean, 5), quality=90),
                                        save(root / "PolyU" / "Canon5D2_cat_mean.JPG", clean, quality=90))
    clean = crop("coffee")  # SIDD as PNG folders: noisy/ and GT/ with the same names
    pairs[("SIDD", "0001")] = (save(root / "SIDD" / "noisy" / "0001.png", noisy_version(clean, 7)),
                               save(root / "SIDD" / "GT" / "0001.png", clean))
    out = tmp_path / "eval"
    # the network is built in the shape of the authors' checkpoint ('$None': no network_def)
    r = run_configs(SRGB_EVALUATE, "--dataset_dir", str(root), "--output_dir", str(out),
                    "--ckpt_path", str(RGB_CHECKPOINT), "--network_def", "$None", "--save_images", "True")
    check_ok(r)
    summary = {row["dataset"]: row for row in read_csv(out / "metrics.csv")}
    assert {d: int(row["images"]) for d, row in summary.items()} == {"CC": 2, "PolyU": 1, "SIDD": 1}
    per_image = {(row["dataset"], row["image"]): row for row in read_csv(out / "per_image.csv")}
    assert set(per_image) == set(pairs)
    model = load_checkpoint(RGB_CHECKPOINT).eval()
    for key, (noisy_path, clean_path) in pairs.items():
        noisy, clean = to_uint8(read_rgb(noisy_path)), to_uint8(read_rgb(clean_path))
        assert_text_matches(per_image[key]["psnr_in"], psnr_8bit(noisy, clean), what=f"{key} psnr_in")
        # the scores are those of the images the evaluation wrote, to the digits written ...
        written = to_uint8(read_rgb(out / "images" / key[0] / f"{key[1]}.png"))
        assert_text_matches(per_image[key]["psnr"], psnr_8bit(written, clean), what=f"{key} psnr")
        assert_text_matches(per_image[key]["ssim"], ssim_8bit(written, clean), what=f"{key} ssim")
        # ... and those images are the authors' network's output, rounded to 8 bits
        with torch.no_grad():
            pred = to_uint8(model(torch.from_numpy(noisy.astype(np.float32) / 255.0)[None])[0])
        assert_rounded_close(written, pred, what=f"{key} prediction")
    md = (out / "metrics.md").read_text()
    assert all(f"| {d} |" in md for d in ("CC", "PolyU", "SIDD"))


@pytest.mark.slow
def test_natural_training_runs_and_its_model_denoises_a_folder(tmp_path):
    train = tmp_path / "CBSD432"
    for name in ("astronaut", "coffee", "chelsea"):
        save(train / f"{name}.png", crop(name, 48))
    val = _natural_test_root(tmp_path / "test") / "CBSD68"
    ckpt, logs = tmp_path / "models", tmp_path / "logs"
    r = run_configs(NATURAL_TRAIN, "--dataset_dir", str(train), "--val_dir", str(val), "--ckpt_dir", str(ckpt),
                    "--output_dir", str(logs), "--iterations", "4", "--val_interval", "2",
                    "--lr_constant_iterations", "2", *TINY_TRAIN)
    check_ok(r)
    log = [json.loads(line) for line in (logs / "train_log.jsonl").read_text().splitlines()]
    train_rec = [x for x in log if x["kind"] == "train"]
    val_rec = [x for x in log if x["kind"] == "validation"]
    assert [x["iteration"] for x in train_rec] == [1, 2, 3, 4]
    assert all(math.isfinite(x["loss"]) and x["grad_norm"] is not None for x in train_rec)
    # constant learning rate, then cosine down to lr_min (the lr logged is the one for the next step)
    assert [x["lr"] for x in train_rec] == pytest.approx([3e-4, 3e-4, (3e-4 + 1e-6) / 2, 1e-6])
    assert [x["iteration"] for x in val_rec] == [2, 4] and all("val_psnr" in x and "val_ssim" in x for x in val_rec)
    model = load_checkpoint(ckpt / "model.pt")
    assert model.in_channels == 3 and model.out_channels == 3
    # the trained model.pt goes straight into the folder workflow (network shaped after the checkpoint)
    parser, evaluator = folder_run(val, tmp_path / "denoised", network_def=None, ckpt_path=str(ckpt / "model.pt"))
    evaluator.run()
    written = written_paths(parser)
    assert sorted(p.name for p in written) == ["astronaut.png", "coffee.png"]


@pytest.mark.slow
def test_srgb_training_runs_on_simulated_camera_noise(tmp_path):
    train = tmp_path / "DIV2K"
    for name in ("astronaut", "chelsea"):
        save(train / f"{name}.png", crop(name, 48))
    val = tmp_path / "SIDD"
    save(val / "noisy" / "0001.png", noisy_version(crop("coffee"), 3))
    save(val / "GT" / "0001.png", crop("coffee"))
    ckpt, logs = tmp_path / "models", tmp_path / "logs"
    r = run_configs(SRGB_TRAIN, "--dataset_dir", str(train), "--val_dir", str(val), "--ckpt_dir", str(ckpt),
                    "--output_dir", str(logs), "--iterations", "2", "--val_interval", "2",
                    "--lr_constant_iterations", "1", *TINY_TRAIN)
    check_ok(r)
    log = [json.loads(line) for line in (logs / "train_log.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in log if x["kind"] == "train"] == [1, 2]
    assert [x["iteration"] for x in log if x["kind"] == "validation"] == [2]
    assert (ckpt / "model.pt").is_file() and (ckpt / "checkpoint_last.pt").is_file()
    assert load_checkpoint(ckpt / "model.pt").in_channels == 3


# ----------------------------------------------------------------------------------------------------------
# the configs themselves
# ----------------------------------------------------------------------------------------------------------


def parse(configs: list[Path]):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(c) for c in configs])
    return parser


def test_inference_config_has_the_keys_tools_rely_on(tmp_path):
    save(tmp_path / "a.png", crop("astronaut", 40))
    parser = parse(NATURAL_INFERENCE)
    for key in ("bundle_root", "device", "dataset_dir", "dataset", "evaluator", "network_def", "inferer",
                "preprocessing", "postprocessing", "handlers", "output_dir"):
        assert key in parser, key
    parser["dataset_dir"], parser["output_dir"] = str(tmp_path), str(tmp_path / "out")
    item = parser.get_parsed_content("dataset")[0]
    assert tuple(item["image"].shape) == (3, 40, 40) and item["name"] == "a.png"
    post = parser.get_parsed_content("postprocessing")({"pred": torch.tensor([[[-0.2, 0.5, 1.3]]]).expand(3, 1, 3),
                                                        "name": "x.png"})
    assert post["pred"].dtype == torch.uint8 and post["pred"][0, 0].tolist() == [0, 128, 255]
    assert post["outputs"] == [str(tmp_path / "out" / "x.png")]  # the last step writes the 8-bit PNG
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "x.png"))[0], [[0, 0, 0], [128] * 3, [255] * 3])


def test_inference_reads_the_checkpoint_that_training_writes(tmp_path):
    # training saves its best model as <ckpt_dir>/model.pt; inference and evaluation must default to that file
    for train, inference in ((NATURAL_TRAIN, NATURAL_INFERENCE), (SRGB_TRAIN, SRGB_INFERENCE)):
        trained = Path(parse(train).get_parsed_content("ckpt_dir")) / "model.pt"
        assert Path(parse(inference).get_parsed_content("ckpt_path")) == trained, inference


def test_rgb_workflows_parse_text_booleans(tmp_path):
    # fire passes `--save_images false` as the text 'false', which would be truthy
    parser = rgb_config(SRGB_EVALUATE, dataset_dir=str(tmp_path), output_dir=str(tmp_path / "out"), network_def=None,
                        save_images="false", allow_untrained="False", channels_last="0", compile="no")
    parser.get_parsed_content("evaluator")  # the whole chain builds from the text values
    evaluation, loader = parser.get_parsed_content("evaluation"), parser.get_parsed_content("checkpoint_loader")
    assert (evaluation.save_images, loader.allow_untrained, loader.channels_last, loader.compile) == (
        False, False, False, False)
    with pytest.raises(InputError, match="save_images must be true or false"):
        RGBEvaluationHandler(tmp_path / "out", save_images="maybe")


def test_train_configs_follow_the_paper():
    natural, srgb = parse(NATURAL_TRAIN), parse(SRGB_TRAIN)
    for p, aug in ((natural, 0.025), (srgb, 0.05)):
        assert p["iterations"] == 300000 and p["lr_constant_iterations"] == 92000
        assert p["lr"] == 3e-4 and p["lr_min"] == 1e-6 and p["weight_decay"] == 1e-4
        assert p["batch_size"] == 16 and p["crop_size"] == 128 and p["grad_clip_norm"] == 0.01
        assert p["mixup_alpha"] == 1.2 and p["mixup_prob"] == 0.5 and p["aug_level"] == aug
        assert p["network_def"]["in_channels"] == 3 and p["network_def"]["encoder_weights"] == "openai"
        assert p["train"]["trainer"]["_target_"] == "ldct_clip.engine.trainer.DenoisingTrainer"
    assert natural["noise"] == "gaussian" and natural["sigma"] == 15.0
    targets = [t["_target_"] for t in srgb["train"]["preprocessing"]["transforms"]]
    assert "ldct_clip.rgb.camera.RandCameraNoised" in targets and "ldct_clip.rgb.noise.RandNaturalNoised" not in targets
    # the sRGB recipe is the natural one with the noise swapped: same transforms otherwise, and the camera noise
    # rounded to 8 bits by a named parameter (the reference trains on noisy PNGs), not a lambda in JSON
    natural_targets = [t["_target_"] for t in natural["train"]["preprocessing"]["transforms"]]
    assert [t for t in targets if "Noise" not in t] == [t for t in natural_targets if "Noise" not in t]
    camera = srgb["train"]["preprocessing"]["transforms"][targets.index("ldct_clip.rgb.camera.RandCameraNoised")]
    assert camera["quantize"] is True and "Lambdad" not in targets
    assert srgb["sigma_s"] == 0.04 and srgb["sigma_c"] == 0.03 and srgb["raw_noise_model"] == "reference"


def config_schedule(configs: list[Path], **settings):
    """The training config's learning-rate scheduler, on an optimizer of one parameter (no network built)."""
    parser = parse(configs)
    parser["optimizer"]["params"] = "$[torch.nn.Parameter(torch.zeros(1))]"
    for key, value in settings.items():
        parser[key] = value
    return parser.get_parsed_content("lr_scheduler")


@pytest.mark.parametrize("configs", [NATURAL_TRAIN, SRGB_TRAIN], ids=["natural", "srgb"])
def test_config_schedule_is_the_reference_schedule(configs):
    scheduler = config_schedule(configs)
    assert isinstance(scheduler, torch.optim.lr_scheduler.SequentialLR)
    optimizer = scheduler.optimizer

    def reference(it: int) -> float:  # basicsr CosineAnnealingRestartCyclicLR, periods [92k, 208k]
        if it <= 92000:
            return 3e-4 + 0.5 * (3e-4 - 3e-4) * (1 + math.cos(math.pi * it / 92000))
        return 1e-6 + 0.5 * (3e-4 - 1e-6) * (1 + math.cos(math.pi * (it - 92000) / 208000))

    checked = {0, 1, 50000, 92000, 92001, 150000, 196000, 299999, 300000}
    for it in range(max(checked) + 1):
        if it in checked:
            assert optimizer.param_groups[0]["lr"] == pytest.approx(reference(it), rel=1e-9, abs=1e-15), it
        optimizer.step()
        scheduler.step()
    with pytest.raises(RuntimeError) as failed:  # MONAI's config parser wraps what an expression raises
        config_schedule(configs, lr_constant_iterations=400000)
    assert isinstance(failed.value.__cause__, InputError), failed.value.__cause__


# ----------------------------------------------------------------------------------------------------------
# library: images, pairs, metrics, seeding, errors
# ----------------------------------------------------------------------------------------------------------


def test_read_rgb_conversions(tmp_path):
    rgb = crop("astronaut", 16)
    np.testing.assert_array_equal(to_uint8(read_rgb(save(tmp_path / "a.png", rgb))), rgb.transpose(2, 0, 1))
    grey = rgb[..., 0]
    g = read_rgb(save(tmp_path / "g.png", grey))
    assert g.shape == (3, 16, 16) and np.array_equal(g[0], g[2])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(to_uint8(read_rgb(save(tmp_path / "a4.png", rgba))), rgb.transpose(2, 0, 1))
    deep = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 250)
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert read_rgb(tmp_path / "d.png")[0].max() == pytest.approx(deep.max() / 65535.0, abs=1e-6)
    wide = np.ascontiguousarray(crop("astronaut", 32)[:16])  # 16 x 32
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: shown (and read by OpenCV) as 32 x 16
    Image.fromarray(wide).save(tmp_path / "r.jpg", exif=exif, quality=95)
    assert read_rgb(tmp_path / "r.jpg").shape == (3, 32, 16)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="bad.png"):
        read_rgb(tmp_path / "bad.png")
    out = write_png(tmp_path / "w" / "x.png", read_rgb(tmp_path / "a.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out)), rgb)


def test_find_images_and_output_names(tmp_path):
    for rel in ("a.png", "a.jpg", "sub/b.TIF", ".hidden/c.png", "notes.txt", "out/old.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    paths = find_images(tmp_path, exclude=tmp_path / "out")
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["a.jpg", "a.png", "sub/b.TIF"]
    assert output_names(paths, tmp_path) == ["a_jpg.png", "a_png.png", "sub/b.png"]
    with pytest.raises(InputError, match="does not exist"):
        find_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        find_images(tmp_path / "empty")


def test_find_pairs_as_the_test_sets_name_them(tmp_path, caplog):
    names = {
        "CC": ["5dmark3_iso3200_1_real.png", "5dmark3_iso3200_1_mean.png"],
        "PolyU": ["Canon5D2_bag_Real.JPG", "Canon5D2_bag_mean.JPG", "Sony_lonely_Real.JPG"],
        "SIDDM": ["0001_001_S6_00100_00060_3200_L/0001_NOISY_SRGB_010.PNG",
                  "0001_001_S6_00100_00060_3200_L/0001_GT_SRGB_010.PNG",
                  "0001_001_S6_00100_00060_3200_L/0001_NOISY_SRGB_011.PNG",
                  "0001_001_S6_00100_00060_3200_L/0001_GT_SRGB_011.PNG"],
        "SIDD": ["noisy/0001.png", "GT/0001.png", "noisy/0002.png", "GT/0002.png"],
        "Restormer": ["input/x.png", "target/x.png"],
    }
    tiny = np.zeros((4, 4, 3), np.uint8)
    for folder, files in names.items():
        for f in files:
            save(tmp_path / folder / f, tiny)
    with caplog.at_level(logging.WARNING, logger="ldct_clip"):
        got = {folder: [p.name for p in find_pairs(tmp_path / folder)] for folder in names}
    assert got == {
        "CC": ["5dmark3_iso3200_1"],
        "PolyU": ["Canon5D2_bag"],
        "SIDDM": ["0001_001_S6_00100_00060_3200_L/0001_SRGB_010", "0001_001_S6_00100_00060_3200_L/0001_SRGB_011"],
        "SIDD": ["0001", "0002"],
        "Restormer": ["x"],
    }
    assert "without a partner" in caplog.text and "Sony_lonely_Real" in caplog.text
    pair = find_pairs(tmp_path / "CC")[0]
    assert pair.noisy_source.endswith("_real.png")
    noisy, clean = pair.load()
    assert noisy.shape == clean.shape == (3, 4, 4) and noisy.dtype == np.uint8
    save(tmp_path / "odd" / "real_gt.png", tiny)
    with pytest.raises(InputError, match="both a noisy token"):
        find_pairs(tmp_path / "odd")
    save(tmp_path / "none" / "image.png", tiny)
    with pytest.raises(InputError, match="no noisy/clean image pairs"):
        find_pairs(tmp_path / "none")


def test_sidd_validation_blocks_from_mat_files(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    noisy = rng.integers(0, 256, gt.shape, dtype=np.uint8)
    savemat(tmp_path / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": noisy})
    savemat(tmp_path / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": gt})
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs][:4] == ["block_00_00", "block_00_01", "block_00_02", "block_01_00"]
    n, c = pairs[4].load()  # image 1, block 1
    np.testing.assert_array_equal(n, noisy[1, 1].transpose(2, 0, 1))
    np.testing.assert_array_equal(c, gt[1, 1].transpose(2, 0, 1))


def test_8bit_metrics_are_the_reference_definitions():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    clean = crop("astronaut", 48).transpose(2, 0, 1)
    noisy = noisy_version(clean, 0, sd=20.0)
    assert psnr_8bit(noisy, clean) == pytest.approx(peak_signal_noise_ratio(clean, noisy, data_range=255), abs=1e-10)
    # MATLAB/Restormer SSIM: 11x11 Gaussian (sigma 1.5), population statistics, valid region, mean over channels
    ref = structural_similarity(noisy, clean, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert ssim_8bit(noisy, clean) == pytest.approx(ref, abs=1e-10)
    assert psnr_8bit(clean, clean) == math.inf and ssim_8bit(clean, clean) == pytest.approx(1.0)
    with pytest.raises(InputError, match="uint8"):
        psnr_8bit(clean.astype(np.float32), clean)
    metric = RGBImageQualityMetric("psnr")
    pred = torch.from_numpy(noisy.astype(np.float32) / 255.0)[None]
    metric(y_pred=pred, y=torch.from_numpy(clean.astype(np.float32) / 255.0)[None])
    assert float(metric.aggregate()) == pytest.approx(psnr_8bit(noisy, clean), abs=1e-4)


def test_validation_noise_is_seeded_per_image(tmp_path):
    for name in ("astronaut", "coffee", "chelsea"):
        save(tmp_path / f"{name}.png", crop(name, 32))
    a, b = NoisyImageSet(tmp_path, level=25, seed=0), NoisyImageSet(tmp_path, level=25, seed=0, max_images=2)
    assert [x["name"] for x in b] == ["astronaut.png", "coffee.png"]  # evenly spread over the sorted three
    np.testing.assert_array_equal(a[0]["image"], NoisyImageSet(tmp_path, level=25, seed=0)[0]["image"])
    assert not np.array_equal(a[0]["image"], NoisyImageSet(tmp_path, level=25, seed=1)[0]["image"])
    noise = a[1]["image"] - a[1]["label"]
    assert noise.std() * 255 == pytest.approx(25, rel=0.1)
    g1, g2 = noise_seed(0, "CBSD68", "x", "gaussian", 15.0), noise_seed(0, "CBSD68", "x", "gaussian", 15.0)
    assert g1.random() == g2.random()


def test_rgb_workflow_errors_are_user_errors(tmp_path, tiny_checkpoint, caplog):
    save(tmp_path / "in" / "a.png", crop("astronaut", 32))
    # a CT (1-channel) checkpoint in the RGB workflow
    _, wf = folder_run(tmp_path / "in", tmp_path / "out", network_def=None, ckpt_path=str(tiny_checkpoint))
    with pytest.raises(WeightsError, match="3-channel"):
        wf.run()
    with caplog.at_level(logging.ERROR, logger="ldct_clip"), pytest.raises(SystemExit) as exc:
        wf.run(exit_on_error=True)
    assert exc.value.code == 2 and "3-channel" in caplog.text
    with pytest.raises(WeightsError, match="no checkpoint"):
        folder_run(tmp_path / "in", tmp_path / "out", network_def=None, ckpt_path=str(tmp_path / "none.pt"))[1].run()
    with pytest.raises(InputError, match="input folder"):
        folder_run(tmp_path / "in", tmp_path / "in", network_def=None, ckpt_path=str(RGB_CHECKPOINT))[1].run()
    # a corrupt image fails alone; the others are written
    (tmp_path / "in" / "b.png").write_bytes(b"broken")
    parser, wf = folder_run(tmp_path / "in", tmp_path / "in" / "out", network_def=None, ckpt_path=str(RGB_CHECKPOINT))
    wf.run()
    assert [p.name for p in written_paths(parser)] == ["a.png"] and list(wf.failures) == ["b.png"]
    with pytest.raises(SystemExit):
        wf.run(exit_on_error=True)


def test_identity_network_round_trips_and_test_sets_are_selectable(tmp_path):
    root = _natural_test_root(tmp_path / "test")
    # folder denoising with an identity network writes back the input pixels exactly
    identity = {"network_def": "$torch.nn.Identity()", "allow_untrained": True}
    parser = rgb_config(NATURAL_INFERENCE, dataset_dir=str(root), output_dir=str(tmp_path / "same"), **identity)
    run_config(parser)
    written = written_paths(parser)
    assert [p.relative_to(tmp_path / "same").as_posix() for p in written] == [
        "CBSD68/astronaut.png", "CBSD68/coffee.png", "Kodak24/chelsea.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(written[2])), crop("chelsea"))

    def evaluate(dataset_dir: Path, **kwargs) -> list[dict[str, str]]:
        out = tmp_path / "eval"
        run_config(rgb_config(NATURAL_EVALUATE, dataset_dir=str(dataset_dir), output_dir=str(out),
                              noise_suite={"gaussian": [15], "salt_pepper": 0.02}, **identity, **kwargs))
        return read_csv(out / "metrics.csv")

    rows = evaluate(root, datasets="Kodak24")
    assert [(r["dataset"], r["noise"], r["level"]) for r in rows] == [("Kodak24", "gaussian", "15.0"),
                                                                     ("Kodak24", "salt_pepper", "0.02")]
    assert [r["dataset"] for r in evaluate(root / "CBSD68")] == ["CBSD68", "CBSD68"]  # a folder of images
    # the noise of an image does not depend on which other test sets run
    alone = evaluate(root, datasets=["Kodak24"])[0]["psnr_in"]
    assert alone == [r for r in evaluate(root) if r["dataset"] == "Kodak24"][0]["psnr_in"]
    with pytest.raises(InputError, match="not found"):
        evaluate(root, datasets=["Urban100"])
    with pytest.raises(InputError, match="unknown noise kind"):
        run_config(rgb_config(NATURAL_EVALUATE, dataset_dir=str(root), output_dir=str(tmp_path / "e"),
                              noise_suite={"blur": [1]}, network_def=None))


def test_an_evaluation_stops_at_an_image_that_fails(tmp_path, caplog):
    # its tables must not silently miss an image: the first image that fails ends the run with its error
    root = _natural_test_root(tmp_path / "test")
    (root / "Kodak24" / "broken.png").write_bytes(b"not an image")
    overrides = {"dataset_dir": str(root), "output_dir": str(tmp_path / "eval"), "noise_suite": {"gaussian": [15]},
                 "network_def": "$torch.nn.Identity()", "allow_untrained": True}
    with pytest.raises(InputError, match="broken.png"):
        run_config(rgb_config(NATURAL_EVALUATE, **overrides))
    assert not (tmp_path / "eval" / "metrics.csv").exists()
    evaluator = rgb_config(NATURAL_EVALUATE, **overrides).get_parsed_content("evaluator")
    with caplog.at_level(logging.ERROR, logger="ldct_clip"), pytest.raises(SystemExit) as exc:
        evaluator.run(exit_on_error=True)
    assert exc.value.code == 2 and "broken.png" in caplog.text and not evaluator.failures
