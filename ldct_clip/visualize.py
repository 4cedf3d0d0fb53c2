"""Pictures people look at: CT slices at a display window, side by side, as PNG."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SOFT_TISSUE", "save_panels", "window_to_uint8"]

SOFT_TISSUE: tuple[float, float] = (40.0, 400.0)  # (center, width) in HU


def window_to_uint8(image: np.ndarray, center: float, width: float) -> np.ndarray:
    """Display window ``(center, width)`` in HU -> uint8 grey levels (values outside saturate)."""
    lo = center - width / 2.0
    x = np.clip((np.asarray(image, dtype=np.float64) - lo) / width, 0.0, 1.0)
    return np.rint(x * 255.0).astype(np.uint8)


def save_panels(
    path: str | os.PathLike,
    panels: Sequence[tuple[str, np.ndarray, tuple[float, float]]],
    *,
    xy_order: bool = True,
) -> Path:
    """Save labelled panels side by side as one PNG.

    Args:
        path: PNG to write (written to a temporary name, then renamed).
        panels: ``(title, image, (center, width))`` per panel; images are 2D HU arrays of one shape.
        xy_order: images are (X, Y) (MONAI/NIfTI order) and are transposed to rows x columns for display.
    """
    tiles = []
    for title, image, (center, width) in panels:
        grey = window_to_uint8(image.T if xy_order else image, center, width)
        tile = Image.fromarray(grey, mode="L").convert("RGB")
        ImageDraw.Draw(tile).text((4, 2), f"{title}  [C{center:g} W{width:g}]", fill=(255, 215, 0))
        tiles.append(tile)
    canvas = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), max(t.height for t in tiles)))
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width + 4
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        canvas.save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
