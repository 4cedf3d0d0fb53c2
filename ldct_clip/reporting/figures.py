"""Pictures people look at, as PNG: CT slices at a display window side by side, and line plots (NPS curves)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ldct_clip.atomic import atomic_path

__all__ = ["SOFT_TISSUE", "draw_line_plot", "save_grid", "save_line_plot", "save_panels", "save_png", "window_to_uint8"]

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
    return save_png(canvas, path)


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write a PIL image as PNG atomically (temporary name, then rename): never a half-written picture."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75))


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not hi > lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def save_line_plot(path: str | os.PathLike, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], **kwargs) -> Path:
    """Draw ``{label: (x, y)}`` curves (:func:`draw_line_plot`, same keyword arguments) into a PNG at ``path``."""
    return save_png(draw_line_plot(curves, **kwargs), path)


def save_grid(path: str | os.PathLike, images: Sequence[Image.Image], columns: int = 2) -> Path:
    """Paste equally sized pictures (plots) into a grid of ``columns`` and write it as one PNG."""
    if not images:
        raise ValueError("save_grid needs at least one image")
    w, h = max(i.width for i in images), max(i.height for i in images)
    rows = math.ceil(len(images) / columns)
    canvas = Image.new("RGB", (w * min(columns, len(images)), h * rows), "white")
    for k, im in enumerate(images):
        canvas.paste(im, ((k % columns) * w, (k // columns) * h))
    return save_png(canvas, path)


def draw_line_plot(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    log_y: bool | None = None,
    size: tuple[int, int] = (720, 460),
    errors: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> Image.Image:
    """Draw ``{label: (x, y)}`` curves with axes, ticks and a legend (PIL only, no matplotlib).

    Non-finite points (and non-positive ones on a log axis) are skipped.

    Args:
        curves: ``{label: (x, y)}`` with 1D arrays of equal length per curve.
        title, xlabel, ylabel: texts.
        log_y: logarithmic y axis; ``None`` picks it when positive values span more than two decades
            (noise spectra of a noisy input and a smooth output do).  A linear y axis starts at 0 for
            non-negative data.
        size: ``(width, height)`` in pixels.
        errors: ``{label: (low, high)}``: vertical error bars at the curve's x values (linear axis only).

    Returns:
        the picture.
    """
    width, height = size
    left, right, top, bottom = 78, 20, 34, 52
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    raw = {k: (np.asarray(x, float), np.asarray(y, float)) for k, (x, y) in curves.items()}
    positive = np.concatenate([y[np.isfinite(y) & (y > 0)] for _, y in raw.values()] or [np.zeros(0)])
    if log_y is None:
        log_y = positive.size > 1 and positive.max() > 100.0 * positive.min()
    if log_y:
        # Plot log10(y); ticks at powers of ten.
        raw = {k: (x, np.where(y > 0, np.log10(np.where(y > 0, y, 1.0)), np.nan)) for k, (x, y) in raw.items()}
    curves = raw
    errors = {} if log_y or errors is None else {k: (np.asarray(lo, float), np.asarray(hi, float))
                                                   for k, (lo, hi) in errors.items() if k in curves}
    xs = np.concatenate([x[np.isfinite(y)] for x, y in curves.values()] or [np.zeros(1)])
    ys = np.concatenate([y[np.isfinite(y)] for _, y in curves.values()]
                        + [v[np.isfinite(v)] for pair in errors.values() for v in pair] or [np.zeros(1)])
    if xs.size == 0:
        xs = ys = np.zeros(1)
    x0, x1 = float(xs.min()), float(xs.max())
    if log_y:
        y0, y1 = math.floor(float(ys.min())), math.ceil(float(ys.max()))
        y1 = max(y1, y0 + 1)
        yt = [float(v) for v in range(int(y0), int(y1) + 1, max(1, (int(y1) - int(y0)) // 6 + 1))]
    else:
        y0, y1 = (0.0 if ys.min() >= 0 else float(ys.min())), float(ys.max())
        yt = _nice_ticks(y0, y1 if y1 > y0 else y0 + 1.0)
    xt = _nice_ticks(x0, x1)
    x0, x1 = min(x0, xt[0]), max(x1, xt[-1])
    y0, y1 = min(y0, yt[0]), max(y1, yt[-1])
    pw, ph = width - left - right, height - top - bottom

    def px(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0 or 1.0) * pw, top + ph - (y - y0) / (y1 - y0 or 1.0) * ph

    draw.rectangle([left, top, left + pw, top + ph], outline="black")
    for t in xt:
        u, _ = px(t, y0)
        draw.line([u, top + ph, u, top + ph + 4], fill="black")
        draw.line([u, top, u, top + ph], fill=(225, 225, 225))
        draw.text((u - 10, top + ph + 6), f"{t:g}", fill="black")
    for t in yt:
        _, v = px(x0, t)
        draw.line([left - 4, v, left, v], fill="black")
        draw.line([left, v, left + pw, v], fill=(225, 225, 225))
        draw.text((4, v - 6), f"1e{int(t)}" if log_y else f"{t:.4g}", fill="black")
    draw.rectangle([left, top, left + pw, top + ph], outline="black")
    for i, (label, (x, y)) in enumerate(curves.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        ok = np.isfinite(np.asarray(y, float))
        pts = [px(float(a), float(b)) for a, b in zip(np.asarray(x, float)[ok], np.asarray(y, float)[ok], strict=True)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        elif pts:
            draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=colour)
        if label in errors:
            for a, lo, hi in zip(np.asarray(x, float), *errors[label], strict=True):
                if np.isfinite(lo) and np.isfinite(hi):
                    (u, v0), (_, v1) = px(float(a), float(lo)), px(float(a), float(hi))
                    draw.line([u, v0, u, v1], fill=colour, width=1)
                    draw.line([u - 3, v0, u + 3, v0], fill=colour)
                    draw.line([u - 3, v1, u + 3, v1], fill=colour)
        ly = top + 8 + 14 * i
        draw.line([left + pw - 150, ly + 6, left + pw - 125, ly + 6], fill=colour, width=3)
        draw.text((left + pw - 120, ly), label, fill="black")
    draw.text((left, 10), title, fill="black")
    draw.text((left + pw // 2 - 60, height - 20), xlabel, fill="black")
    draw.text((4, top - 16), ylabel, fill="black")
    return img
