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

from .errors import InputError

__all__ = ["make_low_dose_example", "make_phantom", "HU"]

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
    vy = -62.0
    body_value = bone * HU["cortical"] + (1 - bone) * HU["disc"]
    _paint_ellipse(img, g, body_value, 0, vy, 22, 18)
    _paint_ellipse(img, g, bone * HU["cancellous"] + (1 - bone) * HU["disc"], 0, vy, 19, 15)
    # Posterior elements (pedicles, laminae, spinous and transverse processes), spinal canal.
    _paint_ellipse(img, g, HU["posterior_elements"], 0, vy - 28, 16, 13)
    _paint_ellipse(img, g, HU["posterior_elements"] * (0.5 + 0.5 * bone), 0, vy - 50, 5, 14)
    for sx in (-1, 1):
        _paint_ellipse(img, g, HU["posterior_elements"], sx * 30, vy - 22, 13 * bone, 4 * bone, sx * 10)
    _paint_ellipse(img, g, HU["csf"], 0, vy - 27, 9, 8)

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


def _texture(shape: tuple[int, int, int], pixel_mm: float, slice_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth zero-mean random field (unit SD) with ~3 mm in-plane and ~6 mm through-plane correlation."""
    field = rng.standard_normal(shape)
    sigma = (3.0 / pixel_mm, 3.0 / pixel_mm, 6.0 / slice_mm)
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


def make_phantom(
    shape: Sequence[int] = (256, 256, 16),
    *,
    pixel_size_mm: float | None = None,
    slice_thickness_mm: float = 2.5,
    texture_hu: float = 4.0,
    seed: int = 0,
) -> np.ndarray:
    """A noise-free abdomen-like CT volume in HU.

    Args:
        shape: ``(X, Y, Z)`` (or ``(X, Y)`` for a single slice, returned 2D).
        pixel_size_mm: in-plane spacing; default ``400 mm / max(X, Y)`` so the body (about 330 x 230 mm) fills
            the field of view at any grid size.
        slice_thickness_mm: spacing of the slices along Z (the anatomy is sampled at slice centres, with the
            middle of the volume at z = 0 mm).
        texture_hu: SD (HU) of the smooth tissue texture added inside the body (0 for flat tissues).
        seed: fixes the random anatomical details (outline, bowel loops, lesions, texture).

    Returns:
        float32 array of ``shape`` in HU: air -1000 outside the body, fat about -100, soft tissue 40-60,
        liver 60, contrast-enhanced vessels and kidneys 110-200, bone 250-900, bowel gas -900.
    """
    nx, ny, nz = _check_shape(shape)
    two_d = len(tuple(shape)) == 2
    px = DEFAULT_FOV_MM / max(nx, ny) if pixel_size_mm is None else float(pixel_size_mm)
    if not (math.isfinite(px) and px > 0):
        raise InputError(f"pixel_size_mm must be positive, got {pixel_size_mm}.")
    if not (math.isfinite(slice_thickness_mm) and slice_thickness_mm > 0):
        raise InputError(f"slice_thickness_mm must be positive, got {slice_thickness_mm}.")
    rng = np.random.default_rng(seed)
    anatomy = _Anatomy(rng)
    xs = (np.arange(nx) - (nx - 1) / 2.0) * px
    ys = (np.arange(ny) - (ny - 1) / 2.0) * px
    grid = _Grid(xs, ys, px)
    zs = (np.arange(nz) - (nz - 1) / 2.0) * slice_thickness_mm
    # drawn with +x right and +y anterior; flipped so that array index i runs to the patient's left and j to
    # posterior, as a standard axial DICOM slice read as (columns, rows): viewers then show the liver on the
    # left and the spine at the bottom
    vol = np.ascontiguousarray(np.stack([_slice(grid, float(z), anatomy) for z in zs], axis=2)[::-1, ::-1])
    if texture_hu > 0:
        # Texture only in tissue: fade it out in air, gas and towards bone so those keep their values.
        weight = np.clip((vol + 200.0) / 100.0, 0.0, 1.0) * np.clip((400.0 - vol) / 100.0, 0.0, 1.0)
        vol += texture_hu * weight * _texture((nx, ny, nz), px, slice_thickness_mm, rng)
    vol = vol.astype(np.float32)
    return vol[:, :, 0] if two_d else vol


def make_low_dose_example(
    shape: Sequence[int] = (256, 256, 16),
    dose_fraction: float = 0.25,
    seed: int = 0,
    *,
    pixel_size_mm: float | None = None,
    incident_flux: float = 3e5,
    filter_name: str = "hann",
    progress: Callable[[int, int], None] | bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A simulated (low-dose, normal-dose) pair of the phantom, for examples and smoke tests.

    The noise-free phantom gets full-dose projection-domain noise (the normal-dose image), and the low-dose
    image adds the variance-matched extra noise of ``dose_fraction`` on top of it
    (:func:`ldct_clip.simulation.simulate_dose_pair`).  With the defaults, the normal-dose noise in the liver is
    about 10 HU at 256 x 256 (1.6 mm pixels) and the quarter-dose noise twice that, about what clinical
    abdominal scans show.

    Args:
        shape: ``(X, Y, Z)`` or ``(X, Y)``.
        dose_fraction: low dose relative to the normal dose, in (0, 1].
        seed: fixes the phantom and the noise.
        pixel_size_mm: as :func:`make_phantom`.
        incident_flux: full-dose photons per detector bin per view.
        filter_name: FBP filter of the simulated reconstruction (a smooth one, like a soft-tissue kernel).
        progress: as :func:`ldct_clip.simulation.simulate_low_dose`.

    Returns:
        ``(ldct_hu, ndct_hu)``, float32 arrays of ``shape`` in HU.
    """
    from .simulation import simulate_dose_pair

    nx, ny, _ = _check_shape(shape)
    px = DEFAULT_FOV_MM / max(nx, ny) if pixel_size_mm is None else float(pixel_size_mm)
    clean = make_phantom(shape, pixel_size_mm=px, seed=seed)
    return simulate_dose_pair(
        clean,
        dose_fraction,
        incident_flux=incident_flux,
        pixel_size_mm=px,
        filter_name=filter_name,
        seed=seed,
        progress=progress,
    )
