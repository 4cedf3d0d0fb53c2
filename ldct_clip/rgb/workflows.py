"""The natural-image and sRGB tasks of the paper as bundle workflows: denoise a folder, evaluate on test sets.

Every workflow runs one pass over the ``dataset`` its config declares (a MONAI ``Dataset``: records and the
declared ``preprocessing``), through the declared ``inferer``, then the declared ``postprocessing``:

* :class:`ImageDenoisingWorkflow`: a folder of RGB images (PNG/JPEG/TIFF, :class:`~ldct_clip.rgb.images.ImageFolder`)
  in, denoised 8-bit PNGs out (``configs/natural/inference.json``; the sRGB model runs through it as well).
* :class:`SyntheticNoiseEvaluation`: the paper's synthetic-noise protocol (``configs/natural/evaluate.json``) over
  :class:`SyntheticNoiseSet`: clean test sets (CBSD68, McMaster, Kodak24, Urban100 -- one subfolder each), seeded
  noise of every setting of a noise suite (default :data:`ldct_clip.rgb.noise.NOISE_SUITE`), PSNR/SSIM of the 8-bit
  output.
* :class:`PairedEvaluation`: real-noise test sets of noisy/clean pairs (:class:`PairedTestSets`: SIDD, PolyU, CC;
  ``configs/srgb/evaluate.json``), pairs found by :func:`ldct_clip.rgb.images.find_pairs`.
* Training pieces for ``configs/natural/train.json`` and ``configs/srgb/train.json``, which reuse the CT
  trainer (:class:`ldct_clip.engine.trainer.DenoisingTrainer`): :func:`training_images` (clean training images),
  :class:`NoisyImageSet` / :class:`PairedImageSet` (validation), :class:`RGBImageQualityMetric` (validation PSNR/SSIM
  as the evaluation computes them) and :func:`cosine_iterations` (the length of the cosine part of the paper's
  learning-rate schedule, torch's ``SequentialLR`` of ``ConstantLR`` and ``CosineAnnealingLR``).

Metrics follow the paper's test scripts (:func:`~ldct_clip.rgb.images.psnr_8bit`, :func:`~ldct_clip.rgb.images.ssim_8bit`):
the network output is clipped to [0, 1] and rounded to 8 bits; PSNR and SSIM are computed on the RGB channels
against the 8-bit clean image. The noisy input is fed to the network as float, unclipped (the paper's synthetic
protocol), except for the kinds in ``clip_noisy`` (Poisson by default: the reference clips it).

Evaluations write ``per_image.csv`` (one row per image and setting), ``metrics.csv`` (means per dataset and
setting) and ``metrics.md`` (one table per dataset) into ``output_dir``.
"""

from __future__ import annotations

import csv
import logging
import os
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ldct_clip.bundle import as_flag
from ldct_clip.checkpoints import load_checkpoint, load_weights
from ldct_clip.errors import InputError, LdctClipError, WeightsError
from ldct_clip.rgb.images import (
    ImagePair,
    LazyItems,
    find_images,
    find_pairs,
    output_names,
    psnr_8bit,
    read_rgb,
    ssim_8bit,
    to_uint8,
    write_png,
)
from ldct_clip.inference import SliceSlidingWindowInferer
from ldct_clip.atomic import atomic_path
from ldct_clip.rgb.noise import NOISE_KINDS, NOISE_SUITE, add_noise
from ldct_clip.engine.precision import prepare_model
from ldct_clip.engine.trainer import MeanImageMetric

__all__ = [
    "ImageDenoisingWorkflow",
    "NoisyImageSet",
    "PairedEvaluation",
    "PairedImageSet",
    "PairedTestSets",
    "RGBImageQualityMetric",
    "SyntheticNoiseEvaluation",
    "SyntheticNoiseSet",
    "cosine_iterations",
    "noise_seed",
    "training_images",
    "write_tables",
]

log = logging.getLogger("ldct_clip")

Inferer = Callable[[torch.Tensor, torch.nn.Module], torch.Tensor]
Transform = Callable[[dict], dict]


def _user_error(error: BaseException | None) -> LdctClipError | None:
    """The project's error behind ``error``, if any: MONAI's ``Dataset`` and ``Compose`` re-raise what a transform
    raises as a ``RuntimeError`` from it, so a bad image arrives wrapped."""
    while error is not None:
        if isinstance(error, LdctClipError):
            return error
        error = error.__cause__
    return None


def _item_name(dataset: Sequence[Any], index: int) -> str:
    """The name of item ``index`` from its record, without loading it (for the report of an item that failed)."""
    records = getattr(dataset, "data", dataset)  # a MONAI Dataset keeps its records as ``data``
    try:
        record = records.records[index] if isinstance(records, LazyItems) else records[index]
    except Exception:  # noqa: BLE001 - only a label for a failure already being reported
        record = None
    return str(record["name"]) if isinstance(record, Mapping) and "name" in record else f"item {index}"


class _RGBWorkflow:
    """What every RGB workflow shares: the weights, the network and one pass over the declared dataset.

    Each item of ``dataset`` (a MONAI ``Dataset`` of records and the preprocessing) is a dictionary holding a
    ``(3, H, W)`` float image in [0, 1] under ``"image"``. The inferer's output goes under ``"pred"``,
    ``postprocessing`` (if any) is applied, and the subclass writes or scores the item (:meth:`_consume`).
    """

    #: a user error on one item is reported and the pass goes on; ``False``: it ends the run (an evaluation
    #: whose tables would silently miss an image)
    keep_going: bool = True

    def __init__(
        self,
        dataset: Sequence[Mapping[str, Any]],
        network: torch.nn.Module | None,
        *,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        ckpt_path: str | os.PathLike | None = None,
        allow_untrained: bool = False,
        device: str | torch.device = "cpu",
        channels_last: bool = True,
        compile: bool = False,
        progress: bool = True,
    ) -> None:
        self.dataset = dataset
        self.network = network
        self.ckpt_path = Path(ckpt_path) if ckpt_path else None
        self.allow_untrained = as_flag(allow_untrained, "allow_untrained")
        self.device = torch.device(device)
        self.channels_last = as_flag(channels_last, "channels_last")
        self.inferer = inferer if inferer is not None else SliceSlidingWindowInferer(
            roi_size=(1024, 1024), sw_batch_size=1, precision="fp32", channels_last=self.channels_last
        )
        self.postprocessing = postprocessing
        self.compile = as_flag(compile, "compile")
        self.progress = progress
        self.failed: list[str] = []

    def load_network(self) -> torch.nn.Module:
        """Load the checkpoint (the authors' ``.pth`` or a ``model.pt``) and prepare the network for inference.

        With ``network=None`` the network is built in the shape the checkpoint holds.
        """
        if self.ckpt_path is not None and self.ckpt_path.is_file():
            if self.network is None:
                self.network = load_checkpoint(self.ckpt_path)
            else:
                load_weights(self.network, self.ckpt_path)  # type: ignore[arg-type]
            log.info("weights: %s", self.ckpt_path)
        elif self.allow_untrained and self.network is not None:
            log.warning(
                "WARNING: running with UNTRAINED weights (no checkpoint%s). The output is NOT a denoised image; "
                "it only shows that the pipeline runs.", f" at {self.ckpt_path}" if self.ckpt_path else "",
            )
        else:
            raise WeightsError(
                f"no checkpoint at {self.ckpt_path or '(none given)'}. Pass `--ckpt_path PATH` (the authors' "
                "natural or sRGB .pth, or a model.pt trained with configs/natural/train.json or configs/srgb/train.json)."
            )
        channels = getattr(self.network, "in_channels", 3)
        if channels != 3:
            raise WeightsError(
                f"the network takes {channels}-channel input; RGB images need a 3-channel model (the natural or "
                "sRGB checkpoint, not the CT one)."
            )
        return prepare_model(self.network, self.device, channels_last=self.channels_last, compile=self.compile)

    def denoise(self, image: torch.Tensor | np.ndarray, model: torch.nn.Module) -> torch.Tensor:
        """``(3, H, W)`` float image -> ``(3, H, W)`` float32 network output on the CPU (not clipped)."""
        x = torch.as_tensor(image, dtype=torch.float32)
        if x.ndim != 3 or x.shape[0] != 3:
            raise InputError(f"expected a (3, H, W) RGB image, got shape {tuple(x.shape)}.")
        return self.inferer(x[None].to(self.device), model)[0].float().cpu()

    def run(self, exit_on_error: bool = False) -> Any:
        """Run the workflow. With ``exit_on_error`` (command-line use) a user error ends the process with
        status 2 and a one-line message, no traceback."""
        try:
            result = self._run()
        except LdctClipError as e:
            if not exit_on_error:
                raise
            log.error("error: %s", e)
            raise SystemExit(2) from None
        if exit_on_error and self.failed:
            raise SystemExit(2)
        return result

    def _run(self) -> Any:
        total = len(self.dataset)  # lists the records: a missing folder or an empty one ends the run here
        model = self.load_network()
        self.failed = []
        self._start(total)
        with tqdm(total=total, desc=type(self).__name__, unit="img", file=sys.stderr, disable=not self.progress,
                  leave=False) as bar:
            for index in range(total):
                started = time.perf_counter()
                try:
                    item = dict(self.dataset[index])
                    item["pred"] = self.denoise(item["image"], model)
                    if self.postprocessing is not None:
                        item = self.postprocessing(item)
                    self._consume(item, time.perf_counter() - started)
                except Exception as e:  # noqa: BLE001 - only user errors are handled; the rest is re-raised
                    error = _user_error(e)
                    if error is None:
                        raise
                    if not self.keep_going:
                        raise error from None
                    name = _item_name(self.dataset, index)
                    self.failed.append(name)
                    log.error("%s: FAILED: %s", name, error)
                bar.update()
        return self._finish(total)

    def _start(self, total: int) -> None:
        """Before the pass over ``total`` items."""

    def _consume(self, item: dict[str, Any], seconds: float) -> None:
        """Write or score one item (``"pred"``: the network output after postprocessing)."""
        raise NotImplementedError

    def _finish(self, total: int) -> Any:
        """After the pass: the result of :meth:`run`."""
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------------------
# denoise a folder
# ----------------------------------------------------------------------------------------------------------


class ImageDenoisingWorkflow(_RGBWorkflow):
    """Denoise every image of ``dataset`` into an 8-bit PNG ``output_dir/<name>``.

    Args:
        dataset: items ``{"image": (3, H, W) float in [0, 1], "name": relative output name}``: in the config a MONAI
            ``Dataset`` of :class:`~ldct_clip.rgb.images.ImageFolder` records with the declared ``preprocessing``
            (:class:`~ldct_clip.rgb.images.LoadRGBd`). ``ImageFolder`` refuses an ``output_dir`` that would overwrite
            an input.
        output_dir: where the ``<name>`` files go.
        network: the 3-channel denoiser ``ckpt_path`` is loaded into; ``None`` builds it from the checkpoint.
        inferer: runs the network on a ``(1, 3, H, W)`` batch (default: whole images up to 1024 px, fp32).
        postprocessing: dictionary transform applied after inference, the output under ``"pred"``; whatever it
            leaves there is written with :func:`~ldct_clip.rgb.images.write_png` (float in [0, 1] or uint8).
        ckpt_path, allow_untrained, device, channels_last, compile, progress: as
            :class:`~ldct_clip.pipeline.CTDenoisingWorkflow`.

    An image that fails (e.g. a corrupt file) is reported and listed in ``failed``; the others are written.
    :meth:`run` returns the paths written.
    """

    def __init__(
        self,
        dataset: Sequence[Mapping[str, Any]],
        output_dir: str | os.PathLike,
        network: torch.nn.Module | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, network, **kwargs)
        self.output_dir = Path(output_dir).expanduser()
        self.written: list[Path] = []

    def _start(self, total: int) -> None:
        self.written = []
        log.info("%d image(s) -> %s (device %s)", total, self.output_dir, self.device)

    def _consume(self, item: dict[str, Any], seconds: float) -> None:
        target = self.output_dir / item["name"]
        self.written.append(write_png(target, item["pred"]))
        log.info("%s: %.2f s -> %s", item["name"], seconds, target)

    def _finish(self, total: int) -> list[Path]:
        log.info("done: %d of %d image(s) denoised%s", len(self.written), total,
                 f"; failed: {', '.join(self.failed)}" if self.failed else "")
        return list(self.written)


# ----------------------------------------------------------------------------------------------------------
# evaluation data
# ----------------------------------------------------------------------------------------------------------


def noise_seed(seed: int, *parts: object) -> np.random.Generator:
    """A generator seeded from ``seed`` and names (dataset, image, noise kind, level): the noise of one image
    and setting does not depend on which other images or settings are evaluated, or in which order."""
    words = [int(seed)] + [zlib.crc32(str(p).encode()) for p in parts]
    return np.random.default_rng(words)


def _dataset_folders(
    root: Path, datasets: Sequence[str] | None, has_data: Callable[[Path], bool]
) -> list[tuple[str, Path]]:
    """``(name, folder)`` of the test sets under ``root``: the named subfolders, or every subfolder with data,
    or ``root`` itself when it holds the data directly."""
    if not root.is_dir():
        raise InputError(f"{root} is not a folder. Give the folder that holds one subfolder per test set.")
    if datasets:
        if isinstance(datasets, str):
            datasets = [datasets]
        missing = [d for d in datasets if not (root / d).is_dir()]
        if missing:
            present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            raise InputError(f"test set folder(s) {missing} not found in {root} (it has {present}).")
        return [(str(d), root / d) for d in datasets]
    subs = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".") and has_data(p)]
    if subs:
        return [(p.name, p) for p in subs]
    if has_data(root):
        return [(root.name, root)]
    raise InputError(f"no test sets in {root}: expected one subfolder per test set (e.g. CBSD68/, Kodak24/).")


def _has_images(folder: Path) -> bool:
    try:
        return bool(find_images(folder))
    except InputError:
        return False


def _has_pairs(folder: Path) -> bool:
    return _has_images(folder) or (folder / "ValidationNoisyBlocksSrgb.mat").is_file()


def _check_suite(noise_suite: Mapping[str, Any]) -> list[tuple[str, float]]:
    if not isinstance(noise_suite, Mapping) or not noise_suite:
        raise InputError(f"noise_suite must be a non-empty mapping kind -> levels, got {noise_suite!r}.")
    settings = []
    for kind, levels in noise_suite.items():
        if kind not in NOISE_KINDS:
            raise InputError(f"unknown noise kind {kind!r} in noise_suite; choose from {sorted(NOISE_KINDS)}.")
        for level in np.atleast_1d(np.asarray(levels, dtype=float)).tolist():
            settings.append((kind, float(level)))
    return settings


def _fmt_level(level: float) -> str:
    return f"{level:g}"


def _clean_image(path: Path) -> np.ndarray:
    """A clean test image as the metrics see it: 8-bit levels, ``(3, H, W)`` float32 in [0, 1]."""
    return to_uint8(read_rgb(path)).astype(np.float32) / np.float32(255.0)


def _pair_item(pair: ImagePair) -> dict[str, Any]:
    """``{"image": noisy, "label": clean, "name"}`` of a noisy/clean pair, both ``(3, H, W)`` float32 in [0, 1]."""
    noisy, clean = pair.load()
    scale = np.float32(255.0)
    return {"image": noisy.astype(np.float32) / scale, "label": clean.astype(np.float32) / scale, "name": pair.name}


class SyntheticNoiseSet(LazyItems):
    """Clean test sets with seeded noise of every setting of a noise suite: the data of the paper's
    synthetic-noise evaluation, for a MONAI ``Dataset``.

    Items, one per image and ``(kind, level)``, test set by test set, image by image: ``{"image": noisy,
    "label": clean, "dataset", "name", "noise", "level"}``. ``label`` is the 8-bit clean image scaled to [0, 1];
    ``image`` adds :func:`ldct_clip.rgb.noise.add_noise` of the setting, drawn from :func:`noise_seed` of
    ``(seed, dataset, name, kind, level)``, unclipped unless ``kind`` is in ``clip_noisy``. Both ``(3, H, W)`` float32.

    Args:
        folder: one subfolder of clean images per test set (e.g. ``CBSD68/``, ``McMaster/``, ``Kodak24/``,
            ``Urban100/``), or a single folder of images.
        datasets: subfolder names to evaluate, in this order (default: every subfolder holding images).
        noise_suite: ``{kind: levels}`` (default :data:`ldct_clip.rgb.noise.NOISE_SUITE`: the paper's Gaussian
            15/25/50, spatially correlated 40/45/50/55, Poisson 2/2.5/3/3.5, plus speckle and salt-and-pepper).
        seed: base seed.
        clip_noisy: noise kinds whose noisy image is clipped to [0, 1] (the reference clips Poisson-noisy images
            and feeds the Gaussian ones unclipped).

    Raises (on first use, see :class:`~ldct_clip.rgb.images.LazyItems`):
        InputError: no such folder or test set, no images, or a bad ``noise_suite``.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        datasets: Sequence[str] | str | None = None,
        noise_suite: Mapping[str, Any] | None = None,
        seed: int = 0,
        clip_noisy: Sequence[str] | str = ("poisson",),
    ) -> None:
        super().__init__()
        self.root = Path(folder).expanduser()
        self.datasets = [datasets] if isinstance(datasets, str) else (list(datasets) if datasets else None)
        self.noise_suite = NOISE_SUITE if noise_suite is None else noise_suite
        self.seed = int(seed)
        self.clip_noisy = {clip_noisy} if isinstance(clip_noisy, str) else set(clip_noisy or ())
        self._cached: tuple[Path | None, np.ndarray | None] = (None, None)

    def _list(self) -> list[dict[str, Any]]:
        settings = _check_suite(self.noise_suite)
        records: list[dict[str, Any]] = []
        counts = []
        for dataset, folder in _dataset_folders(self.root, self.datasets, _has_images):
            paths = find_images(folder)
            counts.append(f"{dataset}: {len(paths)}")
            for path, name in zip(paths, output_names(paths, folder)):
                records += [{"dataset": dataset, "path": path, "name": Path(name).with_suffix("").as_posix(),
                             "noise": kind, "level": level} for kind, level in settings]
        log.info("%d test set(s) (%s), %d noise settings, %d denoising runs", len(counts), ", ".join(counts),
                 len(settings), len(records))
        return records

    def _load(self, record: dict[str, Any]) -> dict[str, Any]:
        # the settings of one image follow each other: read it once for all of them
        if self._cached[0] != record["path"]:
            self._cached = (record["path"], _clean_image(record["path"]))
        clean = self._cached[1].copy()
        kind, level = record["noise"], record["level"]
        noisy = add_noise(clean, kind, level, seed=noise_seed(self.seed, record["dataset"], record["name"], kind, level),
                          clip=kind in self.clip_noisy)
        return {"image": noisy, "label": clean, "dataset": record["dataset"], "name": record["name"],
                "noise": kind, "level": level}


class PairedTestSets(LazyItems):
    """Real-noise test sets of noisy/clean pairs (SIDD, PolyU, CC), for a MONAI ``Dataset``.

    Items, test set by test set: ``{"image": noisy, "label": clean, "dataset", "name"}``, both ``(3, H, W)``
    float32 in [0, 1] (8-bit levels). Pairs are found by name (:func:`ldct_clip.rgb.images.find_pairs`).

    Args:
        folder: one subfolder per test set (e.g. ``CC/``, ``PolyU/``, ``SIDD/``), or one test set.
        datasets: subfolder names to evaluate (default: every subfolder holding images or SIDD ``.mat`` blocks).

    Raises (on first use):
        InputError: no such folder or test set, or a test set without pairs.
    """

    def __init__(self, folder: str | os.PathLike, datasets: Sequence[str] | str | None = None) -> None:
        super().__init__()
        self.root = Path(folder).expanduser()
        self.datasets = [datasets] if isinstance(datasets, str) else (list(datasets) if datasets else None)

    def _list(self) -> list[dict[str, Any]]:
        sets = [(name, find_pairs(folder)) for name, folder in _dataset_folders(self.root, self.datasets, _has_pairs)]
        log.info("%d test set(s) (%s), %d image pairs", len(sets), ", ".join(f"{n}: {len(p)}" for n, p in sets),
                 sum(len(p) for _, p in sets))
        return [{"dataset": name, "name": pair.name, "pair": pair} for name, pairs in sets for pair in pairs]

    def _load(self, record: dict[str, Any]) -> dict[str, Any]:
        return {**_pair_item(record["pair"]), "dataset": record["dataset"]}


# ----------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------


class _Evaluation(_RGBWorkflow):
    """Score each item's output against its ``"label"`` and write the tables (and, optionally, the images).

    Items: ``{"image": noisy, "label": clean, "dataset", "name"}`` plus the other ``group_keys``.
    """

    group_keys: tuple[str, ...] = ("dataset",)
    title = "PSNR (dB) / SSIM of the 8-bit RGB output"
    keep_going = False

    def __init__(
        self,
        dataset: Sequence[Mapping[str, Any]],
        output_dir: str | os.PathLike,
        network: torch.nn.Module | None,
        *,
        save_images: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, network, **kwargs)
        self.output_dir = Path(output_dir).expanduser()
        self.save_images = as_flag(save_images, "save_images")
        self.rows: list[dict[str, Any]] = []

    def _start(self, total: int) -> None:
        self.rows = []

    def _consume(self, item: dict[str, Any], seconds: float) -> None:
        clean_u8, out = to_uint8(item["label"]), to_uint8(item["pred"])
        settings = {k: item[k] for k in self.group_keys if k != "dataset"}
        self.rows.append({
            "dataset": item["dataset"], "image": item["name"], **settings,
            "psnr_in": psnr_8bit(to_uint8(item["image"]), clean_u8),
            "psnr": psnr_8bit(out, clean_u8),
            "ssim": ssim_8bit(out, clean_u8),
        })
        if self.save_images:
            folder = self.output_dir / "images" / str(item["dataset"])
            if settings:
                folder = folder / "_".join(_fmt_level(v) if isinstance(v, float) else str(v) for v in settings.values())
            write_png(folder / f"{item['name']}.png", out)

    def _finish(self, total: int) -> dict[str, Path]:
        paths = write_tables(self.rows, self.output_dir, self.group_keys, title=self.title)
        log.info("metrics: %s", ", ".join(str(p) for p in paths.values()))
        return paths


class SyntheticNoiseEvaluation(_Evaluation):
    """The paper's synthetic-noise evaluation of the natural-image model.

    For every item of ``dataset`` (:class:`SyntheticNoiseSet`: a clean image and one ``(kind, level)`` of the noise
    suite): denoise, clip and round the output to 8 bits, and compute PSNR/SSIM (:func:`~ldct_clip.rgb.images.psnr_8bit`,
    :func:`~ldct_clip.rgb.images.ssim_8bit`) against the 8-bit clean image. ``psnr_in`` is the PSNR of the noisy input
    (clipped, 8-bit) for reference.

    Args:
        dataset: items ``{"image": noisy, "label": clean, "dataset", "name", "noise", "level"}`` (the config: a
            MONAI ``Dataset`` of :class:`SyntheticNoiseSet` with the declared ``preprocessing``).
        output_dir: where ``metrics.csv``, ``metrics.md``, ``per_image.csv`` (and ``images/``) go.
        network: the 3-channel denoiser (``None``: built from the checkpoint).
        save_images: also write the denoised PNGs to ``output_dir/images/<dataset>/<kind>_<level>/``.
        inferer, postprocessing, ckpt_path, allow_untrained, device, channels_last, compile, progress: as
            :class:`ImageDenoisingWorkflow`. A user error on an image ends the evaluation.
    """

    group_keys = ("dataset", "noise", "level")
    title = "Synthetic noise: PSNR (dB) / SSIM of the 8-bit RGB output"


class PairedEvaluation(_Evaluation):
    """Evaluation on real-noise test sets of noisy/clean pairs (the paper's sRGB protocol: SIDD, PolyU, CC).

    Each noisy image of ``dataset`` (:class:`PairedTestSets`; 8-bit, scaled to [0, 1]) is denoised, clipped and
    rounded to 8 bits and compared with its clean reference (PSNR/SSIM on RGB). Images are saved (``save_images``)
    to ``output_dir/images/<dataset>/``.

    Args: as :class:`SyntheticNoiseEvaluation`, items ``{"image": noisy, "label": clean, "dataset", "name"}``.
    """

    title = "Real noise: PSNR (dB) / SSIM of the 8-bit RGB output"


# ----------------------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------------------

_METRICS = ("psnr_in", "psnr", "ssim")


def _summarise(rows: Sequence[Mapping[str, Any]], group_keys: Sequence[str]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in group_keys), []).append(r)
    return [
        {**dict(zip(group_keys, key)), "images": len(members),
         **{m: float(np.mean([r[m] for r in members])) for m in _METRICS}}
        for key, members in groups.items()
    ]


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: f"{v:.6f}" if isinstance(v, float) and k in _METRICS else v for k, v in r.items()})
    return path


def write_tables(
    rows: Sequence[Mapping[str, Any]], output_dir: str | os.PathLike, group_keys: Sequence[str], *, title: str = "Results"
) -> dict[str, Path]:
    """Write ``per_image.csv``, ``metrics.csv`` (means per ``group_keys``) and ``metrics.md`` (a table per dataset).

    ``rows`` hold ``dataset``, ``image``, the ``group_keys`` and the metrics ``psnr_in``, ``psnr``, ``ssim``.
    Returns the paths by name (``"per_image"``, ``"csv"``, ``"markdown"``).
    """
    if not rows:
        raise InputError("nothing was evaluated: no images.")
    out = Path(output_dir)
    summary = _summarise(rows, group_keys)
    paths = {"per_image": _write_csv(out / "per_image.csv", rows), "csv": _write_csv(out / "metrics.csv", summary)}
    setting_keys = [k for k in group_keys if k != "dataset"]

    def cells(r: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
        return [_fmt_level(r[k]) if isinstance(r[k], float) else str(r[k]) for k in keys] + [
            str(r["images"]), f"{r['psnr_in']:.2f}", f"{r['psnr']:.2f}", f"{r['ssim']:.4f}"]

    def table(keys: Sequence[str], members: Sequence[Mapping[str, Any]]) -> list[str]:
        head = [k.capitalize() for k in keys] + ["Images", "Input PSNR", "PSNR", "SSIM"]
        return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                + ["| " + " | ".join(cells(r, keys)) + " |" for r in members] + [""])

    lines = [f"# {title}", ""]
    if setting_keys:  # one table per dataset, a row per setting
        for dataset in dict.fromkeys(r["dataset"] for r in summary):
            lines += [f"## {dataset}", ""] + table(setting_keys, [s for s in summary if s["dataset"] == dataset])
    else:  # one row per dataset
        lines += table(["dataset"], summary)
    md = out / "metrics.md"
    md.write_text("\n".join(lines))
    paths["markdown"] = md
    for r in summary:
        what = " ".join([r["dataset"]] + cells(r, setting_keys)[: len(setting_keys)])
        log.info("%s: PSNR %.2f dB (input %.2f), SSIM %.4f over %d image(s)", what, r["psnr"], r["psnr_in"], r["ssim"],
                 r["images"])
    return paths


# ----------------------------------------------------------------------------------------------------------
# training and validation data, metric, schedule
# ----------------------------------------------------------------------------------------------------------


def training_images(folder: str | os.PathLike, min_size: int = 0) -> list[dict[str, str]]:
    """``[{"label": path, "name": relative path}]``: the clean training images under ``folder`` (e.g. CBSD432,
    DIV2K), for a MONAI ``Dataset`` whose transforms start with ``LoadRGBd(keys="label")``.

    Raises:
        InputError: no folder, no images, or images smaller than ``min_size`` (the training crop) on a side.
    """
    from PIL import Image

    root = Path(folder).expanduser()
    paths = find_images(root)
    small = []
    if min_size:
        for p in paths:
            try:
                with Image.open(p) as im:
                    w, h = im.size
            except OSError as e:
                raise InputError(f"{p}: cannot read the image ({e}).") from None
            if min(w, h) < int(min_size):
                small.append(f"{p.name} ({w}x{h})")
    if small:
        raise InputError(
            f"{len(small)} training image(s) in {root} are smaller than the {min_size} px crop: "
            f"{', '.join(small[:5])}{' ...' if len(small) > 5 else ''}. Remove them or lower crop_size."
        )
    log.info("training data: %d image(s) in %s", len(paths), root)
    return [{"label": str(p), "name": p.relative_to(root).as_posix() if root.is_dir() else p.name} for p in paths]


def _spread(n: int, max_items: int | None) -> list[int]:
    if max_items is None or n <= int(max_items):
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, int(max_items)).round().astype(int).tolist()))


class NoisyImageSet(Sequence):
    """Clean images with seeded synthetic noise, for validation: ``{"image": noisy, "label": clean, "name"}``.

    Both ``(3, H, W)`` float32; the clean image is 8-bit scaled to [0, 1], the noise (:func:`ldct_clip.rgb.noise.add_noise`)
    is drawn from :func:`noise_seed` so every validation run sees the same noisy images.

    Args:
        folder: clean images (e.g. CBSD68).
        noise, level: kind and level (the reference validates its natural model on Gaussian sigma 50).
        seed: base seed.
        max_images: keep at most this many images, evenly spread; ``None``: all.
        clip: clip the noisy image to [0, 1].
    """

    def __init__(self, folder: str | os.PathLike, noise: str = "gaussian", level: float = 50.0, seed: int = 0,
                 max_images: int | None = None, clip: bool = False) -> None:
        if noise not in NOISE_KINDS:
            raise InputError(f"unknown noise kind {noise!r}; choose from {sorted(NOISE_KINDS)}.")
        self.root = Path(folder).expanduser()
        paths = find_images(self.root)
        self.paths = [paths[i] for i in _spread(len(paths), max_images)]
        self.noise, self.level, self.seed, self.clip = noise, float(level), int(seed), bool(clip)
        log.info("validation data: %d image(s) from %s with %s noise %g", len(self.paths), self.root, noise, self.level)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        path = self.paths[index]
        clean = _clean_image(path)
        noisy = add_noise(clean, self.noise, self.level, seed=noise_seed(self.seed, path.name, self.noise, self.level),
                          clip=self.clip)
        return {"image": noisy.astype(np.float32), "label": clean, "name": path.name}


class PairedImageSet(Sequence):
    """Noisy/clean pairs (:func:`ldct_clip.rgb.images.find_pairs`, e.g. SIDD validation) as validation items
    ``{"image": noisy, "label": clean, "name"}``, both ``(3, H, W)`` float32 in [0, 1] (8-bit levels)."""

    def __init__(self, folder: str | os.PathLike, max_images: int | None = None) -> None:
        pairs = find_pairs(folder)
        self.pairs = [pairs[i] for i in _spread(len(pairs), max_images)]
        log.info("validation data: %d image pair(s) from %s", len(self.pairs), folder)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        return _pair_item(self.pairs[index])


class RGBImageQualityMetric(MeanImageMetric):
    """PSNR (dB) or SSIM of RGB images as the evaluation computes them (8-bit, :func:`~ldct_clip.rgb.images.psnr_8bit`,
    :func:`~ldct_clip.rgb.images.ssim_8bit`), for ``IgniteMetricHandler`` in a validation evaluator.

    ``y_pred`` (the network output) and ``y`` (the clean image): ``(B, C, H, W)`` in [0, 1]; both are clipped and
    rounded to 8 bits. Each call returns ``(B, 1)``; :meth:`aggregate` the mean over everything seen.
    """

    def __init__(self, metric: str = "psnr") -> None:
        super().__init__()
        if metric not in ("psnr", "ssim"):
            raise InputError(f"metric must be 'psnr' or 'ssim', got {metric!r}.")
        self.metric = metric

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None or y_pred.shape != y.shape or y_pred.ndim != 4:
            raise ValueError(f"y_pred and y must be (B, C, H, W) of one shape, got {tuple(y_pred.shape)} and "
                             f"{None if y is None else tuple(y.shape)}")
        fn = psnr_8bit if self.metric == "psnr" else ssim_8bit
        values = [fn(to_uint8(p), to_uint8(t)) for p, t in zip(y_pred.detach().float().cpu(), y.detach().float().cpu())]
        return torch.tensor(values, dtype=torch.float64, device=y_pred.device).reshape(-1, 1)




def cosine_iterations(iterations: int, constant_iterations: int) -> int:
    """``T_max`` of the cosine part of the paper's natural and sRGB schedule (``configs/natural/train.json``).

    The schedule is torch's ``SequentialLR``: ``ConstantLR`` (factor 1) for the first ``constant_iterations``
    steps, then ``CosineAnnealingLR`` from ``lr`` to ``lr_min`` ending at ``iterations`` (the paper: 92k constant,
    then 208k of cosine to 1e-6, 300k in all; the reference's ``CosineAnnealingRestartCyclicLR`` with periods
    [92000, 208000]). Returns ``iterations - constant_iterations``, at least 1 (a schedule that stays constant to
    the end still needs a valid cosine scheduler).

    Raises:
        InputError: ``constant_iterations`` is negative or beyond ``iterations``.
    """
    if not 0 <= int(constant_iterations) <= int(iterations):
        raise InputError(f"need 0 <= lr_constant_iterations ({constant_iterations}) <= iterations ({iterations}).")
    return max(1, int(iterations) - int(constant_iterations))
