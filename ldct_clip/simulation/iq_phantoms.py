"""Digital phantoms of task-based image quality: the MITA CCT189 low-contrast module and a TTF/NPS phantom.

* CCT189 (the MITA low-contrast phantom of the FDA LCD-CT toolbox, ``CCT189_obj.m`` there; phantomlab.com
  catphan-mita): a 200 mm water disk with four inserts 40 mm from the centre at 45, 135, 225 and 315 degrees:
  3 mm / +14 HU, 5 mm / +7 HU, 7 mm / +5 HU, 10 mm / +3 HU.  Signal-absent: the disk alone.
* TTF/NPS (after the ACR 464 module 1 / Mercury-phantom inserts of AAPM TG-233): a 200 mm water disk with five
  20 mm inserts of -1000 (air), -100 (polyethylene), 120 (acrylic), 340 (Delrin) and 990 HU (bone-like) 60 mm from
  the centre, 72 degrees apart; its centre is uniform water for noise ROIs.

Images are ``(X, Y)`` float32 HU, air -1000 around the disk; geometry in mm from the image centre, +x along
the first axis.  Shapes are area-sampled (``supersample`` x ``supersample`` sub-pixels) and then blurred by a
Gaussian ``blur_fwhm_mm``, the scanner's resolution: the low-dose simulator adds noise only, so without it
the "FBP" images would have the perfect resolution of the drawing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ldct_clip.errors import InputError

__all__ = ["CCT189_INSERTS", "TTF_INSERTS", "PhantomInsert", "insert_centre_px", "make_cct189", "make_ttf_phantom"]


@dataclass(frozen=True)
class PhantomInsert:
    """A circular insert: diameter (mm), value (HU, on 0 HU water), polar position (mm, degrees)."""

    diameter_mm: float
    hu: float
    distance_mm: float
    angle_deg: float

    @property
    def centre_mm(self) -> tuple[float, float]:
        a = math.radians(self.angle_deg)
        return self.distance_mm * math.cos(a), self.distance_mm * math.sin(a)


#: The CCT189 low-contrast inserts (LCD-CT toolbox order).
CCT189_INSERTS: tuple[PhantomInsert, ...] = (
    PhantomInsert(3.0, 14.0, 40.0, 45.0),
    PhantomInsert(5.0, 7.0, 40.0, 135.0),
    PhantomInsert(7.0, 5.0, 40.0, 225.0),
    PhantomInsert(10.0, 3.0, 40.0, 315.0),
)

#: The TTF inserts (TG-233 contrasts).
TTF_INSERTS: tuple[PhantomInsert, ...] = tuple(
    PhantomInsert(20.0, hu, 60.0, 90.0 + 72.0 * k) for k, hu in enumerate((-1000.0, -100.0, 120.0, 340.0, 990.0))
)

PHANTOM_DIAMETER_MM = 200.0
#: Default scanner blur (Gaussian FWHM, mm): about a standard body kernel's resolution (f50 near 0.4-0.5 /mm).
DEFAULT_BLUR_FWHM_MM = 1.0


def _check(size: int, pixel_size_mm: float) -> None:
    if int(size) < 32 or not (math.isfinite(pixel_size_mm) and pixel_size_mm > 0):
        raise InputError(f"phantom size must be >= 32 pixels and the pixel size positive, got {size}, {pixel_size_mm}.")
    if size * pixel_size_mm < PHANTOM_DIAMETER_MM + 4 * pixel_size_mm:
        raise InputError(
            f"a {size} x {pixel_size_mm} mm field of view ({size * pixel_size_mm:.0f} mm) does not hold the "
            f"{PHANTOM_DIAMETER_MM:.0f} mm phantom; use more pixels or larger ones."
        )


def insert_centre_px(insert: PhantomInsert, size: int, pixel_size_mm: float) -> tuple[float, float]:
    """The insert's centre in (fractional) pixel indices of a ``size x size`` phantom image."""
    x, y = insert.centre_mm
    c = (size - 1) / 2.0
    return c + x / pixel_size_mm, c + y / pixel_size_mm


def _draw(size: int, pixel_size_mm: float, inserts: tuple[PhantomInsert, ...], supersample: int,
          blur_fwhm_mm: float) -> np.ndarray:
    _check(size, pixel_size_mm)
    ss = max(1, int(supersample))
    coords = ((np.arange(size * ss) + 0.5) / ss - 0.5 - (size - 1) / 2.0) * pixel_size_mm  # sub-pixel centres, mm
    x, y = coords[:, None], coords[None, :]
    fine = np.where(np.hypot(x, y) <= PHANTOM_DIAMETER_MM / 2.0, 0.0, -1000.0)
    for ins in inserts:
        cx, cy = ins.centre_mm
        fine = np.where(np.hypot(x - cx, y - cy) <= ins.diameter_mm / 2.0, ins.hu, fine)
    image = fine.reshape(size, ss, size, ss).mean(axis=(1, 3))
    if blur_fwhm_mm > 0:
        sigma_px = blur_fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / pixel_size_mm
        image = ndimage.gaussian_filter(image, sigma_px, mode="nearest")
    return image.astype(np.float32)


def make_cct189(size: int = 256, pixel_size_mm: float = 0.9375, *, signal: bool = True, supersample: int = 8,
                blur_fwhm_mm: float = DEFAULT_BLUR_FWHM_MM) -> np.ndarray:
    """The CCT189 low-contrast module, noise-free: ``(size, size)`` float32 HU, with (``signal=True``) or
    without its four inserts (:data:`CCT189_INSERTS`)."""
    return _draw(size, pixel_size_mm, CCT189_INSERTS if signal else (), supersample, blur_fwhm_mm)


def make_ttf_phantom(size: int = 256, pixel_size_mm: float = 0.9375, *, supersample: int = 8,
                     blur_fwhm_mm: float = DEFAULT_BLUR_FWHM_MM) -> np.ndarray:
    """The TTF/NPS phantom, noise-free: ``(size, size)`` float32 HU with the inserts of :data:`TTF_INSERTS`."""
    return _draw(size, pixel_size_mm, TTF_INSERTS, supersample, blur_fwhm_mm)
