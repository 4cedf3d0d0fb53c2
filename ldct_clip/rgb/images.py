"""RGB image folders for the natural-image and sRGB tasks: finding, reading, writing, pairing, 8-bit metrics.

Images are handled as MONAI does: channel-first ``(3, H, W)`` float32 in [0, 1] (R, G, B). Grey images are
repeated to three channels (the RGB models need three); an alpha channel is dropped; 16-bit PNG/TIFF files
are scaled by 1/65535. JPEG EXIF orientation is applied, as OpenCV's ``imread`` (the reference code's reader)
does.

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

Metrics (:func:`psnr_8bit`, :func:`ssim_8bit`) are those of the paper's test scripts (Restormer's
``utils.calculate_psnr`` / ``calculate_ssim``, which reproduce MATLAB): both images 8-bit, PSNR over all
RGB values with peak 255; SSIM per RGB channel with an 11 x 11 Gaussian window (sigma 1.5), constants
``(0.01 * 255)^2`` and ``(0.03 * 255)^2``, averaged over the *valid* region (pixels whose window lies inside
the image), then over the three channels. No border crop, no Y channel.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from scipy import ndimage

from ldct_clip.engine.dataset import LazyItems
from ldct_clip.errors import InputError
from ldct_clip.reporting.figures import save_png

__all__ = [
    "IMAGE_SUFFIXES",
    "NOISY_TOKENS",
    "CLEAN_TOKENS",
    "ImageFolder",
    "ImagePair",
    "LoadRGB",
    "LoadRGBd",
    "SaveRGB",
    "SaveRGBd",
    "find_images",
    "find_pairs",
    "output_names",
    "psnr_8bit",
    "read_rgb",
    "ssim_8bit",
    "to_uint8",
    "write_png",
]

log = logging.getLogger("ldct_clip")

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NOISY_TOKENS: tuple[str, ...] = ("real", "noisy", "input", "lq")
CLEAN_TOKENS: tuple[str, ...] = ("mean", "gt", "clean", "target")

SIDD_MAT_FILES = ("ValidationNoisyBlocksSrgb.mat", "ValidationGtBlocksSrgb.mat")


# ----------------------------------------------------------------------------------------------------------
# finding images
# ----------------------------------------------------------------------------------------------------------


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def find_images(
    folder: str | os.PathLike, *, recursive: bool = True, exclude: str | os.PathLike | None = None
) -> list[Path]:
    """Image files (PNG, JPEG, TIFF, BMP) under ``folder``, sorted; hidden files and folders are skipped.

    Args:
        folder: a folder (or a single image file, returned alone).
        recursive: also look in subfolders.
        exclude: a folder whose content is skipped (the output folder when it lies inside ``folder``).

    Raises:
        InputError: ``folder`` does not exist, or holds no image.
    """
    root = Path(folder).expanduser()
    if root.is_file():
        if not _is_image(root):
            raise InputError(f"{root} is not a PNG/JPEG/TIFF/BMP image (suffixes {', '.join(IMAGE_SUFFIXES)}).")
        return [root]
    if not root.is_dir():
        raise InputError(f"{root} does not exist. Give a folder of RGB images (PNG, JPEG, TIFF).")
    skip = Path(exclude).expanduser().resolve() if exclude else None
    found = []
    for path in sorted(root.rglob("*") if recursive else root.iterdir()):
        if not path.is_file() or not _is_image(path) or not _visible(path, root):
            continue
        if skip is not None and skip in path.resolve().parents:
            continue
        found.append(path)
    if not found:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}.")
    return found


def output_names(paths: Sequence[Path], root: str | os.PathLike) -> list[str]:
    """Relative output names ``<subfolders>/<stem>.png`` for ``paths`` found under ``root``.

    Two inputs with the same stem (``x.png`` and ``x.jpg``) keep their suffix in the name (``x_jpg.png``).
    """
    root = Path(root)
    rel = [p.relative_to(root) if root.is_dir() else Path(p.name) for p in paths]
    plain = [r.with_suffix(".png").as_posix() for r in rel]
    counts: dict[str, int] = {}
    for name in plain:
        counts[name] = counts.get(name, 0) + 1
    return [
        name if counts[name] == 1 else r.with_name(f"{r.stem}_{r.suffix.lstrip('.').lower()}.png").as_posix()
        for name, r in zip(plain, rel)
    ]


class ImageFolder(LazyItems):
    """The images under ``folder`` as records ``{"image": path, "name": output name}`` (:func:`find_images`,
    :func:`output_names`), for a MONAI ``Dataset`` whose transforms start with :class:`LoadRGBd`.

    Args:
        folder: an image file or a folder of them (PNG, JPEG, TIFF, BMP; subfolders included).
        output_dir: where the outputs ``<output_dir>/<name>`` go, if anywhere. It may lie inside ``folder`` (its
            content is then not listed) but must not be ``folder`` itself, nor make an output overwrite an input.

    Raises (on first use, see :class:`~ldct_clip.engine.dataset.LazyItems`):
        InputError: no such folder, no images, or an ``output_dir`` that would overwrite the input.
    """

    def __init__(self, folder: str | os.PathLike, output_dir: str | os.PathLike | None = None) -> None:
        self.root = Path(folder).expanduser()
        self.output_dir = Path(output_dir).expanduser() if output_dir else None

    def _list(self) -> list[dict[str, Any]]:
        out = self.output_dir
        if out is not None and self.root.is_dir() and out.resolve() == self.root.resolve():
            raise InputError(f"output_dir is the input folder {self.root}; give another folder.")
        paths = find_images(self.root, exclude=out)
        names = output_names(paths, self.root)
        if out is not None:
            clash = {p.resolve() for p in paths} & {(out / n).resolve() for n in names}
            if clash:
                raise InputError(
                    f"writing the output would overwrite the input {sorted(clash)[0]}; give another output_dir.")
        return [{"image": str(p), "name": n} for p, n in zip(paths, names)]


# ----------------------------------------------------------------------------------------------------------
# reading and writing
# ----------------------------------------------------------------------------------------------------------


def _as_rgb_float(arr: np.ndarray, path: Path) -> np.ndarray:
    """(H, W), (H, W, C) integer or float array -> (3, H, W) float32 in [0, 1]."""
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        scale = {1: 255.0, 2: 65535.0}.get(arr.dtype.itemsize, None) if arr.dtype != bool else 1.0
        if scale is None:  # 32-bit integer images (PIL mode "I"): 16-bit content in practice
            scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
        x = arr.astype(np.float32) / np.float32(scale)
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
    else:
        raise InputError(f"{path}: unsupported pixel type {arr.dtype}.")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"{path}: expected a grey or RGB(A) image, got an array of shape {arr.shape}.")
    if x.shape[-1] in (1, 2):  # grey (+ alpha)
        x = np.repeat(x[..., :1], 3, axis=-1)
    x = x[..., :3]
    if not np.all(np.isfinite(x)):
        raise InputError(f"{path}: the image has NaN or infinite values.")
    return np.ascontiguousarray(np.clip(x, 0.0, 1.0).transpose(2, 0, 1))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``(3, H, W)`` float32 RGB in [0, 1] (see the module docstring for conversions).

    Raises:
        InputError: the file is missing, unreadable or not an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist.")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F", "L", "LA", "RGB", "RGBA"):
                arr = np.asarray(im)
            else:  # palette, CMYK, YCbCr, 1-bit...
                arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as pil_error:
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise InputError(f"{path}: cannot read the image ({pil_error}).") from None
        try:  # e.g. 16-bit RGB TIFF, which Pillow does not read
            import tifffile

            arr = tifffile.imread(path)
        except Exception as e:  # noqa: BLE001 - any reader failure is a bad file for the user
            raise InputError(f"{path}: cannot read the TIFF image ({e}).") from None
    if arr.size == 0:
        raise InputError(f"{path}: the image is empty.")
    return _as_rgb_float(arr, path)


def to_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] -> ``(3, H, W)`` uint8: clipped, then rounded to the nearest 8-bit level.

    uint8 input is returned as a numpy array unchanged.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.rint(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path: str | os.PathLike, image: np.ndarray | torch.Tensor) -> Path:
    """Write a ``(3, H, W)`` (or ``(1, H, W)``) image, float in [0, 1] or uint8, as an 8-bit PNG, atomically."""
    from PIL import Image

    arr = to_uint8(image)
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise InputError(f"expected a (3, H, W) or (1, H, W) image to write, got shape {arr.shape}.")
    hwc = np.ascontiguousarray(arr.transpose(1, 2, 0))
    pil = Image.fromarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc)
    return save_png(pil, path)


class LoadRGB(Transform):
    """Array transform: image path -> ``(3, H, W)`` float32 tensor in [0, 1] (:func:`read_rgb`)."""

    def __call__(self, path: str | os.PathLike) -> torch.Tensor:
        return torch.from_numpy(read_rgb(path))


class LoadRGBd(MapTransform):
    """Dictionary version of :class:`LoadRGB`: replaces each path under ``keys`` by the image.

    The path is kept under ``<key>_path`` (e.g. ``image_path``).
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadRGB()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_path"] = str(d[key])
            d[key] = self.loader(d[key])
        return d


class SaveRGB(Transform):
    """Array transform: write a ``(3, H, W)`` image (float in [0, 1] or uint8) as the 8-bit PNG
    ``output_dir/<name>``, atomically (:func:`write_png`); returns the path written."""

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.output_dir = Path(output_dir).expanduser()

    def __call__(self, image: np.ndarray | torch.Tensor, name: str) -> Path:
        return write_png(self.output_dir / name, image)


class SaveRGBd(MapTransform):
    """Dictionary version of :class:`SaveRGB`: writes each image under ``keys`` as ``output_dir/<d[name_key]>`` and
    lists the paths written under ``d[output_key]`` (strings), as the CT writers do."""

    def __init__(self, keys: KeysCollection, output_dir: str | os.PathLike, name_key: str = "name",
                 output_key: str = "outputs", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.saver = SaveRGB(output_dir)
        self.name_key = name_key
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d[self.output_key] = [str(self.saver(d[key], str(d[self.name_key]))) for key in self.key_iterator(d)]
        return d


# ----------------------------------------------------------------------------------------------------------
# paired real-noise test sets
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


def _check_8bit_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise InputError(f"images differ in shape: {pred.shape} vs {target.shape}.")
    for name, a in (("pred", pred), ("target", target)):
        if a.dtype != np.uint8:
            raise InputError(f"{name} must be an 8-bit image (uint8, use to_uint8), got {a.dtype}.")
    if pred.ndim == 2:
        pred, target = pred[None], target[None]
    if pred.ndim != 3:
        raise InputError(f"expected (C, H, W) or (H, W) images, got shape {pred.shape}.")
    return pred.astype(np.float64), target.astype(np.float64)


def psnr_8bit(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR (dB) of two uint8 images ``(C, H, W)``: ``10 log10(255^2 / MSE)`` over all values (inf if equal)."""
    p, t = _check_8bit_pair(pred, target)
    mse = float(np.mean((p - t) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


_GAUSS_11 = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
_GAUSS_11 /= _GAUSS_11.sum()


def _filter_valid(x: np.ndarray) -> np.ndarray:
    y = ndimage.correlate1d(x, _GAUSS_11, axis=0, mode="reflect")
    y = ndimage.correlate1d(y, _GAUSS_11, axis=1, mode="reflect")
    return y[5:-5, 5:-5]


def ssim_8bit(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of two uint8 images ``(C, H, W)`` as MATLAB / the paper's ``calculate_ssim`` compute it.

    Per channel: 11 x 11 Gaussian window (sigma 1.5), ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``,
    mean of the SSIM map over the valid region; then the mean over channels.
    """
    p, t = _check_8bit_pair(pred, target)
    if min(p.shape[-2:]) < 11:
        raise InputError(f"SSIM needs images of at least 11 x 11 pixels, got {p.shape[-2]} x {p.shape[-1]}.")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for a, b in zip(p, t):
        mu_a, mu_b = _filter_valid(a), _filter_valid(b)
        var_a = _filter_valid(a * a) - mu_a**2
        var_b = _filter_valid(b * b) - mu_b**2
        cov = _filter_valid(a * b) - mu_a * mu_b
        ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        values.append(float(ssim_map.mean()))
    return float(np.mean(values))
