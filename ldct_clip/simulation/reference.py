"""Low-dose CT simulation from a (normal-dose or noise-free) CT image.

Two noise models live here:

* :func:`simulate_low_dose` -- the realistic one.  It works in the projection domain (Zeng et al. 2015,
  Yu et al. 2012): the slice is forward projected to line integrals, quantum (Poisson) and electronic
  (Gaussian) noise of a lower tube current is drawn per detector reading, and only the *noise* is filtered
  back-projected and added to the input.  The result has the correlated noise texture of filtered
  back-projection (a noise power spectrum that vanishes at zero frequency), streaks along strongly
  attenuating paths, and more noise in the centre of large patients -- none of which i.i.d. Gaussian noise has.
* :func:`add_gaussian_noise` -- the paper's training noise: i.i.d. Gaussian noise of ``sigma/255`` on the
  image normalised to [0, 1] (``(HU + 1024) / 4096`` by default).

Array conventions (MONAI): a volume is ``(X, Y, Z)`` in HU with axial slices ``vol[:, :, k]``; a single
slice is ``(X, Y)``.  Every function accepts both and processes a volume slice by slice.  Outputs are float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, Union

import numpy as np
import torch
from scipy import ndimage
from skimage.transform import iradon, radon

from ldct_clip.errors import InputError

__all__ = [
    "MU_WATER_PER_MM",
    "Method",
    "simulate_low_dose_torch",
    "add_gaussian_noise",
    "default_num_views",
    "dose_range",
    "hu_to_mu",
    "simulate_dose_pair",
    "simulate_low_dose",
]

#: Linear attenuation coefficient of water in 1/mm at an effective energy of about 70 keV.
MU_WATER_PER_MM = 0.0192

#: Progress reporting: a callable ``progress(done, total)``, ``True`` for a tqdm bar, or ``None``/``False``.
ProgressArg = Union[Callable[[int, int], None], bool, None]

NoiseModel = Literal["variance_matched", "poisson"]
#: ``"auto"``: ``"projection"`` on CUDA and for fan beam, ``"sector"`` on CPU (see :mod:`ldct_clip.simulation.fast`);
#: ``"reference"``: the scikit-image implementation, one slice at a time.
Method = Literal["auto", "sector", "projection", "reference"]
Geometry = Literal["parallel", "fan"]

_FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")

# The line integrals only set the photon count -- hence the noise variance -- of each ray, and that varies
# smoothly.  They are therefore computed on a grid of at most this many pixels and views and interpolated:
# scikit-image's radon costs about 7 s for a 512 x 512 slice at 720 views, 0.4 s on this grid.
_PMAP_MAX_PIXELS = 256
_PMAP_VIEWS = 180

# Smallest detector reading kept before the log (photons): readings at or below zero (photon starvation
# plus electronic noise) would give an infinite line integral.
_MIN_COUNTS = 1.0


# ----------------------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------------------


def _as_image(image_hu: np.ndarray, name: str = "image_hu", min_side: int = 8) -> np.ndarray:
    """Return ``image_hu`` as a float64 array of shape (X, Y) or (X, Y, Z), or raise :class:`InputError`."""
    arr = np.asarray(image_hu)
    if arr.ndim not in (2, 3):
        raise InputError(
            f"{name} must be a 2D slice (X, Y) or a 3D volume (X, Y, Z) in HU, got an array of shape {arr.shape}. "
            "Squeeze channel/batch axes first."
        )
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name} must hold real numbers (HU), got dtype {arr.dtype}.")
    if min(arr.shape[:2]) < min_side:
        raise InputError(f"{name} slices must be at least {min_side}x{min_side} pixels, got {arr.shape[:2]}.")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite values; replace them (e.g. with -1000 HU for air) first.")
    return arr


def _check_positive(value: float, name: str, hint: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a positive finite number, got {value}. {hint}")
    return value


def _check_dose_fraction(dose_fraction: float) -> float:
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


def _report(progress: ProgressArg, total: int) -> Callable[[int], None]:
    """Turn the ``progress`` argument into a ``step(done)`` function (done = slices finished so far)."""
    if progress is None or progress is False:
        return lambda done: None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="simulating", unit="slice")

        def step(done: int) -> None:
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        return step
    if callable(progress):
        return lambda done: progress(done, total)
    raise InputError(f"progress must be a callable(done, total), True (tqdm) or None, got {type(progress).__name__}.")


def _slice_seeds(seed: int | None, n: int, streams: int = 1) -> list[list[np.random.Generator]]:
    """Independent generators per slice (and per noise stream), reproducible for an integer seed."""
    children = np.random.SeedSequence(seed).spawn(n)
    return [[np.random.default_rng(s) for s in child.spawn(streams)] for child in children]


def default_num_views(num_pixels: int) -> int:
    """Default number of projection views for a slice of ``num_pixels`` on its longer side.

    720 views for 512 pixels, proportional to the size (an even number, at least 64).  For parallel beam the
    views cover 180 degrees; for fan beam a full 360-degree rotation (same number of readings in both).
    """
    return max(64, 2 * int(round(360.0 * num_pixels / 512.0)))


def hu_to_mu(image_hu: np.ndarray, mu_water: float = MU_WATER_PER_MM) -> np.ndarray:
    """Linear attenuation (1/mm) from HU: ``mu = mu_water * (1 + HU / 1000)``, negative values (below air) clipped to 0."""
    return np.clip(mu_water * (1.0 + np.asarray(image_hu, dtype=np.float64) / 1000.0), 0.0, None)


# ----------------------------------------------------------------------------------------------------------
# projection geometry
# ----------------------------------------------------------------------------------------------------------


def _pad_square(image: np.ndarray, value: float = 0.0) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Pad a 2D array to a square (centred) and return it with the slices that crop it back."""
    nx, ny = image.shape
    n = max(nx, ny)
    bx, by = (n - nx) // 2, (n - ny) // 2
    padded = np.pad(image, ((bx, n - nx - bx), (by, n - ny - by)), constant_values=value)
    return padded, (slice(bx, bx + nx), slice(by, by + ny))


def _num_bins(n: int) -> int:
    """Detector bins scikit-image's ``radon(circle=False)`` uses for an n x n image (its padded diagonal)."""
    return n + int(math.ceil(math.sqrt(2.0) * n - n))


class _LineIntegrals:
    """Parallel-beam line integrals ``p(s, theta)`` of one square slice, sampled anywhere.

    Coordinates follow scikit-image: ``s = y cos(theta) - x sin(theta)`` in pixels of the full-resolution
    slice, measured from the rotation centre at pixel ``(n // 2, n // 2)`` (x = axis 0, y = axis 1),
    ``theta`` in degrees (any real value; ``p(s, theta + 180) = p(-s, theta)``).

    The sinogram is computed on a reduced grid (``_PMAP_MAX_PIXELS``, ``_PMAP_VIEWS``) and bilinearly
    interpolated; it only sets per-ray photon counts, so this costs little accuracy and most of the time.
    """

    def __init__(self, mu: np.ndarray, pixel_size_mm: float) -> None:
        n = mu.shape[0]
        f = max(1, int(math.ceil(n / _PMAP_MAX_PIXELS)))
        nc = int(math.ceil(n / f))
        padded = np.pad(mu, ((0, nc * f - n), (0, nc * f - n)))
        coarse = padded.reshape(nc, f, nc, f).mean(axis=(1, 3))
        self.views = _PMAP_VIEWS
        theta = np.arange(self.views) * (180.0 / self.views)
        # Each coarse pixel is f fine pixels wide: the ray sums are in coarse pixels, scale to mm.
        sino = radon(coarse, theta, circle=False, preserve_range=True) * (f * pixel_size_mm)
        nb = sino.shape[0]
        c = nb // 2
        # Append theta = 180 (= column 0 mirrored in s) so interpolation wraps around without a seam.
        mirrored = np.zeros(nb)
        idx = 2 * c - np.arange(nb)
        ok = (idx >= 0) & (idx < nb)
        mirrored[ok] = sino[idx[ok], 0]
        self.sino = np.concatenate([sino, mirrored[:, None]], axis=1)
        self.f = f
        self.center = c
        # Offset of the coarse rotation centre from the fine one (fine pixels, same on both axes): the coarse
        # centre pixel nc // 2 covers fine pixels [f * (nc // 2), f * (nc // 2) + f - 1].
        self.delta = f * (nc // 2) + (f - 1) / 2.0 - n // 2

    def __call__(self, s: np.ndarray, theta_deg: np.ndarray) -> np.ndarray:
        s, theta_deg = np.broadcast_arrays(np.asarray(s, float), np.asarray(theta_deg, float))
        t = np.deg2rad(theta_deg)
        sc = s - self.delta * (np.cos(t) - np.sin(t))
        theta_mod = np.mod(theta_deg, 360.0)
        back = theta_mod >= 180.0
        theta_mod = np.where(back, theta_mod - 180.0, theta_mod)
        sc = np.where(back, -sc, sc)
        rows = self.center + sc / self.f
        cols = theta_mod / (180.0 / self.views)
        # Rays outside the padded field of view see only air: p = 0.
        return ndimage.map_coordinates(self.sino, [rows.ravel(), cols.ravel()], order=1, mode="constant", cval=0.0).reshape(
            s.shape
        )


def _ray_noise(
    p: np.ndarray,
    dose_fraction: float,
    incident_flux: float,
    electronic_noise_var: float,
    noise_model: NoiseModel,
    rng: np.random.Generator,
) -> np.ndarray:
    """Noise ``p_low - p`` of each line integral ``p`` (any shape), for a scan at ``dose_fraction``.

    ``"poisson"``: the input is noise-free, the low-dose scan counts ``I = Poisson(k I0 e^-p) + N(0, s_e^2)``
    and ``p_low = -log(max(I, 1) / (k I0))``.
    ``"variance_matched"`` (Zeng et al. 2015): the input already carries the noise of dose 1, so only the
    missing variance is added, as zero-mean Gaussian noise on the line integral::

        var = (1 - k)/k * e^p / I0 * (1 + (1 + k)/k * s_e^2 * e^p / I0)

    which is var(dose k) - var(dose 1) to first order, electronic noise included.
    """
    k = dose_fraction
    if noise_model == "poisson":
        expected = k * incident_flux * np.exp(-p)
        counts = rng.poisson(expected).astype(np.float64)
        if electronic_noise_var > 0:
            counts += rng.normal(0.0, math.sqrt(electronic_noise_var), size=p.shape)
        # p_low - p = -log(I / (k I0)) - p = -log(I / expected)
        return -np.log(np.maximum(counts, _MIN_COUNTS) / expected)
    attenuation = np.exp(p) / incident_flux  # 1 / (full-dose photon count of the ray)
    var = (1.0 - k) / k * attenuation * (1.0 + (1.0 + k) / k * electronic_noise_var * attenuation)
    # Photon-starved rays (metal, long bone paths): the Gaussian model no longer holds and its variance
    # explodes; cap the SD at one e-fold of the reading, about what a starved Poisson reading can give.
    var = np.minimum(var, 1.0)
    return np.sqrt(var) * rng.standard_normal(p.shape)


class _SliceSimulator:
    """Everything about one slice that does not depend on the random draw: geometry and line integrals."""

    def __init__(
        self,
        image_hu: np.ndarray,
        *,
        geometry: Geometry,
        num_views: int | None,
        mu_water: float,
        pixel_size_mm: float,
        filter_name: str,
        source_distance_mm: float,
    ) -> None:
        mu, self.crop = _pad_square(hu_to_mu(image_hu, mu_water))
        n = mu.shape[0]
        self.n = n
        self.mu_water = mu_water
        self.pixel_size_mm = pixel_size_mm
        self.filter_name = filter_name
        self.geometry = geometry
        self.p = _LineIntegrals(mu, pixel_size_mm)
        views = default_num_views(n) if num_views is None else num_views
        nb = _num_bins(n)
        self.bins = nb
        self.theta = np.arange(views) * (180.0 / views)  # parallel views reconstructed by FBP
        s = (np.arange(nb) - nb // 2).astype(np.float64)
        if geometry == "parallel":
            self.ray_p = self.p(s[:, None], self.theta[None, :])
            return
        # Fan beam, equiangular detector, full rotation: the ray at fan angle gamma from source angle beta is
        # the parallel ray theta = beta + gamma, s = D sin(gamma) (all such rays meet at the source).
        d = source_distance_mm / pixel_size_mm
        radius = nb / 2.0  # _check_fan has made sure the source is outside
        self.d = d
        self.gamma_max = math.asin(radius / d)
        self.gamma = np.linspace(-self.gamma_max, self.gamma_max, nb)
        self.beta = np.arange(views) * (2.0 * math.pi / views)
        theta_fan = np.rad2deg(self.beta[None, :] + self.gamma[:, None])
        self.ray_p = self.p(d * np.sin(self.gamma)[:, None], theta_fan)

    def noise_hu(
        self,
        dose_fraction: float,
        incident_flux: float,
        electronic_noise_var: float,
        noise_model: NoiseModel,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """One noise image (HU, shape of the input slice) for a scan at ``dose_fraction``."""
        delta_p = _ray_noise(self.ray_p, dose_fraction, incident_flux, electronic_noise_var, noise_model, rng)
        if self.geometry == "fan":
            delta_p = self._rebin_to_parallel(delta_p)
        # FBP is linear, so FBP(p_low) - FBP(p) = FBP(p_low - p): one reconstruction of the noise alone.
        # iradon inverts radon in pixel units; divide by the pixel size to get 1/mm.
        delta_mu = iradon(delta_p, self.theta, output_size=self.n, filter_name=self.filter_name, circle=False)
        delta_mu /= self.pixel_size_mm
        return (1000.0 / self.mu_water) * delta_mu[self.crop]

    def _rebin_to_parallel(self, fan: np.ndarray) -> np.ndarray:
        """Resample a (gamma, beta) fan sinogram onto the (s, theta) parallel grid of the FBP.

        A full rotation measures each line twice -- (theta, s) and (theta + 180, -s) -- so both readings are
        interpolated and averaged, as a short-scan-free rebinning reconstruction would.
        """
        nb = self.bins
        s = (np.arange(nb) - nb // 2).astype(np.float64)
        gamma = np.arcsin(np.clip(s / self.d, -1.0, 1.0))[:, None]
        theta = np.deg2rad(self.theta)[None, :]
        dg = self.gamma[1] - self.gamma[0]
        db = self.beta[1] - self.beta[0]
        # Wrap beta by appending the first view after the last.
        wrapped = np.concatenate([fan, fan[:, :1]], axis=1)
        out = np.zeros((nb, self.theta.size))
        for g, b in ((gamma, theta - gamma), (-gamma, theta + math.pi + gamma)):
            rows = np.broadcast_to((g + self.gamma_max) / dg, out.shape)
            cols = np.broadcast_to(np.mod(b, 2.0 * math.pi) / db, out.shape)
            out += ndimage.map_coordinates(wrapped, [rows.ravel(), cols.ravel()], order=1, mode="nearest").reshape(
                out.shape
            )
        return 0.5 * out


def _validate_sim_args(
    geometry: str,
    num_views: int | None,
    incident_flux: float,
    electronic_noise_var: float,
    mu_water: float,
    pixel_size_mm: float,
    noise_model: str,
    filter_name: str,
    source_distance_mm: float,
    method: str = "reference",
) -> None:
    if method not in ("auto", "sector", "projection", "reference"):
        raise InputError(f"method must be 'auto', 'sector', 'projection' or 'reference', got {method!r}.")
    if geometry not in ("parallel", "fan"):
        raise InputError(f"geometry must be 'parallel' or 'fan', got {geometry!r}.")
    if noise_model not in ("variance_matched", "poisson"):
        raise InputError(
            f"noise_model must be 'variance_matched' (input is a real full-dose scan) or 'poisson' "
            f"(input is noise-free), got {noise_model!r}."
        )
    if filter_name not in _FILTERS:
        raise InputError(f"filter_name must be one of {_FILTERS}, got {filter_name!r}.")
    if num_views is not None and (int(num_views) != num_views or num_views < 16):
        raise InputError(f"num_views must be an integer >= 16 or None (automatic), got {num_views!r}.")
    _check_positive(incident_flux, "incident_flux", "It is the number of photons per detector bin per view at full dose (1e5..1e6).")
    if not (math.isfinite(float(electronic_noise_var)) and electronic_noise_var >= 0):
        raise InputError(f"electronic_noise_var must be >= 0 (photons^2, about 10), got {electronic_noise_var}.")
    _check_positive(mu_water, "mu_water", "Use about 0.0192 (1/mm) for water at 70 keV.")
    _check_positive(pixel_size_mm, "pixel_size_mm", "Take it from the image header (e.g. PixelSpacing).")
    _check_positive(source_distance_mm, "source_distance_mm", "Use the source-to-isocentre distance, about 595 mm.")


def _check_fan(geometry: str, image: np.ndarray, source_distance_mm: float, pixel_size_mm: float, method: str) -> None:
    """Refuse a fan-beam source inside the field of view of the (squared) slice, corners included."""
    if geometry == "fan" and method == "sector":
        raise InputError("method 'sector' is for parallel beam only; use method='projection' or 'auto' for fan beam.")
    radius = _num_bins(max(image.shape[:2])) / 2.0
    if geometry == "fan" and source_distance_mm / pixel_size_mm <= radius * 1.05:
        raise InputError(
            f"source_distance_mm={source_distance_mm} puts the source inside the field of view "
            f"(radius {radius * pixel_size_mm:.0f} mm incl. corners); use a larger source distance "
            "(clinical scanners: about 500-650 mm) or check pixel_size_mm."
        )


def _check_batch(batch_size: int) -> int:
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer (slices simulated at once), got {batch_size!r}.")
    return int(batch_size)


def _run_slices(image: np.ndarray, work: Callable[[np.ndarray, int], np.ndarray], progress: ProgressArg) -> np.ndarray:
    """Apply ``work(slice, index)`` to a 2D slice or to each axial slice ``vol[:, :, k]`` of a volume."""
    if image.ndim == 2:
        step = _report(progress, 1)
        out = work(image, 0)
        step(1)
        return out
    nz = image.shape[2]
    step = _report(progress, nz)
    out = np.empty(image.shape, dtype=np.float32)
    for k in range(nz):
        out[:, :, k] = work(image[:, :, k], k)
        step(k + 1)
    return out


# ----------------------------------------------------------------------------------------------------------
# fast batched path (torch)
# ----------------------------------------------------------------------------------------------------------


def _resolve(method: str, device: torch.device, geometry: str) -> str:
    if method == "auto":
        return "projection" if device.type == "cuda" or geometry == "fan" else "sector"
    return method


def _generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        gens.append(g)
    return gens


def simulate_low_dose_torch(
    image_hu: torch.Tensor,
    dose_fraction: float | torch.Tensor,
    *,
    seeds: Sequence[int],
    incident_flux: float = 1e5,
    electronic_noise_var: float = 10.0,
    geometry: Geometry = "parallel",
    num_views: int | None = None,
    mu_water: float = MU_WATER_PER_MM,
    pixel_size_mm: float = 0.7,
    noise_model: NoiseModel = "variance_matched",
    filter_name: str = "ramp",
    source_distance_mm: float = 595.0,
    method: Method = "auto",
) -> torch.Tensor:
    """:func:`simulate_low_dose` of a batch of slices as a tensor, on the tensor's device (no validation of HU).

    Args:
        image_hu: ``(B, X, Y)`` slices in HU, any float dtype, CPU or CUDA.
        dose_fraction: one dose fraction in (0, 1] or a ``(B,)`` tensor of one per slice.
        seeds: one integer seed per slice (the noise of a slice depends only on its seed and its image).
        method: ``"auto"``, ``"sector"`` or ``"projection"`` (``"reference"`` is numpy-only).
        others: as :func:`simulate_low_dose`, already validated by the caller.

    Returns:
        ``(B, X, Y)`` float32 HU on the input's device.
    """
    from ldct_clip.simulation.fast import noise_hu_batch

    x = image_hu.to(torch.float32)
    b, nx, ny = x.shape
    n = max(nx, ny)
    bx, by = (n - nx) // 2, (n - ny) // 2
    mu = torch.clamp(mu_water * (1.0 + x / 1000.0), min=0.0)
    mu = torch.nn.functional.pad(mu, (by, n - ny - by, bx, n - nx - bx))  # air around a non-square slice
    k = torch.as_tensor(dose_fraction, dtype=torch.float32, device=x.device).reshape(-1).expand(b)
    views = default_num_views(n) if num_views is None else int(num_views)
    noise = noise_hu_batch(
        mu, k, method=_resolve(method, x.device, geometry), views=views, incident_flux=float(incident_flux),
        electronic_noise_var=float(electronic_noise_var), noise_model=noise_model, geometry=geometry,
        pixel_size_mm=float(pixel_size_mm), mu_water=float(mu_water), filter_name=filter_name,
        source_distance_mm=float(source_distance_mm), generators=_generators(seeds, x.device),
    )[:, bx : bx + nx, by : by + ny]
    if noise_model == "variance_matched":
        noise = torch.where((k == 1.0).reshape(-1, 1, 1), torch.zeros_like(noise), noise)
    return x + noise


def _fast_slices(
    image: np.ndarray, seeds: Sequence[int], progress: ProgressArg, batch_size: int, device: torch.device, **kw
) -> np.ndarray:
    """Run :func:`simulate_low_dose_torch` over a slice ``(X, Y)`` or the axial slices of ``(X, Y, Z)``."""
    planes = image[None] if image.ndim == 2 else np.moveaxis(image, 2, 0)
    step = _report(progress, planes.shape[0])
    out = np.empty(planes.shape, dtype=np.float32)
    for z0 in range(0, planes.shape[0], batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(planes[z0 : z0 + batch_size], dtype=np.float32)).to(device)
        out[z0 : z0 + batch_size] = simulate_low_dose_torch(chunk, seeds=seeds[z0 : z0 + batch_size], **kw).cpu().numpy()
        for done in range(z0 + 1, min(planes.shape[0], z0 + batch_size) + 1):
            step(done)  # per slice, as the reference path
    return out[0] if image.ndim == 2 else np.moveaxis(out, 0, 2)


def _torch_seeds(seed: int | None, n: int, streams: int = 1) -> list[list[int]]:
    """Per-slice (and per-stream) integer seeds from the slice's child :class:`np.random.SeedSequence`."""
    children = np.random.SeedSequence(seed).spawn(n)
    return [[int(c.generate_state(1, np.uint64)[0] >> 1) for c in child.spawn(streams)] for child in children]


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}.") from exc


# ----------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------


def simulate_low_dose(
    image_hu: np.ndarray,
    dose_fraction: float,
    *,
    incident_flux: float = 1e5,
    electronic_noise_var: float = 10.0,
    geometry: Geometry = "parallel",
    num_views: int | None = None,
    mu_water: float = MU_WATER_PER_MM,
    pixel_size_mm: float = 0.7,
    noise_model: NoiseModel = "variance_matched",
    filter_name: str = "ramp",
    source_distance_mm: float = 595.0,
    seed: int | None = None,
    progress: ProgressArg = None,
    method: Method = "auto",
    device: str | torch.device | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Simulate a scan at ``dose_fraction`` times the dose of ``image_hu`` by projection-domain noise insertion.

    Per axial slice:

    1. HU to linear attenuation ``mu = mu_water * (1 + HU/1000)`` (1/mm, clipped at 0), zero (air) outside
       the slice; the slice is padded to its circumscribed circle so that the corners are projected too.
    2. Forward projection to line integrals ``p`` (dimensionless: 1/mm times mm, hence the pixel size).
    3. Noise per detector reading, for the photon count ``N = I0 * exp(-p)`` of the full-dose scan
       (``noise_model``, below).
    4. Filtered back-projection (``filter_name``, scikit-image ``iradon``) of the *noise only*,
       ``FBP(p_low) - FBP(p) = FBP(p_low - p)``, converted to HU and added to the input.

    Adding only the noise difference leaves the input's resolution and HU values untouched: no
    reconstruction blur or discretisation bias of the simulator's own FBP ends up in the output, only
    noise with FBP texture (correlated, with a noise power spectrum that vanishes at zero frequency) and
    the right spatial variation (more noise behind bone and in the centre of large bodies).

    Noise models
    ------------
    ``"variance_matched"`` (default; Zeng et al. 2015, Yu et al. 2012): ``image_hu`` is a real full-dose
    scan acquired with ``incident_flux`` and already contains the noise of dose 1.  Only the missing
    variance is added (zero-mean Gaussian on each line integral)::

        var_added = var(dose k) - var(dose 1) = (1/k - 1) e^p / I0  +  (1/k^2 - 1) s_e^2 e^(2p) / I0^2

    so the *added* noise SD scales as ``sqrt(1/k - 1)`` (quantum-limited), the *total* noise SD of the
    output as ``1/sqrt(k)``, and ``dose_fraction = 1`` returns the input unchanged.  For low doses
    ``sqrt(1/k - 1)`` approaches ``1/sqrt(k)`` (within 3 % for k <= 1/16).
    ``"poisson"``: ``image_hu`` is noise-free.  The low-dose readings are
    ``I = Poisson(k I0 e^-p) + N(0, s_e^2)``, ``p_low = -log(max(I, 1) / (k I0))``; the added noise SD
    scales as ``1/sqrt(k)`` (quantum-limited) and ``dose_fraction = 1`` adds full-dose noise.  Applied to a
    real scan it overestimates the total noise by the input's own noise (variance ``(1 + k)/k`` instead of
    ``1/k`` times the full-dose variance).

    Args:
        image_hu: slice ``(X, Y)`` or volume ``(X, Y, Z)`` in HU (axial slices ``vol[:, :, k]``).
        dose_fraction: simulated dose relative to the input's, in (0, 1] (0.25 = quarter dose).
        incident_flux: photons per detector bin per view at full dose (``I0``; clinical about 1e5 to 1e6).
            The image noise variance scales as ``1 / (incident_flux * num_views)``.
        electronic_noise_var: variance of the detector's electronic noise, photons^2 (about 10).
        geometry: ``"parallel"`` (views over 180 degrees) or ``"fan"`` (equiangular fan beam, full 360-degree
            rotation, rebinned to parallel beam before FBP).  With the same ``num_views`` both use the same
            number of readings, so their noise levels are comparable.
        num_views: projection views; default :func:`default_num_views` (720 for 512 pixels).
        mu_water: attenuation of water in 1/mm.
        pixel_size_mm: in-plane pixel spacing in mm (square pixels; same as the detector bin pitch).
        noise_model: ``"variance_matched"`` or ``"poisson"``, see above.
        filter_name: FBP filter, one of ``"ramp"``, ``"shepp-logan"``, ``"cosine"``, ``"hamming"``, ``"hann"``;
            smoother filters move the noise power to lower frequencies, like softer reconstruction kernels.
        source_distance_mm: source-to-isocentre distance of the fan-beam geometry (mm).
        seed: seed of ``np.random.default_rng``; slices draw from independent child streams, so a result
            is reproducible for an integer seed (``None``: fresh entropy).
        progress: ``callable(done, total)`` called after each slice (or batch of slices), ``True`` for a tqdm
            bar, or ``None``.
        method: ``"auto"`` (default: ``"projection"`` on CUDA and for fan beam, ``"sector"`` otherwise), ``"sector"``,
            ``"projection"`` (the fast batched torch paths of :mod:`ldct_clip.simulation.fast`) or
            ``"reference"`` (scikit-image, one slice at a time).  The paths draw different random numbers for
            the same seed; their noise has the same statistics (tests/test_fast_simulation.py).
        device: torch device of the fast paths (default: CUDA when available, else CPU).
        batch_size: slices simulated at once by the fast paths.

    Returns:
        float32 array of the input's shape, HU.

    Raises:
        InputError: dose_fraction outside (0, 1], an array that is not 2D or 3D, non-finite values, or
            invalid parameters.

    Notes:
        The line integrals only set the photon count (noise variance) of each ray; they are computed on a
        grid of at most 256 pixels and 180 views and interpolated, which keeps a 512 x 512 slice at about
        2 s on one core (the noise itself is drawn and reconstructed at full resolution).  Beam hardening,
        scatter, bowtie filters and tube-current modulation are not modelled.
    """
    image = _as_image(image_hu)
    k = _check_dose_fraction(dose_fraction)
    _validate_sim_args(
        geometry, num_views, incident_flux, electronic_noise_var, mu_water, pixel_size_mm, noise_model, filter_name,
        source_distance_mm, method,
    )
    _check_fan(geometry, image, source_distance_mm, pixel_size_mm, method)
    nz = 1 if image.ndim == 2 else image.shape[2]
    if method != "reference":
        if k == 1.0 and noise_model == "variance_matched":
            return image.astype(np.float32)
        seeds = [s[0] for s in _torch_seeds(seed, nz)]
        return _fast_slices(
            image, seeds, progress, _check_batch(batch_size), _device(device), dose_fraction=k,
            incident_flux=incident_flux, electronic_noise_var=electronic_noise_var, geometry=geometry,
            num_views=num_views, mu_water=mu_water, pixel_size_mm=pixel_size_mm, noise_model=noise_model,
            filter_name=filter_name, source_distance_mm=source_distance_mm, method=method,
        )
    rngs = _slice_seeds(seed, nz)

    def work(slice_hu: np.ndarray, index: int) -> np.ndarray:
        if k == 1.0 and noise_model == "variance_matched":
            return slice_hu.astype(np.float32)  # nothing is missing from a full-dose scan
        sim = _SliceSimulator(
            slice_hu,
            geometry=geometry,
            num_views=num_views,
            mu_water=mu_water,
            pixel_size_mm=pixel_size_mm,
            filter_name=filter_name,
            source_distance_mm=source_distance_mm,
        )
        noise = sim.noise_hu(k, incident_flux, electronic_noise_var, noise_model, rngs[index][0])
        return (slice_hu + noise).astype(np.float32)

    return _run_slices(image, work, progress)


def simulate_dose_pair(
    clean_hu: np.ndarray,
    dose_fraction: float,
    *,
    incident_flux: float = 1e5,
    electronic_noise_var: float = 10.0,
    geometry: Geometry = "parallel",
    num_views: int | None = None,
    mu_water: float = MU_WATER_PER_MM,
    pixel_size_mm: float = 0.7,
    filter_name: str = "ramp",
    source_distance_mm: float = 595.0,
    seed: int | None = None,
    progress: ProgressArg = None,
    method: Method = "auto",
    device: str | torch.device | None = None,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """A (low-dose, normal-dose) pair from a noise-free image, built the way paired CT datasets are.

    The normal-dose image is ``clean_hu`` plus full-dose noise (``noise_model="poisson"``, dose 1); the
    low-dose image is that normal-dose image plus the variance-matched extra noise of ``dose_fraction``
    (as the Mayo low-dose data were made from the full-dose projections).  So the two share their
    full-dose noise, the low-dose total noise SD is ``1/sqrt(k)`` times the normal-dose one, and each slice
    is projected only once (reference) or twice (fast paths).  Arguments are those of :func:`simulate_low_dose`.

    Returns:
        ``(ldct_hu, ndct_hu)``: float32 arrays of the input's shape, HU.
    """
    image = _as_image(clean_hu, "clean_hu")
    k = _check_dose_fraction(dose_fraction)
    _validate_sim_args(
        geometry, num_views, incident_flux, electronic_noise_var, mu_water, pixel_size_mm, "poisson", filter_name,
        source_distance_mm, method,
    )
    _check_fan(geometry, image, source_distance_mm, pixel_size_mm, method)
    nz = 1 if image.ndim == 2 else image.shape[2]
    if method != "reference":
        streams = _torch_seeds(seed, nz, streams=2)
        kw = dict(incident_flux=incident_flux, electronic_noise_var=electronic_noise_var, geometry=geometry,
                  num_views=num_views, mu_water=mu_water, pixel_size_mm=pixel_size_mm, filter_name=filter_name,
                  source_distance_mm=source_distance_mm, method=method)
        batch, dev = _check_batch(batch_size), _device(device)
        normal = _fast_slices(image, [s[0] for s in streams], None, batch, dev, dose_fraction=1.0,
                              noise_model="poisson", **kw)
        if k == 1.0:
            _report(progress, nz)(nz)
            return normal.copy(), normal
        # the extra noise is set by the clean image's rays, as in the reference (one projection of each slice)
        extra = _fast_slices(image, [s[1] for s in streams], progress, batch, dev, dose_fraction=k,
                             noise_model="variance_matched", **kw) - image.astype(np.float32)
        return (normal + extra).astype(np.float32), normal
    rngs = _slice_seeds(seed, nz, streams=2)
    normal = np.empty(image.shape, dtype=np.float32)

    def work(slice_hu: np.ndarray, index: int) -> np.ndarray:
        sim = _SliceSimulator(
            slice_hu,
            geometry=geometry,
            num_views=num_views,
            mu_water=mu_water,
            pixel_size_mm=pixel_size_mm,
            filter_name=filter_name,
            source_distance_mm=source_distance_mm,
        )
        nd = slice_hu + sim.noise_hu(1.0, incident_flux, electronic_noise_var, "poisson", rngs[index][0])
        if image.ndim == 2:
            normal[...] = nd
        else:
            normal[:, :, index] = nd
        if k == 1.0:
            return nd.astype(np.float32)
        extra = sim.noise_hu(k, incident_flux, electronic_noise_var, "variance_matched", rngs[index][1])
        return (nd + extra).astype(np.float32)

    low = _run_slices(image, work, progress)
    return low, normal


def add_gaussian_noise(
    image_hu: np.ndarray,
    sigma_255: float,
    *,
    hu_window: Sequence[float] = (-1024.0, 3072.0),
    seed: int | None = None,
) -> np.ndarray:
    """The paper's training noise: i.i.d. Gaussian noise of ``sigma_255 / 255`` on the [0, 1]-normalised image.

    The image is normalised as ``(HU - lo) / (hi - lo)`` with ``hu_window = (lo, hi)``, so the noise SD in HU
    is ``sigma_255 / 255 * (hi - lo)``: 5/255 on the default window [-1024, 3072] is about 80 HU.  Nothing is
    clipped (the paper adds the noise to the unclipped normalised image).

    Args:
        image_hu: array of any shape in HU (a slice ``(X, Y)`` or volume ``(X, Y, Z)``).
        sigma_255: noise SD in units of 1/255 of the window (the paper uses 5 for 1 mm CT slices).
        hu_window: ``(lo, hi)`` HU mapped to [0, 1].
        seed: seed of ``np.random.default_rng``.

    Returns:
        float32 array of the input's shape, HU.
    """
    arr = np.asarray(image_hu)
    if arr.ndim == 0 or arr.size == 0:
        raise InputError(f"image_hu must be a non-empty array in HU, got shape {arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"image_hu must hold real numbers (HU), got dtype {arr.dtype}.")
    sigma = float(sigma_255)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise InputError(f"sigma_255 must be a finite number >= 0 (e.g. 5 for the paper's CT noise), got {sigma_255}.")
    if len(hu_window) != 2 or not float(hu_window[1]) > float(hu_window[0]):
        raise InputError(f"hu_window must be (lo, hi) with lo < hi, got {tuple(hu_window)}.")
    sd_hu = sigma / 255.0 * (float(hu_window[1]) - float(hu_window[0]))
    rng = np.random.default_rng(seed)
    noisy = arr.astype(np.float64) + sd_hu * rng.standard_normal(arr.shape)
    return noisy.astype(np.float32)
