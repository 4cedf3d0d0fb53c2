"""The anatomy of the phantom's body regions: abdomen, head, neck and chest.

Each region has an anatomy class, whose random but seed-fixed parameters are drawn once per phantom, and a function
that draws the axial slice at height ``z`` (mm) on a :class:`~.phantom_drawing.Grid`, returning HU ``(X, Y)``
without texture.  :mod:`.phantom` puts them together into volumes.
"""

from __future__ import annotations

import math

import numpy as np

from ldct_clip.simulation.phantom_drawing import HU, Grid, blobs, extent, outline, paint_blobs, paint_ellipse, vertebra

__all__ = ["AbdomenAnatomy", "ChestAnatomy", "HeadAnatomy", "NeckAnatomy", "abdomen_slice", "chest_slice",
           "head_slice", "neck_slice"]


class AbdomenAnatomy:
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


def abdomen_slice(g: Grid, z: float, an: AbdomenAnatomy) -> np.ndarray:
    """Draw the axial slice at height ``z`` (mm) on grid ``g``; returns HU (X, Y) without texture."""
    img = np.full((g.xs.size, g.ys.size), HU["air"])
    s = an.body_scale
    a_body, b_body = 165.0 * s, 115.0 * s
    harmonics = an.body_harmonics
    max_wobble = sum(amp for _, amp, _ in harmonics)

    def wobble(phi: np.ndarray) -> np.ndarray:
        return sum(amp * np.cos(m * phi + ph) for m, amp, ph in harmonics)

    # Body: fat, muscle wall, abdominal cavity with mesenteric fat.
    paint_ellipse(img, g, HU["fat"], 0, 0, a_body, b_body, wobble=wobble, max_wobble=max_wobble)
    f = an.fat_mm
    paint_ellipse(img, g, HU["muscle"], 0, -3, a_body - f, b_body - f, wobble=wobble, max_wobble=max_wobble)
    paint_ellipse(img, g, HU["visceral_fat"], 0, 5, a_body - f - 12, b_body - f - 16)
    # Paraspinal muscles and psoas (psoas grows inferiorly).
    for sx in (-1, 1):
        paint_ellipse(img, g, HU["muscle"], sx * 30, -b_body + f + 22, 24, 17, sx * 15)
        psoas = 0.6 + 0.4 * min(1.0, max(0.0, (20.0 - z) / 60.0))
        paint_ellipse(img, g, HU["muscle"], sx * 32, -42, 14 * psoas, 18 * psoas, sx * 20)

    # Liver (patient's right, shrinking inferiorly) with lesions.
    liver_scale = extent(z, 40.0, 90.0)
    lx, ly = 70.0, 5.0
    if liver_scale > 0:
        paint_ellipse(img, g, HU["liver"], lx, ly, 80 * liver_scale, 70 * liver_scale, -20)
        for dx, dy, dz, r, contrast in an.lesions:
            rz = r * extent(z, dz, r)  # spherical lesion
            cx, cy = lx + dx * liver_scale, ly + dy * liver_scale
            if rz > 0:
                paint_ellipse(img, g, HU["liver"] + contrast, cx, cy, rz, rz)
    # Spleen (patient's left, posterior, superior).
    spleen = extent(z, 30.0, 60.0)
    paint_ellipse(img, g, HU["spleen"], -95, -35, 30 * spleen, 45 * spleen, 35)

    # Kidneys: cortex, medulla, sinus fat.
    for sx, z0 in ((1, -15.0), (-1, -5.0)):
        k = extent(z, z0, 55.0)
        if k > 0:
            cx, cy, ang = sx * 72.0, -45.0, sx * 30.0
            paint_ellipse(img, g, HU["kidney_cortex"], cx, cy, 26 * k, 38 * k, ang)
            paint_ellipse(img, g, HU["kidney_medulla"], cx, cy, 18 * k, 28 * k, ang)
            paint_ellipse(img, g, HU["renal_sinus"], cx - sx * 9 * k, cy + 4, 8 * k, 13 * k, ang)

    # Great vessels.
    paint_ellipse(img, g, HU["aorta"], -14, -22, 11, 11)
    paint_ellipse(img, g, HU["ivc"], 22, -20, 12, 9, 10)

    # Lumbar vertebra: body alternates with intervertebral discs along z (period 30 mm, disc ~ 8 mm).
    phase = ((z + an.disc_phase) % 30.0) / 30.0
    bone = float(np.clip((abs(phase - 0.5) * 30.0 - 4.0) / 2.0 + 0.5, 0.0, 1.0))  # 0 in the disc, 1 in the body
    vertebra(img, g, -62.0, bone)

    # Lower ribs, posterolateral, present superiorly.
    rib = extent(z, 60.0, 60.0)
    if rib > 0:
        for sx in (-1, 1):
            for ang in (200.0, 225.0, 250.0):
                t = math.radians(ang)
                cx = sx * (a_body - f + 2) * abs(math.cos(t))
                cy = (b_body - f + 2) * math.sin(t)  # sin < 0: posterior
                paint_ellipse(img, g, HU["cortical"], cx, cy, 9 * rib, 6 * rib, ang)
                paint_ellipse(img, g, HU["rib_marrow"], cx, cy, 6 * rib, 3.5 * rib, ang)

    # Bowel loops: wall, content, gas pocket in the non-dependent (anterior) part.
    for loop in an.bowel:
        cx = loop["cx"] + loop["drift"] * math.sin(2 * math.pi * z / loop["wavelength"] + loop["phase"])
        cy = loop["cy"] + 0.5 * loop["drift"] * math.cos(2 * math.pi * z / loop["wavelength"] + loop["phase"])
        r = loop["r"] * (0.85 + 0.15 * math.cos(2 * math.pi * z / loop["wavelength"]))
        paint_ellipse(img, g, HU["bowel_wall"], cx, cy, r, 0.8 * r, loop["angle"])
        paint_ellipse(img, g, HU["bowel_content"], cx, cy, r - 3, 0.8 * r - 3, loop["angle"])
        if loop["gas"]:
            paint_ellipse(img, g, HU["gas"], cx, cy + 0.35 * r, 0.6 * r, 0.35 * r)
    return img


class HeadAnatomy:
    """Random but seed-fixed parameters of the head phantom (brain at the level of the lateral ventricles)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.wobble, self.max_wobble = outline(rng, (0.003, 0.012))
        self.scale = rng.uniform(0.9, 1.08)
        self.skull_mm = rng.uniform(5.0, 8.0)
        self.ventricle_phase = rng.uniform(-15, 15)
        # low-contrast lesions in the parenchyma (+-4..8 HU, 3-8 mm) and small calcifications
        self.lesions = blobs(rng, 5, (-50, 50, -60, 50), (3.0, 8.0), (-8.0, -5.0, 5.0, 8.0))
        self.calcs = blobs(rng, 2, (-30, 30, -60, 20), (1.0, 2.0), (150.0, 300.0))
        self.gyri = rng.uniform(0, 2 * math.pi), int(rng.integers(14, 22))


def head_slice(g: Grid, z: float, an: HeadAnatomy) -> np.ndarray:
    """Axial head slice at ``z`` mm (``z = 0``: lateral ventricles): scalp, skull with diploe, grey and white
    matter, ventricles, low-contrast lesions.  HU ``(X, Y)`` without texture."""
    img = np.full((g.xs.size, g.ys.size), HU["air"])
    top = extent(z, 0.0, 90.0)  # the head narrows towards the vertex
    s = an.scale * (0.55 + 0.45 * top)
    a, b = 75.0 * s, 92.0 * s
    w, mw = an.wobble, an.max_wobble
    paint_ellipse(img, g, HU["soft_tissue"], 0, 0, a, b, wobble=w, max_wobble=mw)  # scalp
    t = an.skull_mm
    paint_ellipse(img, g, HU["skull"], 0, 0, a - 4, b - 4, wobble=w, max_wobble=mw)
    paint_ellipse(img, g, HU["diploe"], 0, 0, a - 4 - 0.3 * t, b - 4 - 0.3 * t, wobble=w, max_wobble=mw)
    paint_ellipse(img, g, HU["skull"], 0, 0, a - 4 - 0.7 * t, b - 4 - 0.7 * t, wobble=w, max_wobble=mw)
    ai, bi = a - 4 - t, b - 4 - t
    paint_ellipse(img, g, HU["csf"], 0, 0, ai, bi, wobble=w, max_wobble=mw)  # subarachnoid CSF
    phase, n = an.gyri

    def gyri(phi: np.ndarray) -> np.ndarray:  # folded cortex: grey matter with sulci
        return 0.025 * np.cos(n * phi + phase) + 0.01 * np.cos((n + 7) * phi)

    paint_ellipse(img, g, HU["grey_matter"], 0, 0, ai - 3, bi - 3, wobble=gyri, max_wobble=0.035)
    for sx in (-1, 1):  # white matter of each hemisphere
        paint_ellipse(img, g, HU["white_matter"], sx * 0.4 * ai, -0.05 * bi, 0.45 * ai, 0.7 * bi, sx * 8)
        paint_ellipse(img, g, HU["grey_matter"], sx * 0.22 * ai, 0.0, 0.08 * ai, 0.16 * bi)  # basal ganglia
    paint_ellipse(img, g, HU["csf"], 0, 0.3 * bi, 1.2, 0.62 * bi)  # interhemispheric fissure
    v = extent(z, an.ventricle_phase, 30.0)
    if v > 0:
        for sx in (-1, 1):  # lateral ventricles: frontal horns and bodies
            paint_ellipse(img, g, HU["ventricle"], sx * 7 * s, 18 * s, 5 * v * s, 22 * v * s, -sx * 12)
            paint_ellipse(img, g, HU["ventricle"], sx * 14 * s, -20 * s, 4 * v * s, 14 * v * s, sx * 25)
    paint_blobs(img, g, z, an.lesions, HU["white_matter"], s)
    paint_blobs(img, g, z, an.calcs, None, s)
    return img


class NeckAnatomy:
    """Random but seed-fixed parameters of the neck phantom (at the level of the thyroid)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.wobble, self.max_wobble = outline(rng)
        self.scale = rng.uniform(0.9, 1.1)
        self.fat_mm = rng.uniform(4.0, 9.0)
        self.nodes = blobs(rng, 6, (-45, 45, -20, 25), (3.0, 7.0), (-15.0, -8.0, 8.0))  # lymph nodes vs muscle
        self.disc_phase = rng.uniform(0, 18.0)


def neck_slice(g: Grid, z: float, an: NeckAnatomy) -> np.ndarray:
    """Axial neck slice: skin and fat, muscles, trachea, thyroid, oesophagus, carotids and jugulars, cervical
    vertebra.  HU ``(X, Y)`` without texture."""
    img = np.full((g.xs.size, g.ys.size), HU["air"])
    s = an.scale
    a, b = 62.0 * s, 55.0 * s
    paint_ellipse(img, g, HU["fat"], 0, 0, a, b, wobble=an.wobble, max_wobble=an.max_wobble)
    f = an.fat_mm
    paint_ellipse(img, g, HU["muscle"], 0, -3, a - f, b - f, wobble=an.wobble, max_wobble=an.max_wobble)
    paint_ellipse(img, g, HU["visceral_fat"], 0, 12 * s, 0.55 * a, 0.45 * b)  # visceral space of the neck
    for sx in (-1, 1):
        paint_ellipse(img, g, HU["muscle"], sx * 40 * s, 15 * s, 9 * s, 20 * s, -sx * 35)  # sternocleidomastoid
        paint_ellipse(img, g, HU["aorta"], sx * 24 * s, 8 * s, 4.0 * s, 4.0 * s)  # common carotid
        paint_ellipse(img, g, HU["ivc"], sx * 31 * s, 12 * s, 6.5 * s, 4.5 * s, sx * 20)  # internal jugular
        paint_ellipse(img, g, HU["thyroid"], sx * 13 * s, 24 * s, 8 * s, 12 * s, -sx * 30)  # thyroid lobes
    paint_ellipse(img, g, HU["thyroid"], 0, 33 * s, 8 * s, 3 * s)  # isthmus
    paint_ellipse(img, g, HU["soft_tissue"] + 30, 0, 27 * s, 10 * s, 9 * s)  # tracheal cartilage ring
    paint_ellipse(img, g, HU["air"], 0, 27 * s, 8 * s, 7 * s)  # trachea
    paint_ellipse(img, g, HU["bowel_wall"], -3 * s, 13 * s, 6 * s, 4 * s)  # oesophagus
    paint_blobs(img, g, z, an.nodes, HU["muscle"], s)
    phase = ((z + an.disc_phase) % 18.0) / 18.0
    bone = float(np.clip((abs(phase - 0.5) * 18.0 - 2.5) / 1.5 + 0.5, 0.0, 1.0))
    vertebra(img, g, -8 * s, bone, 0.6 * s)
    return img


class ChestAnatomy:
    """Random but seed-fixed parameters of the chest phantom (mid-thorax, heart and lungs)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.wobble, self.max_wobble = outline(rng)
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
        self.nodules = blobs(rng, 3, (-120, 120, -60, 50), (2.0, 5.0), (HU["soft_tissue"],))
        # low-contrast structures in the heart and mediastinum (e.g. myocardial defects, nodes)
        self.defects = blobs(rng, 3, (-40, 10, 5, 45), (3.0, 7.0), (-12.0, -8.0, 8.0))


def chest_slice(g: Grid, z: float, an: ChestAnatomy) -> np.ndarray:
    """Axial chest slice: chest wall, lungs with vessels and nodules, heart (myocardium and blood pool),
    mediastinal fat, aorta, thoracic vertebra, ribs, sternum.  HU ``(X, Y)`` without texture."""
    img = np.full((g.xs.size, g.ys.size), HU["air"])
    s = an.scale
    a, b = 165.0 * s, 120.0 * s
    w, mw = an.wobble, an.max_wobble
    paint_ellipse(img, g, HU["fat"], 0, 0, a, b, wobble=w, max_wobble=mw)
    f = an.fat_mm
    paint_ellipse(img, g, HU["muscle"], 0, -2, a - f, b - f, wobble=w, max_wobble=mw)
    ac, bc = a - f - 12, b - f - 12  # the thoracic cavity inside the ribs
    # ribs and sternum on the cavity's boundary
    for k in range(14):
        t = 2 * math.pi * (k + 0.5) / 14
        cx, cy = (ac + 5) * math.cos(t), (bc + 5) * math.sin(t)
        if abs(cx) < 25 and cy > 0:
            continue  # the sternum's place
        paint_ellipse(img, g, HU["cortical"], cx, cy, 7, 4.5, math.degrees(t) + 90)
        paint_ellipse(img, g, HU["rib_marrow"], cx, cy, 4.5, 2.5, math.degrees(t) + 90)
    paint_ellipse(img, g, HU["cortical"], 0, bc + 5, 16, 6)
    paint_ellipse(img, g, HU["cancellous"], 0, bc + 5, 13, 3.5)
    for sx in (-1, 1):  # lungs
        paint_ellipse(img, g, HU["lung"], sx * 0.52 * ac, -0.05 * bc, 0.46 * ac, 0.86 * bc, sx * 5)
    # mediastinum: fat, heart (left anterior), great vessels
    paint_ellipse(img, g, HU["visceral_fat"], 0, 0.05 * bc, 0.22 * ac, 0.7 * bc)
    h = extent(z, an.heart_z, 60.0)
    if h > 0:
        paint_ellipse(img, g, HU["myocardium"], -18 * s, 22 * s, 55 * h * s, 45 * h * s, 30)
        paint_ellipse(img, g, HU["blood"], -24 * s, 18 * s, 20 * h * s, 17 * h * s, 30)  # left ventricle
        paint_ellipse(img, g, HU["blood"], 5 * s, 35 * s, 18 * h * s, 13 * h * s, 20)  # right ventricle
        paint_blobs(img, g, z - an.heart_z, an.defects, HU["myocardium"], s)
    paint_ellipse(img, g, HU["aorta"], -22 * s, -45 * s, 13 * s, 13 * s)  # descending aorta
    if h < 0.6:
        paint_ellipse(img, g, HU["aorta"], 10 * s, 10 * s, 15 * s, 15 * s)  # ascending aorta
    paint_ellipse(img, g, HU["air"], 5 * s, -25 * s, 7 * s, 7 * s)  # trachea / main bronchus
    # lung vessels and nodules: only where the lung is (they must not overwrite the heart or the wall)
    vessels = np.full_like(img, HU["lung"])
    for vx, vy, r, ddx, ddy in an.vessels:
        paint_ellipse(vessels, g, HU["lung_vessel"], vx * s + ddx * z, vy * s + ddy * z, r, r)
    paint_blobs(vessels, g, z, an.nodules, None, s)
    inside = np.zeros_like(img, dtype=bool)
    for sx in (-1, 1):
        mask = np.full_like(img, 0.0)
        paint_ellipse(mask, g, 1.0, sx * 0.52 * ac, -0.05 * bc, 0.46 * ac - 3, 0.86 * bc - 3, sx * 5)
        inside |= mask > 0.5
    sel = inside & (img > -900) & (img < -700)
    img[sel] = vessels[sel]
    phase = ((z + an.disc_phase) % 25.0) / 25.0
    bone = float(np.clip((abs(phase - 0.5) * 25.0 - 3.0) / 2.0 + 0.5, 0.0, 1.0))
    vertebra(img, g, -(bc - 5), bone, 0.8)
    return img
