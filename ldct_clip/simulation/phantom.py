"""A procedural abdomen-like CT phantom, and a low-dose/normal-dose example pair built from it.

The phantom is drawn in millimetres, so it shows the same anatomy at any grid size: an elliptical body
with subcutaneous fat, abdominal wall and paraspinal muscles, mesenteric fat, liver (with low-contrast
lesions), spleen, contrast-enhanced kidneys, aorta and inferior vena cava, a lumbar vertebra (cortical shell,
cancellous bone, posterior elements, spinal canal) alternating with intervertebral discs along Z, ribs,
and bowel loops with gas pockets.  Structures change smoothly from slice to slice and carry a mild smooth
texture.  Edges are anti-aliased (partial-volume pixels), which also keeps projections free of aliasing.

Axes: the volume is ``(X, Y, Z)`` in HU with axial slices ``vol[:, :, k]``. The anatomy is drawn in
patient coordinates (+x the patient's right, where the liver is; +y anterior; +z superior), sampled so that
array index i runs to the patient's left and j to posterior: the layout of a standard axial DICOM slice read
as (columns, rows), whose RAS affine is ``diag(-dx, -dy, dz)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ldct_clip.errors import InputError

__all__ = ["make_low_dose_example", "make_phantom", "HU", "REGIONS"]

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

#: Field of view (mm) across the longer in-plane side when no pixel size is given.
DEFAULT_FOV_MM = 400.0


@dataclass
class _Grid:
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


def _paint_ellipse(
    img: np.ndarray,
    g: _Grid,
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


def _extent(z: float, z0: float, half_length: float) -> float:
    """Cross-section scale of an ellipsoid-like organ centred at ``z0``: 1 at the centre, 0 beyond its ends."""
    r = 1.0 - ((z - z0) / half_length) ** 2
    return math.sqrt(r) if r > 0 else 0.0


def _vertebra(img: np.ndarray, g: _Grid, vy: float, bone: float, scale: float = 1.0) -> None:
    """A vertebra centred at ``(0, vy)`` mm: body (cortical shell, cancellous core), posterior elements (pedicles,
    laminae, spinous and transverse processes) and the spinal canal; ``bone`` in [0, 1] blends the body into an
    intervertebral disc (0), ``scale`` sizes it (1: lumbar)."""
    s = scale
    body_value = bone * HU["cortical"] + (1 - bone) * HU["disc"]
    _paint_ellipse(img, g, body_value, 0, vy, 22 * s, 18 * s)
    _paint_ellipse(img, g, bone * HU["cancellous"] + (1 - bone) * HU["disc"], 0, vy, 19 * s, 15 * s)
    _paint_ellipse(img, g, HU["posterior_elements"], 0, vy - 28 * s, 16 * s, 13 * s)
    _paint_ellipse(img, g, HU["posterior_elements"] * (0.5 + 0.5 * bone), 0, vy - 50 * s, 5 * s, 14 * s)
    for sx in (-1, 1):
        _paint_ellipse(img, g, HU["posterior_elements"], sx * 30 * s, vy - 22 * s, 13 * bone * s, 4 * bone * s, sx * 10)
    _paint_ellipse(img, g, HU["csf"], 0, vy - 27 * s, 9 * s, 8 * s)


class _Anatomy:
    """Random but seed-fixed anatomical parameters, drawn once per phantom."""

    def __init__(self, rng: np.random.Generator) -> None:
        # Body outline: low-order harmonics make it less than a perfect ellipse.
        self.body_harmonics = [(m, rng.uniform(0.005, 0.02), rng.uniform(0, 2 * math.pi)) for m in (2, 3, 4, 5)]
        self.body_scale = rng.uniform(0.95, 1.03)
        self.fat_mm = rng.uniform(14.0, 22.0)
        # Liver lesions: (x, y, z) offsets from the liver centre (mm), radius (mm), contrast (HU).
        self.lesions = [
            (rng.uniform(-35, 35), rng.uniform(-25, 25), rng.uniform(-20, 20), rng.uniform(4.0, 8.0), c)
            for c in (HU["lesion_delta"], HU["lesion_delta"], -HU["lesion_delta"], 2 * HU["lesion_delta"])
        ]
        # Bowel loops in the anterior-left abdomen: centre (mm), radius (mm), drift along z, gas.
        self.bowel = []
        for _ in range(6):
            self.bowel.append(
                dict(
                    cx=rng.uniform(-95, 20),
                    cy=rng.uniform(0, 60),
                    r=rng.uniform(10, 17),
                    drift=rng.uniform(5, 15),
                    wavelength=rng.uniform(40, 90),
                    phase=rng.uniform(0, 2 * math.pi),
                    gas=rng.uniform() < 0.6,
                    angle=rng.uniform(0, 180),
                )
            )
        self.disc_phase = rng.uniform(0, 30.0)


def _slice(g: _Grid, z: float, an: _Anatomy) -> np.ndarray:
    """Draw the axial slice at height ``z`` (mm) on grid ``g``; returns HU (X, Y) without texture."""
    img = np.full((g.xs.size, g.ys.size), HU["air"])
    s = an.body_scale
    a_body, b_body = 165.0 * s, 115.0 * s
    harmonics = an.body_harmonics
    max_wobble = sum(amp for _, amp, _ in harmonics)

    def wobble(phi: np.ndarray) -> np.ndarray:
        return sum(amp * np.cos(m * phi + ph) for m, amp, ph in harmonics)

    # Body: fat, muscle wall, abdominal cavity with mesenteric fat.
    _paint_ellipse(img, g, HU["fat"], 0, 0, a_body, b_body, wobble=wobble, max_wobble=max_wobble)
    f = an.fat_mm
    _paint_ellipse(img, g, HU["muscle"], 0, -3, a_body - f, b_body - f, wobble=wobble, max_wobble=max_wobble)
    _paint_ellipse(img, g, HU["visceral_fat"], 0, 5, a_body - f - 12, b_body - f - 16)
    # Paraspinal muscles and psoas (psoas grows inferiorly).
    for sx in (-1, 1):
        _paint_ellipse(img, g, HU["muscle"], sx * 30, -b_body + f + 22, 24, 17, sx * 15)
        psoas = 0.6 + 0.4 * min(1.0, max(0.0, (20.0 - z) / 60.0))
        _paint_ellipse(img, g, HU["muscle"], sx * 32, -42, 14 * psoas, 18 * psoas, sx * 20)

    # Liver (patient's right, shrinking inferiorly) with lesions.
    liver_scale = _extent(z, 40.0, 90.0)
    lx, ly = 70.0, 5.0
    if liver_scale > 0:
        _paint_ellipse(img, g, HU["liver"], lx, ly, 80 * liver_scale, 70 * liver_scale, -20)
        for dx, dy, dz, r, contrast in an.lesions:
            rz = r * _extent(z, dz, r)  # spherical lesion
            cx, cy = lx + dx * liver_scale, ly + dy * liver_scale
            if rz > 0:
                _paint_ellipse(img, g, HU["liver"] + contrast, cx, cy, rz, rz)
    # Spleen (patient's left, posterior, superior).
    spleen = _extent(z, 30.0, 60.0)
    _paint_ellipse(img, g, HU["spleen"], -95, -35, 30 * spleen, 45 * spleen, 35)

    # Kidneys: cortex, medulla, sinus fat.
    for sx, z0 in ((1, -15.0), (-1, -5.0)):
        k = _extent(z, z0, 55.0)
        if k > 0:
            cx, cy, ang = sx * 72.0, -45.0, sx * 30.0
            _paint_ellipse(img, g, HU["kidney_cortex"], cx, cy, 26 * k, 38 * k, ang)
            _paint_ellipse(img, g, HU["kidney_medulla"], cx, cy, 18 * k, 28 * k, ang)
            _paint_ellipse(img, g, HU["renal_sinus"], cx - sx * 9 * k, cy + 4, 8 * k, 13 * k, ang)

    # Great vessels.
    _paint_ellipse(img, g, HU["aorta"], -14, -22, 11, 11)
    _paint_ellipse(img, g, HU["ivc"], 22, -20, 12, 9, 10)

    # Lumbar vertebra: body alternates with intervertebral discs along z (period 30 mm, disc ~ 8 mm).
    phase = ((z + an.disc_phase) % 30.0) / 30.0
    bone = float(np.clip((abs(phase - 0.5) * 30.0 - 4.0) / 2.0 + 0.5, 0.0, 1.0))  # 0 in the disc, 1 in the body
    _vertebra(img, g, -62.0, bone)

    # Lower ribs, posterolateral, present superiorly.
    rib = _extent(z, 60.0, 60.0)
    if rib > 0:
        for sx in (-1, 1):
            for ang in (200.0, 225.0, 250.0):
                t = math.radians(ang)
                cx = sx * (a_body - f + 2) * abs(math.cos(t))
                cy = (b_body - f + 2) * math.sin(t)  # sin < 0: posterior
                _paint_ellipse(img, g, HU["cortical"], cx, cy, 9 * rib, 6 * rib, ang)
                _paint_ellipse(img, g, HU["rib_marrow"], cx, cy, 6 * rib, 3.5 * rib, ang)

    # Bowel loops: wall, content, gas pocket in the non-dependent (anterior) part.
    for loop in an.bowel:
        cx = loop["cx"] + loop["drift"] * math.sin(2 * math.pi * z / loop["wavelength"] + loop["phase"])
        cy = loop["cy"] + 0.5 * loop["drift"] * math.cos(2 * math.pi * z / loop["wavelength"] + loop["phase"])
        r = loop["r"] * (0.85 + 0.15 * math.cos(2 * math.pi * z / loop["wavelength"]))
        _paint_ellipse(img, g, HU["bowel_wall"], cx, cy, r, 0.8 * r, loop["angle"])
        _paint_ellipse(img, g, HU["bowel_content"], cx, cy, r - 3, 0.8 * r - 3, loop["angle"])
        if loop["gas"]:
            _paint_ellipse(img, g, HU["gas"], cx, cy + 0.35 * r, 0.6 * r, 0.35 * r)
    return img


def _outline(rng: np.random.Generator, amp: tuple[float, float] = (0.005, 0.02)) -> tuple[Callable, float]:
    """A random smooth boundary perturbation ``wobble(phi)`` (harmonics 2-5) and its largest value."""
    harmonics = [(m, rng.uniform(*amp), rng.uniform(0, 2 * math.pi)) for m in (2, 3, 4, 5)]

    def wobble(phi: np.ndarray) -> np.ndarray:
        return sum(a * np.cos(m * phi + ph) for m, a, ph in harmonics)

    return wobble, sum(a for _, a, _ in harmonics)


def _blobs(rng: np.random.Generator, n: int, box: tuple[float, float, float, float], radius: tuple[float, float],
           contrast: Sequence[float], z_range: float = 30.0) -> list[tuple[float, float, float, float, float]]:
    """``n`` spherical structures ``(x, y, z, r, delta_hu)`` inside ``box = (x0, x1, y0, y1)`` (mm)."""
    x0, x1, y0, y1 = box
    return [(rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(-z_range, z_range), rng.uniform(*radius),
             float(rng.choice(contrast))) for _ in range(n)]


def _paint_blobs(img: np.ndarray, g: _Grid, z: float, blobs, base: float | None = None, scale: float = 1.0) -> None:
    """Paint the cross-sections at height ``z`` of spheres from :func:`_blobs`; ``base`` + delta, or delta as HU."""
    for bx, by, bz, r, delta in blobs:
        rz = r * _extent(z, bz, r)
        if rz > 0:
            _paint_ellipse(img, g, delta if base is None else base + delta, bx * scale, by * scale, rz, rz)


class _HeadAnatomy:
    """Random but seed-fixed parameters of the head phantom (brain at the level of the lateral ventricles)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.wobble, self.max_wobble = _outline(rng, (0.003, 0.012))
        self.scale = rng.uniform(0.9, 1.08)
        self.skull_mm = rng.uniform(5.0, 8.0)
        self.ventricle_phase = rng.uniform(-15, 15)
        # low-contrast lesions in the parenchyma (+-4..8 HU, 3-8 mm) and small calcifications
        self.lesions = _blobs(rng, 5, (-50, 50, -60, 50), (3.0, 8.0), (-8.0, -5.0, 5.0, 8.0))
        self.calcs = _blobs(rng, 2, (-30, 30, -60, 20), (1.0, 2.0), (150.0, 300.0))
        self.gyri = rng.uniform(0, 2 * math.pi), int(rng.integers(14, 22))


def _head_slice(g: _Grid, z: float, an: _HeadAnatomy) -> np.ndarray:
    """Axial head slice at ``z`` mm (``z = 0``: lateral ventricles): scalp, skull with diploe, grey and white
    matter, ventricles, low-contrast lesions.  HU ``(X, Y)`` without texture."""
    img = np.full((g.xs.size, g.ys.size), HU["air"])
    top = _extent(z, 0.0, 90.0)  # the head narrows towards the vertex
    s = an.scale * (0.55 + 0.45 * top)
    a, b = 75.0 * s, 92.0 * s
    w, mw = an.wobble, an.max_wobble
    _paint_ellipse(img, g, HU["soft_tissue"], 0, 0, a, b, wobble=w, max_wobble=mw)  # scalp
    t = an.skull_mm
    _paint_ellipse(img, g, HU["skull"], 0, 0, a - 4, b - 4, wobble=w, max_wobble=mw)
    _paint_ellipse(img, g, HU["diploe"], 0, 0, a - 4 - 0.3 * t, b - 4 - 0.3 * t, wobble=w, max_wobble=mw)
    _paint_ellipse(img, g, HU["skull"], 0, 0, a - 4 - 0.7 * t, b - 4 - 0.7 * t, wobble=w, max_wobble=mw)
    ai, bi = a - 4 - t, b - 4 - t
    _paint_ellipse(img, g, HU["csf"], 0, 0, ai, bi, wobble=w, max_wobble=mw)  # subarachnoid CSF
    phase, n = an.gyri

    def gyri(phi: np.ndarray) -> np.ndarray:  # folded cortex: grey matter with sulci
        return 0.025 * np.cos(n * phi + phase) + 0.01 * np.cos((n + 7) * phi)

    _paint_ellipse(img, g, HU["grey_matter"], 0, 0, ai - 3, bi - 3, wobble=gyri, max_wobble=0.035)
    for sx in (-1, 1):  # white matter of each hemisphere
        _paint_ellipse(img, g, HU["white_matter"], sx * 0.4 * ai, -0.05 * bi, 0.45 * ai, 0.7 * bi, sx * 8)
        _paint_ellipse(img, g, HU["grey_matter"], sx * 0.22 * ai, 0.0, 0.08 * ai, 0.16 * bi)  # basal ganglia
    _paint_ellipse(img, g, HU["csf"], 0, 0.3 * bi, 1.2, 0.62 * bi)  # interhemispheric fissure
    v = _extent(z, an.ventricle_phase, 30.0)
    if v > 0:
        for sx in (-1, 1):  # lateral ventricles: frontal horns and bodies
            _paint_ellipse(img, g, HU["ventricle"], sx * 7 * s, 18 * s, 5 * v * s, 22 * v * s, -sx * 12)
            _paint_ellipse(img, g, HU["ventricle"], sx * 14 * s, -20 * s, 4 * v * s, 14 * v * s, sx * 25)
    _paint_blobs(img, g, z, an.lesions, HU["white_matter"], s)
    _paint_blobs(img, g, z, an.calcs, None, s)
    return img


class _NeckAnatomy:
    """Random but seed-fixed parameters of the neck phantom (at the level of the thyroid)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.wobble, self.max_wobble = _outline(rng)
        self.scale = rng.uniform(0.9, 1.1)
        self.fat_mm = rng.uniform(4.0, 9.0)
        self.nodes = _blobs(rng, 6, (-45, 45, -20, 25), (3.0, 7.0), (-15.0, -8.0, 8.0))  # lymph nodes vs muscle
        self.disc_phase = rng.uniform(0, 18.0)


def _neck_slice(g: _Grid, z: float, an: _NeckAnatomy) -> np.ndarray:
    """Axial neck slice: skin and fat, muscles, trachea, thyroid, oesophagus, carotids and jugulars, cervical
    vertebra.  HU ``(X, Y)`` without texture."""
    img = np.full((g.xs.size, g.ys.size), HU["air"])
    s = an.scale
    a, b = 62.0 * s, 55.0 * s
    _paint_ellipse(img, g, HU["fat"], 0, 0, a, b, wobble=an.wobble, max_wobble=an.max_wobble)
    f = an.fat_mm
    _paint_ellipse(img, g, HU["muscle"], 0, -3, a - f, b - f, wobble=an.wobble, max_wobble=an.max_wobble)
    _paint_ellipse(img, g, HU["visceral_fat"], 0, 12 * s, 0.55 * a, 0.45 * b)  # visceral space of the neck
    for sx in (-1, 1):
        _paint_ellipse(img, g, HU["muscle"], sx * 40 * s, 15 * s, 9 * s, 20 * s, -sx * 35)  # sternocleidomastoid
        _paint_ellipse(img, g, HU["aorta"], sx * 24 * s, 8 * s, 4.0 * s, 4.0 * s)  # common carotid
        _paint_ellipse(img, g, HU["ivc"], sx * 31 * s, 12 * s, 6.5 * s, 4.5 * s, sx * 20)  # internal jugular
        _paint_ellipse(img, g, HU["thyroid"], sx * 13 * s, 24 * s, 8 * s, 12 * s, -sx * 30)  # thyroid lobes
    _paint_ellipse(img, g, HU["thyroid"], 0, 33 * s, 8 * s, 3 * s)  # isthmus
    _paint_ellipse(img, g, HU["soft_tissue"] + 30, 0, 27 * s, 10 * s, 9 * s)  # tracheal cartilage ring
    _paint_ellipse(img, g, HU["air"], 0, 27 * s, 8 * s, 7 * s)  # trachea
    _paint_ellipse(img, g, HU["bowel_wall"], -3 * s, 13 * s, 6 * s, 4 * s)  # oesophagus
    _paint_blobs(img, g, z, an.nodes, HU["muscle"], s)
    phase = ((z + an.disc_phase) % 18.0) / 18.0
    bone = float(np.clip((abs(phase - 0.5) * 18.0 - 2.5) / 1.5 + 0.5, 0.0, 1.0))
    _vertebra(img, g, -8 * s, bone, 0.6 * s)
    return img


class _ChestAnatomy:
    """Random but seed-fixed parameters of the chest phantom (mid-thorax, heart and lungs)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.wobble, self.max_wobble = _outline(rng)
        self.scale = rng.uniform(0.92, 1.05)
        self.fat_mm = rng.uniform(8.0, 18.0)
        self.heart_z = rng.uniform(-30, 10)
        self.disc_phase = rng.uniform(0, 25.0)
        # pulmonary vessels: tubes running mostly along z (drifting), radius shrinking towards the periphery
        self.vessels = []
        for _ in range(90):
            side = 1 if rng.uniform() < 0.5 else -1
            self.vessels.append((side * rng.uniform(25, 135), rng.uniform(-75, 65), rng.uniform(0.6, 3.2),
                                 rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6)))
        self.nodules = _blobs(rng, 3, (-120, 120, -60, 50), (2.0, 5.0), (HU["soft_tissue"],))
        # low-contrast structures in the heart and mediastinum (e.g. myocardial defects, nodes)
        self.defects = _blobs(rng, 3, (-40, 10, 5, 45), (3.0, 7.0), (-12.0, -8.0, 8.0))


def _chest_slice(g: _Grid, z: float, an: _ChestAnatomy) -> np.ndarray:
    """Axial chest slice: chest wall, lungs with vessels and nodules, heart (myocardium and blood pool),
    mediastinal fat, aorta, thoracic vertebra, ribs, sternum.  HU ``(X, Y)`` without texture."""
    img = np.full((g.xs.size, g.ys.size), HU["air"])
    s = an.scale
    a, b = 165.0 * s, 120.0 * s
    w, mw = an.wobble, an.max_wobble
    _paint_ellipse(img, g, HU["fat"], 0, 0, a, b, wobble=w, max_wobble=mw)
    f = an.fat_mm
    _paint_ellipse(img, g, HU["muscle"], 0, -2, a - f, b - f, wobble=w, max_wobble=mw)
    ac, bc = a - f - 12, b - f - 12  # the thoracic cavity inside the ribs
    # ribs and sternum on the cavity's boundary
    for k in range(14):
        t = 2 * math.pi * (k + 0.5) / 14
        cx, cy = (ac + 5) * math.cos(t), (bc + 5) * math.sin(t)
        if abs(cx) < 25 and cy > 0:
            continue  # the sternum's place
        _paint_ellipse(img, g, HU["cortical"], cx, cy, 7, 4.5, math.degrees(t) + 90)
        _paint_ellipse(img, g, HU["rib_marrow"], cx, cy, 4.5, 2.5, math.degrees(t) + 90)
    _paint_ellipse(img, g, HU["cortical"], 0, bc + 5, 16, 6)
    _paint_ellipse(img, g, HU["cancellous"], 0, bc + 5, 13, 3.5)
    for sx in (-1, 1):  # lungs
        _paint_ellipse(img, g, HU["lung"], sx * 0.52 * ac, -0.05 * bc, 0.46 * ac, 0.86 * bc, sx * 5)
    # mediastinum: fat, heart (left anterior), great vessels
    _paint_ellipse(img, g, HU["visceral_fat"], 0, 0.05 * bc, 0.22 * ac, 0.7 * bc)
    h = _extent(z, an.heart_z, 60.0)
    if h > 0:
        _paint_ellipse(img, g, HU["myocardium"], -18 * s, 22 * s, 55 * h * s, 45 * h * s, 30)
        _paint_ellipse(img, g, HU["blood"], -24 * s, 18 * s, 20 * h * s, 17 * h * s, 30)  # left ventricle
        _paint_ellipse(img, g, HU["blood"], 5 * s, 35 * s, 18 * h * s, 13 * h * s, 20)  # right ventricle
        _paint_blobs(img, g, z - an.heart_z, an.defects, HU["myocardium"], s)
    _paint_ellipse(img, g, HU["aorta"], -22 * s, -45 * s, 13 * s, 13 * s)  # descending aorta
    if h < 0.6:
        _paint_ellipse(img, g, HU["aorta"], 10 * s, 10 * s, 15 * s, 15 * s)  # ascending aorta
    _paint_ellipse(img, g, HU["air"], 5 * s, -25 * s, 7 * s, 7 * s)  # trachea / main bronchus
    # lung vessels and nodules: only where the lung is (they must not overwrite the heart or the wall)
    vessels = np.full_like(img, HU["lung"])
    for vx, vy, r, ddx, ddy in an.vessels:
        _paint_ellipse(vessels, g, HU["lung_vessel"], vx * s + ddx * z, vy * s + ddy * z, r, r)
    _paint_blobs(vessels, g, z, an.nodules, None, s)
    inside = np.zeros_like(img, dtype=bool)
    for sx in (-1, 1):
        mask = np.full_like(img, 0.0)
        _paint_ellipse(mask, g, 1.0, sx * 0.52 * ac, -0.05 * bc, 0.46 * ac - 3, 0.86 * bc - 3, sx * 5)
        inside |= mask > 0.5
    sel = inside & (img > -900) & (img < -700)
    img[sel] = vessels[sel]
    phase = ((z + an.disc_phase) % 25.0) / 25.0
    bone = float(np.clip((abs(phase - 0.5) * 25.0 - 3.0) / 2.0 + 0.5, 0.0, 1.0))
    _vertebra(img, g, -(bc - 5), bone, 0.8)
    return img


@dataclass(frozen=True)
class _Region:
    anatomy: Callable[[np.random.Generator], object]
    draw: Callable[[_Grid, float, object], np.ndarray]
    fov_mm: float
    lung_texture_hu: float = 0.0  # SD of the fine parenchyma texture inside lungs (abdomen gas keeps its value)


#: Body regions of :func:`make_phantom` and their default field of view (mm).
REGIONS: dict[str, _Region] = {
    "abdomen": _Region(_Anatomy, _slice, DEFAULT_FOV_MM),
    "chest": _Region(_ChestAnatomy, _chest_slice, 400.0, 25.0),
    "head": _Region(_HeadAnatomy, _head_slice, 240.0),
    "neck": _Region(_NeckAnatomy, _neck_slice, 180.0),
}


def _texture(
    shape: tuple[int, int, int], pixel_mm: float, slice_mm: float, rng: np.random.Generator, corr_mm: float = 3.0
) -> np.ndarray:
    """Smooth zero-mean random field (unit SD) with ~``corr_mm`` in-plane and twice that through-plane correlation."""
    field = rng.standard_normal(shape)
    sigma = (corr_mm / pixel_mm, corr_mm / pixel_mm, 2.0 * corr_mm / slice_mm)
    field = ndimage.gaussian_filter(field, sigma=sigma, mode="wrap")
    sd = field.std()
    return field / sd if sd > 0 else field


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        dims = tuple(int(v) for v in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape must be (X, Y) or (X, Y, Z) integers, got {shape!r}.") from None
    if len(dims) == 2:
        dims = dims + (1,)
    if len(dims) != 3 or min(dims[:2]) < 16 or dims[2] < 1:
        raise InputError(f"shape must be (X, Y[, Z]) with X, Y >= 16 and Z >= 1, got {tuple(shape)}.")
    return dims  # type: ignore[return-value]


def _region(region: str) -> _Region:
    if region not in REGIONS:
        raise InputError(f"region must be one of {sorted(REGIONS)}, got {region!r}.")
    return REGIONS[region]


def make_phantom(
    shape: Sequence[int] = (256, 256, 16),
    *,
    region: str = "abdomen",
    pixel_size_mm: float | None = None,
    slice_thickness_mm: float = 2.5,
    texture_hu: float = 4.0,
    seed: int = 0,
) -> np.ndarray:
    """A noise-free CT volume of a body region in HU.

    Args:
        shape: ``(X, Y, Z)`` (or ``(X, Y)`` for a single slice, returned 2D).
        region: ``"abdomen"`` (liver with lesions, kidneys, spleen, bowel, lumbar spine), ``"chest"`` (lungs with
            vessels and nodules, heart, mediastinum, aorta, ribs, thoracic spine), ``"head"`` (scalp, skull with
            diploe, grey/white matter, ventricles, low-contrast lesions) or ``"neck"`` (trachea, thyroid,
            carotids, jugulars, lymph nodes, cervical spine).
        pixel_size_mm: in-plane spacing; default the region's field of view (abdomen and chest 400 mm, head
            240 mm, neck 180 mm) over ``max(X, Y)``, so the body fills the field of view at any grid size.
        slice_thickness_mm: spacing of the slices along Z (the anatomy is sampled at slice centres, with the
            middle of the volume at z = 0 mm).
        texture_hu: SD (HU) of the smooth tissue texture added inside the body (0 for flat tissues).
        seed: fixes the random anatomical details (outline, bowel loops, lesions, texture).

    Returns:
        float32 array of ``shape`` in HU: air -1000 outside the body, fat about -100, soft tissue 40-60,
        liver 60, contrast-enhanced vessels and kidneys 110-200, bone 250-1000, bowel gas -900, lung about -850.
    """
    nx, ny, nz = _check_shape(shape)
    spec = _region(region)
    two_d = len(tuple(shape)) == 2
    px = spec.fov_mm / max(nx, ny) if pixel_size_mm is None else float(pixel_size_mm)
    if not (math.isfinite(px) and px > 0):
        raise InputError(f"pixel_size_mm must be positive, got {pixel_size_mm}.")
    if not (math.isfinite(slice_thickness_mm) and slice_thickness_mm > 0):
        raise InputError(f"slice_thickness_mm must be positive, got {slice_thickness_mm}.")
    rng = np.random.default_rng(seed)
    anatomy = spec.anatomy(rng)
    xs = (np.arange(nx) - (nx - 1) / 2.0) * px
    ys = (np.arange(ny) - (ny - 1) / 2.0) * px
    grid = _Grid(xs, ys, px)
    zs = (np.arange(nz) - (nz - 1) / 2.0) * slice_thickness_mm
    # drawn with +x right and +y anterior; flipped so that array index i runs to the patient's left and j to
    # posterior, as a standard axial DICOM slice read as (columns, rows): viewers then show the liver on the
    # left and the spine at the bottom
    vol = np.ascontiguousarray(np.stack([spec.draw(grid, float(z), anatomy) for z in zs], axis=2)[::-1, ::-1])
    if texture_hu > 0:
        # Texture only in tissue: fade it out in air, gas and towards bone so those keep their values.
        weight = np.clip((vol + 200.0) / 100.0, 0.0, 1.0) * np.clip((400.0 - vol) / 100.0, 0.0, 1.0)
        vol += texture_hu * weight * _texture((nx, ny, nz), px, slice_thickness_mm, rng)
        if spec.lung_texture_hu > 0:
            lung = np.clip((-720.0 - vol) / 60.0, 0.0, 1.0) * np.clip((vol + 960.0) / 60.0, 0.0, 1.0)
            scale = spec.lung_texture_hu * texture_hu / 4.0
            vol += scale * lung * _texture((nx, ny, nz), px, slice_thickness_mm, rng, corr_mm=1.5)
    vol = vol.astype(np.float32)
    return vol[:, :, 0] if two_d else vol


def make_low_dose_example(
    shape: Sequence[int] = (256, 256, 16),
    dose_fraction: float = 0.25,
    seed: int = 0,
    *,
    region: str = "abdomen",
    pixel_size_mm: float | None = None,
    incident_flux: float = 3e5,
    filter_name: str = "hann",
    progress: Callable[[int, int], None] | bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A simulated (low-dose, normal-dose) pair of the phantom, for examples and smoke tests.

    The noise-free phantom gets full-dose projection-domain noise (the normal-dose image), and the low-dose
    image adds the variance-matched extra noise of ``dose_fraction`` on top of it
    (:func:`ldct_clip.simulation.pairs.simulate_dose_pair`).  With the defaults, the normal-dose noise in the liver is
    about 10 HU at 256 x 256 (1.6 mm pixels) and the quarter-dose noise twice that, about what clinical
    abdominal scans show.

    Args:
        shape: ``(X, Y, Z)`` or ``(X, Y)``.
        dose_fraction: low dose relative to the normal dose, in (0, 1].
        seed: fixes the phantom and the noise.
        region, pixel_size_mm: as :func:`make_phantom`.
        incident_flux: full-dose photons per detector bin per view.
        filter_name: FBP filter of the simulated reconstruction (a smooth one, like a soft-tissue kernel).
        progress: as :func:`ldct_clip.simulation.low_dose.simulate_low_dose`.

    Returns:
        ``(ldct_hu, ndct_hu)``, float32 arrays of ``shape`` in HU.
    """
    from ldct_clip.simulation.pairs import simulate_dose_pair
    from ldct_clip.simulation.protocol import ScanProtocol

    nx, ny, _ = _check_shape(shape)
    px = _region(region).fov_mm / max(nx, ny) if pixel_size_mm is None else float(pixel_size_mm)
    clean = make_phantom(shape, region=region, pixel_size_mm=px, seed=seed)
    scan = ScanProtocol(incident_flux=incident_flux, pixel_size_mm=px, filter_name=filter_name)
    return simulate_dose_pair(clean, dose_fraction, scan, seed=seed, progress=progress)
