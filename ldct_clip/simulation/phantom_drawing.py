"""Drawing the procedural phantoms in millimetres: the tissues' HU, a slice's pixel grid, anti-aliased ellipses,
smooth random outlines, spherical structures and a vertebra.

Every primitive paints HU into an ``(X, Y)`` slice in place; coordinates are patient millimetres (+x the patient's
right, +y anterior, +z superior), so a phantom shows the same anatomy at any grid size (:mod:`.phantom`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["HU", "Grid", "blobs", "extent", "outline", "paint_blobs", "paint_ellipse", "vertebra"]

#: Nominal HU of the phantom's tissues.
HU = {
    "air": -1000.0,
    "gas": -900.0,
    "fat": -100.0,
    "visceral_fat": -90.0,
    "renal_sinus": -60.0,
    "csf": 15.0,
    "bowel_content": 15.0,
    "bowel_wall": 40.0,
    "muscle": 50.0,
    "soft_tissue": 40.0,
    "spleen": 45.0,
    "liver": 60.0,
    "lesion_delta": 10.0,
    "disc": 80.0,
    "kidney_medulla": 110.0,
    "kidney_cortex": 150.0,
    "ivc": 140.0,
    "aorta": 200.0,
    "cancellous": 250.0,
    "rib_marrow": 300.0,
    "posterior_elements": 650.0,
    "cortical": 900.0,
    # head, neck, chest
    "lung": -850.0,
    "white_matter": 28.0,
    "grey_matter": 40.0,
    "ventricle": 8.0,
    "blood": 45.0,
    "myocardium": 55.0,
    "thyroid": 110.0,
    "diploe": 500.0,
    "skull": 1000.0,
    "lung_vessel": 40.0,
}


@dataclass
class Grid:
    """Pixel-centre coordinates (mm) of a slice along X (``xs``) and Y (``ys``), and the pixel size."""

    xs: np.ndarray  # (X,)
    ys: np.ndarray  # (Y,)
    px: float

    def window(self, cx: float, cy: float, radius: float) -> tuple[slice, slice]:
        """Index box of the pixels within ``radius`` (+2 pixels) of a point: drawing is limited to it."""
        x0, y0 = self.xs[0], self.ys[0]
        r = radius + 2 * self.px
        i0 = max(0, int(math.floor((cx - r - x0) / self.px)))
        i1 = min(self.xs.size, int(math.ceil((cx + r - x0) / self.px)) + 1)
        j0 = max(0, int(math.floor((cy - r - y0) / self.px)))
        j1 = min(self.ys.size, int(math.ceil((cy + r - y0) / self.px)) + 1)
        return slice(i0, max(i0, i1)), slice(j0, max(j0, j1))


def paint_ellipse(
    img: np.ndarray,
    g: Grid,
    value: float,
    cx: float,
    cy: float,
    a: float,
    b: float,
    angle_deg: float = 0.0,
    wobble=None,
    max_wobble: float = 0.0,
) -> None:
    """Composite an ellipse of ``value`` (HU) over ``img`` (X, Y), in place, with anti-aliased edges.

    Centre ``(cx, cy)`` and semi-axes ``a``, ``b`` in mm, rotation in degrees.  Coverage comes from a
    first-order signed distance to the boundary, ``(rho - 1) / |grad rho|`` with
    ``rho = sqrt((u/a)^2 + (v/b)^2)``, through a one-pixel linear ramp (partial-volume pixels).
    ``wobble(phi)`` optionally scales the boundary radius by ``1 + wobble(phi)`` (irregular outlines, at
    most ``max_wobble``).
    """
    if a <= 0 or b <= 0:
        return
    box = g.window(cx, cy, max(a, b) * (1.0 + max_wobble))
    xs, ys = g.xs[box[0]], g.ys[box[1]]
    if xs.size == 0 or ys.size == 0:
        return
    t = math.radians(angle_deg)
    dx, dy = xs[:, None] - cx, ys[None, :] - cy
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    edge = 1.0 if wobble is None else 1.0 + wobble(np.arctan2(v / b, u / a))
    grad = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2) / np.maximum(rho, 1e-9)
    dist = (rho - edge) / np.maximum(grad, 1e-9)
    alpha = np.clip(0.5 - dist / g.px, 0.0, 1.0)
    region = img[box]
    region += alpha * (value - region)


def extent(z: float, z0: float, half_length: float) -> float:
    """Cross-section scale of an ellipsoid-like organ centred at ``z0``: 1 at the centre, 0 beyond its ends."""
    r = 1.0 - ((z - z0) / half_length) ** 2
    return math.sqrt(r) if r > 0 else 0.0


def vertebra(img: np.ndarray, g: Grid, vy: float, bone: float, scale: float = 1.0) -> None:
    """A vertebra centred at ``(0, vy)`` mm: body (cortical shell, cancellous core), posterior elements (pedicles,
    laminae, spinous and transverse processes) and the spinal canal; ``bone`` in [0, 1] blends the body into an
    intervertebral disc (0), ``scale`` sizes it (1: lumbar)."""
    s = scale
    body_value = bone * HU["cortical"] + (1 - bone) * HU["disc"]
    paint_ellipse(img, g, body_value, 0, vy, 22 * s, 18 * s)
    paint_ellipse(img, g, bone * HU["cancellous"] + (1 - bone) * HU["disc"], 0, vy, 19 * s, 15 * s)
    paint_ellipse(img, g, HU["posterior_elements"], 0, vy - 28 * s, 16 * s, 13 * s)
    paint_ellipse(img, g, HU["posterior_elements"] * (0.5 + 0.5 * bone), 0, vy - 50 * s, 5 * s, 14 * s)
    for sx in (-1, 1):
        paint_ellipse(img, g, HU["posterior_elements"], sx * 30 * s, vy - 22 * s, 13 * bone * s, 4 * bone * s, sx * 10)
    paint_ellipse(img, g, HU["csf"], 0, vy - 27 * s, 9 * s, 8 * s)


def outline(rng: np.random.Generator, amp: tuple[float, float] = (0.005, 0.02)) -> tuple[Callable, float]:
    """A random smooth boundary perturbation ``wobble(phi)`` (harmonics 2-5) and its largest value."""
    harmonics = [(m, rng.uniform(*amp), rng.uniform(0, 2 * math.pi)) for m in (2, 3, 4, 5)]

    def wobble(phi: np.ndarray) -> np.ndarray:
        return sum(a * np.cos(m * phi + ph) for m, a, ph in harmonics)

    return wobble, sum(a for _, a, _ in harmonics)


def blobs(rng: np.random.Generator, n: int, box: tuple[float, float, float, float], radius: tuple[float, float],
           contrast: Sequence[float], z_range: float = 30.0) -> list[tuple[float, float, float, float, float]]:
    """``n`` spherical structures ``(x, y, z, r, delta_hu)`` inside ``box = (x0, x1, y0, y1)`` (mm)."""
    x0, x1, y0, y1 = box
    return [(rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(-z_range, z_range), rng.uniform(*radius),
             float(rng.choice(contrast))) for _ in range(n)]


def paint_blobs(img: np.ndarray, g: Grid, z: float, blobs, base: float | None = None, scale: float = 1.0) -> None:
    """Paint the cross-sections at height ``z`` of spheres from :func:`blobs`; ``base`` + delta, or delta as HU."""
    for bx, by, bz, r, delta in blobs:
        rz = r * extent(z, bz, r)
        if rz > 0:
            paint_ellipse(img, g, delta if base is None else base + delta, bx * scale, by * scale, rz, rz)
