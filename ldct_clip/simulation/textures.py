"""Random 2D texture fields with the statistics of real anatomy, for synthetic CT training content.

Every function takes a shape ``(X, Y)`` in pixels, the pixel size in mm where the texture has a physical
scale, and a ``numpy.random.Generator``; all return float32 arrays of that shape.  Unit-SD fields are zero-mean;
masks and densities lie in [0, 1].  Physical scales are in mm so that the same anatomy appears at any pixel
size (0.3-1 mm and beyond).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = [
    "power_law_field",
    "lumpy_background",
    "vessel_tree",
    "trabecular_bone",
    "interleave_mask",
    "lung_parenchyma",
]


def _unit(field: np.ndarray) -> np.ndarray:
    field = field - field.mean()
    sd = field.std()
    return (field / sd if sd > 0 else field).astype(np.float32)


def power_law_field(shape: tuple[int, int], beta: float, rng: np.random.Generator,
                    pixel_mm: float = 1.0, cutoff_mm: float = 0.0) -> np.ndarray:
    """Gaussian random field with power spectrum ``|f|^-beta`` (``beta`` 1.5-3.5: the range of anatomy, mammograms
    and CT soft tissue); zero mean, unit SD.  ``cutoff_mm`` > 0 removes structure larger than that (a high-pass
    at ``1 / cutoff_mm``) so that only fine texture remains."""
    nx, ny = shape
    fx = np.fft.fftfreq(nx, d=pixel_mm)[:, None]
    fy = np.fft.rfftfreq(ny, d=pixel_mm)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = np.inf
    amp = f ** (-beta / 2.0)
    if cutoff_mm > 0:
        amp *= 1.0 - np.exp(-((f * cutoff_mm) ** 2))
    z = rng.standard_normal((nx, ny // 2 + 1)) + 1j * rng.standard_normal((nx, ny // 2 + 1))
    return _unit(np.fft.irfft2(z * amp, s=(nx, ny)))


def lumpy_background(shape: tuple[int, int], rng: np.random.Generator, pixel_mm: float = 1.0,
                     lumps_per_cm2: float = 0.5, radius_mm: tuple[float, float] = (2.0, 8.0)) -> np.ndarray:
    """Rolland-Barrett lumpy background: a Poisson number of Gaussian lumps of random radius; zero mean, unit SD."""
    nx, ny = shape
    area_cm2 = nx * ny * (pixel_mm / 10.0) ** 2
    out = np.zeros(shape, np.float64)
    # lumps of similar radius share one blur: a few radius classes instead of one filter per lump
    for r_mm in np.geomspace(*radius_mm, num=3):
        count = rng.poisson(lumps_per_cm2 * area_cm2 / 3.0)
        impulses = np.zeros(shape, np.float64)
        np.add.at(impulses, (rng.integers(0, nx, count), rng.integers(0, ny, count)), rng.uniform(0.5, 1.5, count))
        out += ndimage.gaussian_filter(impulses, r_mm / pixel_mm, mode="wrap") * (r_mm / pixel_mm) ** 2
    return _unit(out)


def vessel_tree(shape: tuple[int, int], rng: np.random.Generator, pixel_mm: float = 1.0, roots: int = 3,
                radius_mm: tuple[float, float] = (1.0, 5.0), depth: int = 5) -> np.ndarray:
    """Branching vessels (bifurcating random walks whose radius shrinks by ~0.75 per generation) as a partial-volume
    density in [0, 1]: 1 inside a vessel, a smooth edge about one pixel wide."""
    nx, ny = shape
    dist = np.full(shape, np.inf, np.float32)
    ii, jj = np.mgrid[0:nx, 0:ny].astype(np.float32)
    segments: list[tuple[float, float, float, float, float]] = []  # x0, y0, x1, y1, radius (pixels)
    stack = [(rng.uniform(0, nx), rng.uniform(0, ny), rng.uniform(0, 2 * math.pi),
              rng.uniform(*radius_mm) / pixel_mm, 0) for _ in range(roots)]
    while stack and len(segments) < 400:
        x, y, ang, r, gen = stack.pop()
        length = r * rng.uniform(6.0, 14.0)
        for _ in range(int(rng.integers(2, 5))):  # a gently curving branch of a few straight pieces
            ang += rng.normal(0.0, 0.25)
            x1, y1 = x + length / 3 * math.cos(ang), y + length / 3 * math.sin(ang)
            segments.append((x, y, x1, y1, r))
            x, y = x1, y1
        if gen < depth and r * pixel_mm > 0.25:
            for side in (-1.0, 1.0):
                stack.append((x, y, ang + side * rng.uniform(0.3, 0.9), r * rng.uniform(0.65, 0.85), gen + 1))
    out = np.zeros(shape, np.float32)
    for x0, y0, x1, y1, r in segments:
        # distance to the segment inside its bounding box only
        lo_i, hi_i = int(max(0, min(x0, x1) - r - 2)), int(min(nx, max(x0, x1) + r + 3))
        lo_j, hi_j = int(max(0, min(y0, y1) - r - 2)), int(min(ny, max(y0, y1) + r + 3))
        if lo_i >= hi_i or lo_j >= hi_j:
            continue
        pi, pj = ii[lo_i:hi_i, lo_j:hi_j], jj[lo_i:hi_i, lo_j:hi_j]
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((pi - x0) * dx + (pj - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
        d = np.hypot(pi - (x0 + t * dx), pj - (y0 + t * dy)) - r
        np.minimum(dist[lo_i:hi_i, lo_j:hi_j], d, out=dist[lo_i:hi_i, lo_j:hi_j])
    np.clip(0.5 - dist, 0.0, 1.0, out=out)  # anti-aliased edge
    return out


def trabecular_bone(shape: tuple[int, int], rng: np.random.Generator, pixel_mm: float = 1.0,
                    spacing_mm: float = 1.0, bone_fraction: float = 0.3) -> np.ndarray:
    """Cancellous bone: a band-pass random field around ``spacing_mm`` thresholded to a connected network of
    plates and rods holding ``bone_fraction`` of the area; density in [0, 1] (partial volume at coarse pixels)."""
    fine = max(1, int(math.ceil(pixel_mm / 0.25)))  # drawn at <= 0.25 mm, then averaged down
    hi = (shape[0] * fine, shape[1] * fine)
    sigma = 0.3 * spacing_mm * fine / pixel_mm  # a difference of Gaussians peaking near 1 / spacing
    white = rng.standard_normal(hi)
    band = ndimage.gaussian_filter(white, sigma, mode="wrap") - ndimage.gaussian_filter(white, 2 * sigma, mode="wrap")
    mask = (band > np.quantile(band, 1.0 - bone_fraction)).astype(np.float32)
    return mask.reshape(shape[0], fine, shape[1], fine).mean(axis=(1, 3)) if fine > 1 else mask


def interleave_mask(shape: tuple[int, int], rng: np.random.Generator, pixel_mm: float = 1.0,
                    fraction: float = 0.4, scale_mm: float = 3.0, anisotropy: float = 3.0) -> np.ndarray:
    """Fat/muscle interleaving (marbling, fatty septa): an anisotropic smooth field, stretched along a random
    direction, thresholded to ``fraction`` of the area; a soft [0, 1] mask (1 = fat)."""
    nx, ny = shape
    field = rng.standard_normal(shape)
    field = ndimage.gaussian_filter(field, (scale_mm * anisotropy / pixel_mm, scale_mm / pixel_mm), mode="wrap")
    field = ndimage.rotate(field, rng.uniform(0, 180), reshape=False, mode="wrap", order=1)
    field = _unit(field)
    thr = np.quantile(field, 1.0 - fraction)
    return np.clip((field - thr) / 0.15 + 0.5, 0.0, 1.0).astype(np.float32)


def lung_parenchyma(shape: tuple[int, int], rng: np.random.Generator, pixel_mm: float = 1.0) -> np.ndarray:
    """Lung in HU: about -860 with fine alveolar texture (power law, SD 20-50 HU), interlobular septa and a
    vessel tree (soft tissue, 20-60 HU) that branches down to sub-millimetre calibres."""
    base = rng.uniform(-900, -800) + rng.uniform(20, 50) * power_law_field(shape, 2.5, rng, pixel_mm, cutoff_mm=6.0)
    vessels = vessel_tree(shape, rng, pixel_mm, roots=int(rng.integers(3, 7)), radius_mm=(1.0, 4.0), depth=6)
    septa = interleave_mask(shape, rng, pixel_mm, fraction=0.05, scale_mm=1.0, anisotropy=6.0)
    hu = base + septa * rng.uniform(100, 300)
    return (hu + vessels * (rng.uniform(20, 60) - hu)).astype(np.float32)
