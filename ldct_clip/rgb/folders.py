"""RGB image folders: finding the images under a folder, their output names, and the folder as dataset records."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


from ldct_clip.engine.dataset import LazyItems
from ldct_clip.errors import InputError

__all__ = ["IMAGE_SUFFIXES", "find_images", "output_names", "ImageFolder"]

log = logging.getLogger("ldct_clip")


IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


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
