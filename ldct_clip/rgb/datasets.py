"""The RGB test and validation sets: clean test sets with seeded synthetic noise, real-noise pairs, training
images, and the validation sets of training."""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ldct_clip.engine.dataset import LazyItems
from ldct_clip.errors import InputError
from ldct_clip.rgb.folders import find_images, output_names
from ldct_clip.metrics.rgb import to_uint8
from ldct_clip.rgb.io import read_rgb
from ldct_clip.rgb.pairs import ImagePair, find_pairs
from ldct_clip.rgb.noise import NOISE_KINDS, NOISE_SUITE, add_noise

__all__ = ["NoisyImageSet", "NoisyCleanImageSet", "RealNoiseTestSets", "SyntheticNoiseSet", "noise_seed", "training_images"]

log = logging.getLogger("ldct_clip")


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

    Raises (on first use, see :class:`~ldct_clip.engine.dataset.LazyItems`):
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


class RealNoiseTestSets(LazyItems):
    """Real-noise test sets of noisy/clean pairs (SIDD, PolyU, CC), for a MONAI ``Dataset``.

    Items, test set by test set: ``{"image": noisy, "label": clean, "dataset", "name"}``, both ``(3, H, W)``
    float32 in [0, 1] (8-bit levels). Pairs are found by name (:func:`ldct_clip.rgb.pairs.find_pairs`).

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


class NoisyCleanImageSet(Sequence):
    """Noisy/clean pairs (:func:`ldct_clip.rgb.pairs.find_pairs`, e.g. SIDD validation) as validation items
    ``{"image": noisy, "label": clean, "name"}``, both ``(3, H, W)`` float32 in [0, 1] (8-bit levels)."""

    def __init__(self, folder: str | os.PathLike, max_images: int | None = None) -> None:
        pairs = find_pairs(folder)
        self.pairs = [pairs[i] for i in _spread(len(pairs), max_images)]
        log.info("validation data: %d image pair(s) from %s", len(self.pairs), folder)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        return _pair_item(self.pairs[index])
