"""Natural images that ship inside scikit-image, mapped into plausible HU inside a body outline.

Photographs carry the statistics that procedural phantoms lack (power-law spectra, edges at every scale and
orientation, fine texture everywhere).  Each slice takes a random crop of one image at a random scale and
orientation, equalises its grey levels (rank transform), and maps them through a random monotone transfer
curve onto 1-4 consecutive tissue classes (lung, fat, fluid, soft tissue, enhanced tissue, bone), each class
spanning a band of grey levels with a linear ramp inside it: the image's structure becomes organ boundaries
and its texture becomes tissue texture of a few to tens of HU.  The result is placed inside a 15-45 cm
body outline with a fat rim; air (-1000 HU) outside.  No CT image is read: only the photographs, microscopy
and astronomy images listed in :data:`NATURAL_IMAGES`, all bundled with scikit-image (no download).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np
from scipy import ndimage

from ldct_clip.simulation.textured_phantom import body_outline
from ldct_clip.simulation.textures import power_law_field

__all__ = ["NATURAL_IMAGES", "TISSUE_CLASSES", "load_natural_images", "natural_slice", "to_hu"]

#: Files of ``skimage/data`` used (photographs, microscopy, astronomy; the synthetic ones, the Shepp-Logan
#: phantom and the face crops are left out).  Images ``i % 5 == 4`` are held out of training for checks.
NATURAL_IMAGES = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
    "coins.png", "grass.png", "gravel.png", "ihc.png", "microaneurysms.png", "moon.png",
    "motorcycle_left.png", "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg", "text.png",
)

#: Ordered tissue classes ``(name, lowest HU, highest HU)`` of the transfer curve.
TISSUE_CLASSES = (
    ("lung", -920.0, -700.0), ("fat", -130.0, -60.0), ("fluid", -10.0, 25.0), ("soft", 20.0, 80.0),
    ("enhanced", 90.0, 260.0), ("bone", 300.0, 1300.0),
)


@lru_cache(maxsize=1)
def load_natural_images() -> dict[str, np.ndarray]:
    """``{file name: (H, W) float32 grey levels in [0, 1]}`` of :data:`NATURAL_IMAGES` (luminance of colour ones)."""
    import skimage
    from skimage import io

    root = os.path.join(os.path.dirname(skimage.__file__), "data")
    out = {}
    for name in NATURAL_IMAGES:
        img = np.asarray(io.imread(os.path.join(root, name)), dtype=np.float32)
        if img.ndim == 3:
            img = img[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        lo, hi = float(img.min()), float(img.max())
        out[name] = (img - lo) / max(hi - lo, 1e-6)
    return out


def _stretch(img: np.ndarray) -> np.ndarray:
    """Grey levels stretched so that the 1st and 99th percentiles span [0, 1].  Not an equalisation: that would
    blow a flat, slightly noisy background (sky, microscope slide) up into noise-like texture."""
    lo, hi = np.percentile(img, [1.0, 99.0])
    return np.clip((img - lo) / max(hi - lo, 1e-3), 0.0, 1.0).astype(np.float32)


def to_hu(grey: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Map grey levels ``[0, 1]`` to HU through a random monotone curve over 1-4 consecutive tissue classes.

    Returns the HU image (float32) and the class names used.  Soft tissue is the most likely class; each class's
    ramp spans a random sub-range of its HU interval (10 HU to its full width), so texture contrast varies."""
    n_classes = int(rng.choice([1, 2, 2, 3, 3, 4]))
    first = int(rng.choice(len(TISSUE_CLASSES) - n_classes + 1))
    if rng.random() < 0.5:  # favour runs that contain soft tissue
        soft = 3
        first = int(np.clip(soft - rng.integers(0, n_classes), 0, len(TISSUE_CLASSES) - n_classes))
    classes = TISSUE_CLASSES[first:first + n_classes]
    # class boundaries at grey-level quantiles, so each class covers 10-90 % of the area
    q = np.sort(rng.uniform(0.1, 0.9, n_classes - 1))
    if n_classes > 1 and classes[-1][0] == "bone":
        q[-1] = rng.uniform(0.85, 0.97)  # bone is a small part of a slice: a body of bone would be photon-starved
        q = np.sort(q)
    cuts = np.quantile(grey, q) if n_classes > 1 else np.zeros(0)
    edges = np.concatenate([[0.0], cuts, [1.0]])
    xs, ys = [], []
    for k, (_, lo, hi) in enumerate(classes):
        width = rng.uniform(min(10.0, hi - lo), hi - lo)
        start = rng.uniform(lo, hi - width)
        gap = 0.5 * rng.uniform(0.005, 0.04)  # grey-level width of the transition to the next class
        a = edges[k] + (gap if k > 0 else 0.0)
        b = edges[k + 1] - (gap if k < n_classes - 1 else 0.0)
        xs += [a, max(b, a + 1e-4)]
        ys += [start, start + width]
    xs = np.maximum.accumulate(np.asarray(xs) + np.arange(len(xs)) * 1e-6)  # strictly increasing for np.interp
    ys = np.maximum.accumulate(ys)  # neighbouring classes overlap (fluid and soft tissue): keep the curve monotone
    return np.interp(grey, xs, ys).astype(np.float32), [c[0] for c in classes]


def natural_slice(shape: tuple[int, int], pixel_mm: float, rng: np.random.Generator,
                  names: tuple[str, ...] | None = None) -> tuple[np.ndarray, dict]:
    """One noise-free slice ``(X, Y)`` float32 in HU made of a natural image, and its parameters.

    Args:
        shape: ``(X, Y)`` pixels.
        pixel_mm: in-plane pixel size (only sets the body's size in pixels).
        rng: fixes the image, crop, scale, rotation, transfer curve and outline.
        names: the images to draw from (default: those of :data:`NATURAL_IMAGES` with index ``i % 5 != 4``).
    """
    images = load_natural_images()
    names = names or tuple(n for i, n in enumerate(NATURAL_IMAGES) if i % 5 != 4)
    name = str(rng.choice(list(names)))
    src = images[name]
    zoom = float(np.exp(rng.uniform(math.log(0.5), math.log(2.0))))  # image pixels per slice pixel ** -1
    need = [int(math.ceil(s / zoom)) + 2 for s in shape]
    # tile by reflection when the crop is larger than the image
    reps = [max(1, int(math.ceil(nd / s))) for nd, s in zip(need, src.shape)]
    if max(reps) > 1:
        src = np.pad(src, [(0, (r - 1) * s) for r, s in zip(reps, src.shape)], mode="symmetric")
    i0 = int(rng.integers(0, src.shape[0] - need[0] + 1))
    j0 = int(rng.integers(0, src.shape[1] - need[1] + 1))
    crop = src[i0:i0 + need[0], j0:j0 + need[1]]
    crop = ndimage.zoom(crop, zoom, order=1, prefilter=False)[: shape[0], : shape[1]]
    crop = np.rot90(crop, int(rng.integers(4)))
    crop = crop if crop.shape == tuple(shape) else np.pad(
        crop, [(0, s - c) for s, c in zip(shape, crop.shape)], mode="reflect")[: shape[0], : shape[1]]
    hu, classes = to_hu(_stretch(crop), rng)
    body, body_cm = body_outline(shape, pixel_mm, rng)
    fat = rng.uniform(-120, -70) + rng.uniform(3, 10) * power_law_field(shape, 2.5, rng, pixel_mm)
    depth = ndimage.distance_transform_edt(body > 0.5) * pixel_mm
    inner = np.clip(depth - rng.uniform(0.0, 15.0), 0.0, 1.0)
    img = np.full(shape, -1000.0, np.float32)
    img = img + body * (fat - img)
    img = img + inner * (hu - img)
    return img.astype(np.float32), {"image": name, "zoom": round(zoom, 3), "classes": classes, "body_cm": body_cm}
