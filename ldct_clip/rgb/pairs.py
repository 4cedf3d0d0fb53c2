"""Real-noise test sets as noisy/clean pairs.

Paired real-noise test sets (:func:`find_pairs`) are matched by name: a *noisy token* in a file's path
relative to the dataset folder is replaced by a *clean token* to find its reference, e.g.

=============  =========================================  ==========================================
test set       noisy                                      clean
=============  =========================================  ==========================================
CC             ``5dmark3_iso3200_1_real.png``             ``5dmark3_iso3200_1_mean.png``
PolyU          ``Canon5D2_bag_Real.JPG``                  ``Canon5D2_bag_mean.JPG``
SIDD (Medium)  ``0001_.../0001_NOISY_SRGB_010.PNG``       ``0001_.../0001_GT_SRGB_010.PNG``
SIDD (PNG)     ``noisy/0001.png`` (or ``input/``)         ``GT/0001.png`` (or ``target/``, ``clean/``)
=============  =========================================  ==========================================

Tokens (case-insensitive, delimited by anything but a letter): noisy ``real``, ``noisy``, ``input``, ``lq``;
clean ``mean``, ``gt``, ``clean``, ``target``. The SIDD validation blocks as released
(``ValidationNoisyBlocksSrgb.mat`` beside ``ValidationGtBlocksSrgb.mat``, 40 x 32 blocks of 256 x 256) are read too.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.rgb.folders import find_images
from ldct_clip.metrics.rgb import to_uint8
from ldct_clip.rgb.io import read_rgb

__all__ = ["NOISY_TOKENS", "CLEAN_TOKENS", "SIDD_MAT_FILES", "ImagePair", "find_pairs"]

log = logging.getLogger("ldct_clip")


NOISY_TOKENS: tuple[str, ...] = ("real", "noisy", "input", "lq")


CLEAN_TOKENS: tuple[str, ...] = ("mean", "gt", "clean", "target")


SIDD_MAT_FILES = ("ValidationNoisyBlocksSrgb.mat", "ValidationGtBlocksSrgb.mat")


# ----------------------------------------------------------------------------------------------------------
# finding images
# ----------------------------------------------------------------------------------------------------------


@dataclass
class ImagePair:
    """A noisy image and its clean reference, both ``(3, H, W)`` uint8 when loaded.

    ``load()`` returns ``(noisy, clean)``; ``noisy_source`` says where the noisy image comes from.
    """

    name: str
    noisy_source: str
    loader: Callable[[], tuple[np.ndarray, np.ndarray]]

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        noisy, clean = self.loader()
        if noisy.shape != clean.shape:
            raise InputError(f"{self.name}: noisy and clean images differ in size: {noisy.shape} vs {clean.shape}.")
        return noisy, clean


def _token_regex(tokens: Sequence[str]) -> re.Pattern[str]:
    return re.compile(r"(?<![a-z])(" + "|".join(re.escape(t) for t in tokens) + r")(?![a-z])", re.IGNORECASE)


_NOISY_RE = _token_regex(NOISY_TOKENS)


_CLEAN_RE = _token_regex(CLEAN_TOKENS)


def _pair_name(key: str) -> str:
    name = re.sub(r"[_\-. ]*\{\}[_\-. ]*", "_", key).strip("_/")
    return name.replace("/_", "/").replace("_/", "/") or "image"


def _file_pair(noisy: Path, clean: Path) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    return lambda: (to_uint8(read_rgb(noisy)), to_uint8(read_rgb(clean)))


def _sidd_mat_pairs(folder: Path) -> list[ImagePair]:
    from scipy.io import loadmat

    noisy_file, clean_file = (folder / n for n in SIDD_MAT_FILES)
    cache: dict[str, np.ndarray] = {}

    def blocks() -> tuple[np.ndarray, np.ndarray]:
        if not cache:
            for key, f in (("noisy", noisy_file), ("clean", clean_file)):
                try:
                    mat = loadmat(f)
                except Exception as e:  # noqa: BLE001 - corrupt or v7.3 file: a user problem
                    raise InputError(f"{f}: cannot read the SIDD .mat file ({e}).") from None
                arrays = [v for k, v in mat.items() if not k.startswith("__") and isinstance(v, np.ndarray)]
                if len(arrays) != 1 or arrays[0].ndim != 5 or arrays[0].shape[-1] != 3:
                    raise InputError(f"{f}: expected one (images, blocks, H, W, 3) array of SIDD blocks.")
                cache[key] = arrays[0]
            if cache["noisy"].shape != cache["clean"].shape:
                raise InputError(f"{noisy_file} and {clean_file} hold arrays of different shapes.")
        return cache["noisy"], cache["clean"]

    noisy_all, _ = blocks()
    pairs = []
    for i in range(noisy_all.shape[0]):
        for j in range(noisy_all.shape[1]):

            def load(i: int = i, j: int = j) -> tuple[np.ndarray, np.ndarray]:
                n, c = blocks()
                return (np.ascontiguousarray(n[i, j].transpose(2, 0, 1)).astype(np.uint8),
                        np.ascontiguousarray(c[i, j].transpose(2, 0, 1)).astype(np.uint8))

            pairs.append(ImagePair(f"block_{i:02d}_{j:02d}", f"{noisy_file}[{i},{j}]", load))
    return pairs


def find_pairs(folder: str | os.PathLike) -> list[ImagePair]:
    """Noisy/clean image pairs under ``folder``, matched by name (see the module docstring), sorted.

    Raises:
        InputError: no folder, no pair, a file whose name has both a noisy and a clean token, or two files
            claiming the same pair.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"{root} is not a folder of noisy/clean image pairs.")
    if all((root / n).is_file() for n in SIDD_MAT_FILES):
        return _sidd_mat_pairs(root)
    groups: dict[str, dict[str, Path]] = {}
    unmatched = 0
    for path in find_images(root):
        rel = path.relative_to(root).with_suffix("").as_posix()
        is_noisy, is_clean = bool(_NOISY_RE.search(rel)), bool(_CLEAN_RE.search(rel))
        if is_noisy and is_clean:
            raise InputError(
                f"{path}: the name has both a noisy token ({'/'.join(NOISY_TOKENS)}) and a clean token "
                f"({'/'.join(CLEAN_TOKENS)}); rename it so that it is one or the other."
            )
        if not (is_noisy or is_clean):
            unmatched += 1
            continue
        kind, regex = ("noisy", _NOISY_RE) if is_noisy else ("clean", _CLEAN_RE)
        generic = regex.sub("{}", rel)
        slot = groups.setdefault(generic.lower(), {})
        if kind in slot:
            raise InputError(f"{slot[kind]} and {path} are both the {kind} image of pair {_pair_name(generic)!r}.")
        slot[kind] = path

    def name(noisy: Path) -> str:
        return _pair_name(_NOISY_RE.sub("{}", noisy.relative_to(root).with_suffix("").as_posix()))

    pairs = [
        ImagePair(name(slot["noisy"]), str(slot["noisy"]), _file_pair(slot["noisy"], slot["clean"]))
        for _, slot in sorted(groups.items())
        if "noisy" in slot and "clean" in slot
    ]
    lonely = sorted(str(slot.get("noisy", slot.get("clean"))) for slot in groups.values()
                    if not ("noisy" in slot and "clean" in slot))
    if lonely:
        log.warning("%s: %d image(s) without a partner are skipped, e.g. %s", root, len(lonely), lonely[0])
    if unmatched:
        log.warning("%s: %d image(s) with neither a noisy nor a clean token in the name are skipped", root, unmatched)
    if not pairs:
        raise InputError(
            f"no noisy/clean image pairs in {root}. Name them as SIDD, PolyU or CC do: *_real.png beside "
            "*_mean.png, *NOISY*.PNG beside *GT*.PNG, or noisy/ and GT/ subfolders with the same file names "
            f"(noisy tokens {NOISY_TOKENS}, clean tokens {CLEAN_TOKENS})."
        )
    return pairs


# ----------------------------------------------------------------------------------------------------------
# 8-bit metrics of the paper's test scripts
# ----------------------------------------------------------------------------------------------------------
