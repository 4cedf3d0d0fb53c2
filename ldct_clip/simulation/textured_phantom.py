"""A textured body slice: 15-45 cm of fat, muscle, organs, vessels, bone and lung with real-world texture.

Unlike the smooth organs of :mod:`ldct_clip.simulation.phantom`, every tissue here carries texture with the statistics
of anatomy (:mod:`ldct_clip.simulation.textures`): power-law soft-tissue texture, lumpy organs, fatty septa and
marbling, branching contrast-enhanced vessels, cancellous bone inside a cortical shell, lung parenchyma, gas.
The layout is random rather than anatomical: the denoiser sees patches, so the local statistics matter more
than where the organs sit.  A ``"head"`` layout (skull with diploe, brain with grey/white texture) is drawn with
probability 0.15.
"""

from __future__ import annotations

import math

import numpy as np

from ldct_clip.simulation.textures import (
    interleave_mask,
    lumpy_background,
    lung_parenchyma,
    power_law_field,
    trabecular_bone,
    vessel_tree,
)

__all__ = ["ellipse_mask", "body_outline", "textured_body"]


def ellipse_mask(shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float],
                 angle: float = 0.0, wobble: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Anti-aliased filled ellipse (pixels): 1 inside, 0 outside, a one-pixel partial-volume edge.  ``wobble`` > 0
    perturbs the radius by low harmonics (relative amplitude) for organic outlines."""
    nx, ny = shape
    x = np.arange(nx, dtype=np.float32)[:, None] - centre[0]
    y = np.arange(ny, dtype=np.float32)[None, :] - centre[1]
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    r = np.sqrt((u / axes[0]) ** 2 + (v / axes[1]) ** 2)
    if wobble > 0 and rng is not None:
        phi = np.arctan2(v, u)
        r = r / (1.0 + sum(rng.uniform(0, wobble) * np.cos(m * phi + rng.uniform(0, 2 * math.pi)) for m in (2, 3, 5)))
    return np.clip((1.0 - r) * min(axes) + 0.5, 0.0, 1.0).astype(np.float32)


def body_outline(shape: tuple[int, int], pixel_mm: float, rng: np.random.Generator,
                 body_cm: float | None = None) -> tuple[np.ndarray, float]:
    """A body cross-section ``(mask in [0, 1], width in cm)``: width 15-45 cm (or ``body_cm``), height 0.6-1 of it,
    centred near the middle of the field of view; larger than the field of view it is cut (a zoomed
    reconstruction)."""
    body_cm = float(rng.uniform(15.0, 45.0)) if body_cm is None else float(body_cm)
    a = body_cm * 10.0 / pixel_mm / 2.0
    b = a * rng.uniform(0.6, 1.0)
    centre = (shape[0] / 2 + rng.normal(0, 0.03) * shape[0], shape[1] / 2 + rng.normal(0, 0.03) * shape[1])
    return ellipse_mask(shape, centre, (a, b), rng.uniform(-0.2, 0.2), 0.04, rng), body_cm


def _blend(img: np.ndarray, mask: np.ndarray, values: np.ndarray | float) -> np.ndarray:
    return img + mask * (values - img)


def _random_ellipse(shape, rng, inside: np.ndarray, size_px: tuple[float, float]) -> np.ndarray:
    """An ellipse whose centre lies inside ``inside`` (> 0.5), axes drawn from ``size_px``."""
    idx = np.flatnonzero(inside.ravel() > 0.5)
    if idx.size == 0:
        return np.zeros(shape, np.float32)
    cx, cy = np.unravel_index(int(rng.choice(idx)), shape)
    axes = (rng.uniform(*size_px), rng.uniform(*size_px))
    return ellipse_mask(shape, (cx, cy), axes, rng.uniform(0, math.pi), 0.15, rng) * inside


def _bone(shape, rng, px, inside) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, HU)`` of a bone: cortical shell (800-1500 HU, 1-3 mm) around cancellous bone (marrow 0-60 HU plus
    trabeculae)."""
    outer = _random_ellipse(shape, rng, inside, (8.0 / px, 25.0 / px))
    if outer.max() == 0:
        return outer, outer
    shell_px = rng.uniform(1.0, 3.0) / px
    inner = np.clip(outer - np.clip(shell_px - _distance_inside(outer), 0, 1), 0, 1)
    marrow = rng.uniform(0, 60) + trabecular_bone(shape, rng, px, rng.uniform(0.6, 1.5), rng.uniform(0.2, 0.4)) \
        * rng.uniform(300, 700)
    values = _blend(np.full(shape, rng.uniform(800, 1500), np.float32), inner, marrow)
    return outer, values


def _distance_inside(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.distance_transform_edt(mask > 0.5).astype(np.float32)


def textured_body(shape: tuple[int, int], pixel_mm: float, rng: np.random.Generator,
                  body_cm: float | None = None) -> tuple[np.ndarray, dict]:
    """One noise-free textured body slice in HU, ``(X, Y)`` float32 (air -1000 outside), and its parameters.

    Args:
        shape: ``(X, Y)`` pixels.
        pixel_mm: in-plane pixel size (0.3-1 mm is the clinical range).
        rng: fixes everything.
        body_cm: body width; default uniform in 15-45 cm.
    """
    px = float(pixel_mm)
    head = rng.random() < 0.15
    body, body_cm = body_outline(shape, px, rng, rng.uniform(14, 20) if head and body_cm is None else body_cm)
    img = np.full(shape, -1000.0, np.float32)
    fat = rng.uniform(-120, -70) + rng.uniform(3, 12) * power_law_field(shape, 2.5, rng, px)
    img = _blend(img, body, fat)
    depth = _distance_inside(body) * px  # mm from the skin
    if head:
        skull = np.clip(depth - rng.uniform(0.5, 3.0), 0, 1)  # scalp
        img = _blend(img, skull, rng.uniform(20, 50))
        diploe = trabecular_bone(shape, rng, px, rng.uniform(0.8, 1.5), rng.uniform(0.3, 0.5))
        bone = rng.uniform(1000, 1600) - (1.0 - diploe) * rng.uniform(300, 700) * (np.abs(depth - 6.0) < 1.5)
        img = _blend(img, skull, bone)
        brain_edge = rng.uniform(5.0, 9.0)
        brain = np.clip(depth - brain_edge, 0, 1)
        grey = rng.uniform(35, 45)
        white = grey - rng.uniform(5, 12)
        gw = interleave_mask(shape, rng, px, rng.uniform(0.3, 0.6), rng.uniform(2, 6), rng.uniform(1, 3))
        tissue = grey + gw * (white - grey) + rng.uniform(1, 5) * power_law_field(shape, 2.8, rng, px)
        img = _blend(img, brain, tissue)
        for _ in range(int(rng.integers(0, 3))):  # ventricles / CSF, low-contrast lesions
            m = _random_ellipse(shape, rng, brain, (3.0 / px, 15.0 / px))
            img = _blend(img, m, rng.uniform(0, 15) if rng.random() < 0.6 else grey + rng.uniform(-10, 10))
        return img, {"layout": "head", "body_cm": body_cm}
    fat_mm = rng.uniform(3.0, 30.0) * body_cm / 30.0
    core = np.clip(depth - fat_mm, 0, 1)
    muscle = rng.uniform(35, 60) + rng.uniform(3, 15) * power_law_field(shape, rng.uniform(2.0, 3.5), rng, px)
    marbling = interleave_mask(shape, rng, px, rng.uniform(0.05, 0.35), rng.uniform(1, 6), rng.uniform(1.5, 5))
    img = _blend(img, core, _blend(muscle, marbling, fat))
    for _ in range(int(rng.integers(1, 6))):  # organs: lumpy texture of their own
        m = _random_ellipse(shape, rng, core, (15.0 / px, 70.0 / px))
        organ = (rng.uniform(20, 150) + rng.uniform(2, 15) * lumpy_background(shape, rng, px, 1.0, (1.0, 6.0))
                 + rng.uniform(0, 8) * power_law_field(shape, 3.0, rng, px, cutoff_mm=10.0))
        img = _blend(img, m, organ)
    if rng.random() < 0.35:  # lungs
        for _ in range(2):
            m = _random_ellipse(shape, rng, core, (30.0 / px, 90.0 / px))
            img = _blend(img, m, lung_parenchyma(shape, rng, px))
    for _ in range(int(rng.integers(0, 3))):  # vessels, enhanced or not
        v = vessel_tree(shape, rng, px, roots=int(rng.integers(1, 3)), radius_mm=(0.8, 5.0), depth=4) * core
        img = _blend(img, v, rng.uniform(120, 350) if rng.random() < 0.7 else rng.uniform(30, 60))
    for _ in range(int(rng.integers(0, 4))):  # bones
        outer, values = _bone(shape, rng, px, core)
        img = _blend(img, outer, values)
    for _ in range(int(rng.integers(0, 4))):  # gas pockets
        m = _random_ellipse(shape, rng, core, (2.0 / px, 15.0 / px))
        img = _blend(img, m, rng.uniform(-1000, -850))
    return img.astype(np.float32), {"layout": "trunk", "body_cm": body_cm}
