"""The figures of one evaluated case: slice panels at display windows, difference panels, radial NPS."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ldct_clip.metrics import noise_power_spectrum, radial_nps
from ldct_clip.reporting.figures import save_line_plot, save_panels
from ldct_clip.reporting.tables import write_csv

__all__ = ["case_figures"]


def _nps_box(roi: tuple[slice, slice] | None, shape: tuple[int, ...], size: int | None) -> tuple[slice, slice]:
    """Square NPS region of side ``size`` (default min(64, half the slice), even) centred on the noise ROI."""
    side = min(shape[0], shape[1], size or min(64, min(shape[:2]) // 2))
    side -= side % 2
    if roi is None:
        cx, cy = shape[0] // 2, shape[1] // 2
    else:
        cx, cy = (roi[0].start + roi[0].stop) // 2, (roi[1].start + roi[1].stop) // 2
    x0 = int(np.clip(cx - side // 2, 0, shape[0] - side))
    y0 = int(np.clip(cy - side // 2, 0, shape[1] - side))
    return slice(x0, x0 + side), slice(y0, y0 + side)


def _diff_width(noise: np.ndarray) -> float:
    """Display width (HU) of difference images: about +-3 robust SDs of the input noise, at least 20 HU."""
    mad = float(np.median(np.abs(noise - np.median(noise))))
    return float(max(20.0, round(6.0 * 1.4826 * mad, -1)))


def case_figures(
    name: str,
    images: Mapping[str, np.ndarray],
    ref: np.ndarray,
    roi: tuple[slice, slice] | None,
    nps_size: int | None,
    pixel_mm: tuple[float, float],
    windows: Sequence[tuple[float, float]],
    folder: Path,
) -> dict[str, Path]:
    """Slice panels at each window, difference panels, and the radial NPS plot + CSV of one case."""
    files: dict[str, Path] = {}
    k = ref.shape[2] // 2
    # Small slices are enlarged (pixel replication) so that the panel titles fit; display only.
    zoom = max(1, math.ceil(256 / min(ref.shape[:2])))

    def big(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, zoom, axis=0), zoom, axis=1) if zoom > 1 else a

    panels_of = [(m, big(img[:, :, k])) for m, img in images.items()] + [("reference", big(ref[:, :, k]))]
    for c, w in windows:
        path = folder / f"{name}_slice{k}_C{c:g}W{w:g}.png"
        files[path.stem] = save_panels(path, [(t, im, (c, w)) for t, im in panels_of])
    width = _diff_width(images["input"][:, :, k] - ref[:, :, k])
    path = folder / f"{name}_slice{k}_diff.png"
    files[path.stem] = save_panels(
        path, [(f"{m} - reference", big(img[:, :, k] - ref[:, :, k]), (0.0, width)) for m, img in images.items()]
    )
    box = _nps_box(roi, ref.shape, nps_size)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for method, img in images.items():
        noise = np.moveaxis((img - ref)[box], 2, 0)  # (Z, side, side) noise ROIs
        nps2d, freqs = noise_power_spectrum(noise, pixel_mm)
        curves[method] = radial_nps(nps2d, freqs)
    path = folder / f"{name}_nps.png"
    files[path.stem] = save_line_plot(
        path, curves, title=f"{name}: radial NPS of (image - reference), {box[0].stop - box[0].start} px ROI",
        xlabel="spatial frequency (1/mm)", ylabel="NPS (HU^2 mm^2)",
    )
    f = next(iter(curves.values()))[0]
    rows = [{"frequency_per_mm": float(fi), **{m: float(c[1][i]) for m, c in curves.items()}} for i, fi in enumerate(f)]
    files[f"{name}_nps_csv"] = write_csv(folder / f"{name}_nps.csv", rows, ["frequency_per_mm", *curves])
    return files
