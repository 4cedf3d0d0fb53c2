"""Procedural CT phantoms of four body regions (abdomen, chest, head, neck), and a low-dose/normal-dose example
pair built from them.

The anatomy of each region is in :mod:`.anatomy`, the drawing primitives in :mod:`.phantom_drawing`; this module
samples them into textured volumes.  Drawn in millimetres, a phantom shows the same anatomy at any grid size.
The abdomen, for example: an elliptical body with subcutaneous fat, abdominal wall and paraspinal muscles, mesenteric fat, liver (with low-contrast
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
from ldct_clip.simulation.anatomy import (
    AbdomenAnatomy,
    ChestAnatomy,
    HeadAnatomy,
    NeckAnatomy,
    abdomen_slice,
    chest_slice,
    head_slice,
    neck_slice,
)
from ldct_clip.simulation.phantom_drawing import HU, Grid

__all__ = ["make_low_dose_example", "make_phantom", "HU", "REGIONS"]

#: Field of view (mm) across the longer in-plane side when no pixel size is given.
DEFAULT_FOV_MM = 400.0


@dataclass(frozen=True)
class _Region:
    anatomy: Callable[[np.random.Generator], object]
    draw: Callable[[Grid, float, object], np.ndarray]
    fov_mm: float
    lung_texture_hu: float = 0.0  # SD of the fine parenchyma texture inside lungs (abdomen gas keeps its value)


#: Body regions of :func:`make_phantom` and their default field of view (mm).
REGIONS: dict[str, _Region] = {
    "abdomen": _Region(AbdomenAnatomy, abdomen_slice, DEFAULT_FOV_MM),
    "chest": _Region(ChestAnatomy, chest_slice, 400.0, 25.0),
    "head": _Region(HeadAnatomy, head_slice, 240.0),
    "neck": _Region(NeckAnatomy, neck_slice, 180.0),
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
    grid = Grid(xs, ys, px)
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
