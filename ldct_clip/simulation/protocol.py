"""The scan a low-dose simulation imitates: one frozen, validated record of its parameters.

:class:`ScanProtocol` is the single place the simulators' parameters (photon flux, electronic noise, geometry,
views, pixel size, reconstruction filter, noise model, method) are declared, defaulted and checked.  Every entry
point (:func:`~ldct_clip.simulation.low_dose.simulate_low_dose`, its torch form, the dose pairs, the case driver,
the noise bank and the training transform) takes one.  The dose is not part of it: it is what the simulations
vary for one scanner (a value or a range, one per slice).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ldct_clip.errors import InputError

__all__ = [
    "FILTERS",
    "MU_WATER_PER_MM",
    "Geometry",
    "Method",
    "NoiseModel",
    "ScanProtocol",
    "check_dose_fraction",
    "default_num_views",
    "detector_bins",
    "dose_range",
]

#: Linear attenuation coefficient of water in 1/mm at an effective energy of about 70 keV.
MU_WATER_PER_MM = 0.0192

NoiseModel = Literal["variance_matched", "poisson"]
#: ``"auto"``: ``"projection"`` on CUDA and for fan beam, ``"sector"`` on CPU (see :mod:`ldct_clip.simulation.fast`);
#: ``"reference"``: the scikit-image implementation, one slice at a time.
Method = Literal["auto", "sector", "projection", "reference"]
Geometry = Literal["parallel", "fan"]

#: FBP filters (scikit-image ``iradon`` names).
FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")


def _check_positive(value: float, name: str, hint: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a positive finite number, got {value}. {hint}")
    return value


def check_dose_fraction(dose_fraction: float) -> float:
    """``dose_fraction`` as a float in (0, 1], or :class:`InputError`."""
    k = float(dose_fraction)
    if not (math.isfinite(k) and 0.0 < k <= 1.0):
        raise InputError(
            f"dose_fraction must be in (0, 1] (e.g. 0.25 for quarter dose), got {dose_fraction}. "
            "It is the simulated dose relative to the dose of the input image."
        )
    return k


def dose_range(dose_fraction: float | Sequence[float]) -> tuple[float, float]:
    """``(lo, hi)`` of a dose fraction (``lo == hi``) or a range ``[lo, hi]`` in (0, 1], or :class:`InputError`."""
    doses = [dose_fraction] if isinstance(dose_fraction, (int, float)) else list(dose_fraction)
    try:
        ok = len(doses) in (1, 2) and all(0.0 < float(d) <= 1.0 for d in doses) and float(doses[0]) <= float(doses[-1])
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(
            f"dose_fraction must be in (0, 1] (e.g. 0.25 for quarter dose) or a range [lo, hi] within it "
            f"(e.g. [0.1, 0.5]), got {dose_fraction}."
        )
    return float(doses[0]), float(doses[-1])


def default_num_views(num_pixels: int) -> int:
    """Default number of projection views for a slice of ``num_pixels`` on its longer side.

    720 views for 512 pixels, proportional to the size (an even number, at least 64).  For parallel beam the
    views cover 180 degrees; for fan beam a full 360-degree rotation (same number of readings in both).
    """
    return max(64, 2 * int(round(360.0 * num_pixels / 512.0)))


def detector_bins(n: int) -> int:
    """Detector bins of an ``n x n`` slice: scikit-image's ``radon(circle=False)`` count (its padded diagonal)."""
    return n + int(math.ceil(math.sqrt(2.0) * n - n))


@dataclass(frozen=True)
class ScanProtocol:
    """Acquisition and reconstruction of the simulated scan; checked on construction (:class:`InputError`).

    Attributes:
        incident_flux: photons per detector bin per view at full dose (``I0``; clinical about 1e5 to 1e6).
            The image noise variance scales as ``1 / (incident_flux * num_views)``.
        electronic_noise_var: variance of the detector's electronic noise, photons^2 (about 10).
        geometry: ``"parallel"`` (views over 180 degrees) or ``"fan"`` (equiangular fan beam, full 360-degree
            rotation, rebinned to parallel beam before FBP).  With the same ``num_views`` both use the same
            number of readings, so their noise levels are comparable.
        num_views: projection views; ``None``: :func:`default_num_views` (720 for 512 pixels).
        mu_water: attenuation of water in 1/mm.
        pixel_size_mm: in-plane pixel spacing in mm (square pixels; same as the detector bin pitch).
        noise_model: ``"variance_matched"`` (the input is a real full-dose scan) or ``"poisson"`` (the input is
            noise-free); see :func:`~ldct_clip.simulation.low_dose.simulate_low_dose`.
        filter_name: FBP filter, one of :data:`FILTERS`; smoother filters move the noise power to lower
            frequencies, like softer reconstruction kernels.
        source_distance_mm: source-to-isocentre distance of the fan-beam geometry (mm).
        method: ``"auto"`` (``"projection"`` on CUDA and for fan beam, ``"sector"`` otherwise), ``"sector"``,
            ``"projection"`` (the fast batched torch paths of :mod:`ldct_clip.simulation.fast`) or ``"reference"``
            (scikit-image, one slice at a time).  The paths draw different random numbers for the same seed; their
            noise has the same statistics (tests/test_fast_simulation.py).
    """

    incident_flux: float = 1e5
    electronic_noise_var: float = 10.0
    geometry: Geometry = "parallel"
    num_views: int | None = None
    mu_water: float = MU_WATER_PER_MM
    pixel_size_mm: float = 0.7
    noise_model: NoiseModel = "variance_matched"
    filter_name: str = "ramp"
    source_distance_mm: float = 595.0
    method: Method = "auto"

    def __post_init__(self) -> None:
        if self.method not in ("auto", "sector", "projection", "reference"):
            raise InputError(f"method must be 'auto', 'sector', 'projection' or 'reference', got {self.method!r}.")
        if self.geometry not in ("parallel", "fan"):
            raise InputError(f"geometry must be 'parallel' or 'fan', got {self.geometry!r}.")
        if self.noise_model not in ("variance_matched", "poisson"):
            raise InputError(
                f"noise_model must be 'variance_matched' (input is a real full-dose scan) or 'poisson' "
                f"(input is noise-free), got {self.noise_model!r}."
            )
        if self.filter_name not in FILTERS:
            raise InputError(f"filter_name must be one of {FILTERS}, got {self.filter_name!r}.")
        if self.geometry == "fan" and self.method == "sector":
            raise InputError("method 'sector' is for parallel beam only; use method='projection' or 'auto' for fan beam.")
        views = self.num_views
        if views is not None and (isinstance(views, bool) or int(views) != views or views < 16):
            raise InputError(f"num_views must be an integer >= 16 or None (automatic), got {views!r}.")
        e_var = float(self.electronic_noise_var)
        if not (math.isfinite(e_var) and e_var >= 0):
            raise InputError(f"electronic_noise_var must be >= 0 (photons^2, about 10), got {self.electronic_noise_var}.")
        numbers = {
            "num_views": None if views is None else int(views),
            "incident_flux": _check_positive(self.incident_flux, "incident_flux",
                                             "It is the number of photons per detector bin per view at full dose (1e5..1e6)."),
            "electronic_noise_var": e_var,
            "mu_water": _check_positive(self.mu_water, "mu_water", "Use about 0.0192 (1/mm) for water at 70 keV."),
            "pixel_size_mm": _check_positive(self.pixel_size_mm, "pixel_size_mm",
                                             "Take it from the image header (e.g. PixelSpacing)."),
            "source_distance_mm": _check_positive(self.source_distance_mm, "source_distance_mm",
                                                  "Use the source-to-isocentre distance, about 595 mm."),
        }
        for name, value in numbers.items():  # plain Python numbers, whatever was given (numpy scalars, ints)
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, protocol: ScanProtocol | None = None, fields: Mapping[str, Any] | None = None) -> ScanProtocol:
        """``protocol`` (default: the defaults) with ``fields`` replaced: how every entry point takes its scan.

        Raises:
            TypeError: a field :class:`ScanProtocol` does not have.
            InputError: an invalid value.
        """
        fields = dict(fields or {})
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            names = ", ".join(f.name for f in dataclasses.fields(cls))
            raise TypeError(f"unknown scan protocol field(s) {unknown}; ScanProtocol has {names}.")
        if protocol is None:
            return cls(**fields)
        if not isinstance(protocol, ScanProtocol):
            raise TypeError(f"protocol must be a ScanProtocol or None, got {type(protocol).__name__}.")
        return dataclasses.replace(protocol, **fields) if fields else protocol

    def views_for(self, num_pixels: int) -> int:
        """Projection views for a square slice of ``num_pixels`` (``num_views`` or its default)."""
        return default_num_views(num_pixels) if self.num_views is None else self.num_views

    def check_fits(self, num_pixels: int) -> None:
        """Refuse a fan-beam source inside the field of view of a (squared) slice of ``num_pixels``, corners
        included."""
        radius = detector_bins(num_pixels) / 2.0
        if self.geometry == "fan" and self.source_distance_mm / self.pixel_size_mm <= radius * 1.05:
            raise InputError(
                f"source_distance_mm={self.source_distance_mm} puts the source inside the field of view "
                f"(radius {radius * self.pixel_size_mm:.0f} mm incl. corners); use a larger source distance "
                "(clinical scanners: about 500-650 mm) or check pixel_size_mm."
            )
