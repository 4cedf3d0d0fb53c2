"""The reference low-dose CT simulator: projection-domain noise insertion in numpy and scikit-image, one slice
at a time (Zeng et al. 2015, Yu et al. 2012).

The slice is forward projected to line integrals, quantum (Poisson) and electronic (Gaussian) noise of a lower
tube current is drawn per detector reading, and only the *noise* is filtered back-projected and added to the
input.  The result has the correlated noise texture of filtered back-projection (a noise power spectrum that
vanishes at zero frequency), streaks along strongly attenuating paths, and more noise in the centre of large
patients -- none of which i.i.d. Gaussian noise has.  :mod:`ldct_clip.simulation.fast` is its batched torch twin;
:func:`ldct_clip.simulation.low_dose.simulate_low_dose` runs either over a volume.

Arrays: a slice ``(X, Y)`` in HU (x = axis 0, y = axis 1); outputs float64 HU.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.transform import iradon, radon

from ldct_clip.simulation.protocol import MU_WATER_PER_MM, NoiseModel, ScanProtocol, detector_bins

__all__ = ["SliceSimulator", "hu_to_mu"]

# The line integrals only set the photon count -- hence the noise variance -- of each ray, and that varies
# smoothly.  They are therefore computed on a grid of at most this many pixels and views and interpolated:
# scikit-image's radon costs about 7 s for a 512 x 512 slice at 720 views, 0.4 s on this grid.
_PMAP_MAX_PIXELS = 256
_PMAP_VIEWS = 180

# Smallest detector reading kept before the log (photons): readings at or below zero (photon starvation
# plus electronic noise) would give an infinite line integral.
_MIN_COUNTS = 1.0


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


class SliceSimulator:
    """Everything about one slice that does not depend on the random draw: geometry and line integrals.

    Args:
        image_hu: one slice ``(X, Y)`` in HU (float64, finite).
        protocol: the scan (geometry, views, attenuation of water, pixel size, filter, source distance); its
            ``check_fits`` has accepted the slice's size.
    """

    def __init__(self, image_hu: np.ndarray, protocol: ScanProtocol) -> None:
        mu, self.crop = _pad_square(hu_to_mu(image_hu, protocol.mu_water))
        n = mu.shape[0]
        self.n = n
        self.protocol = protocol
        self.mu_water = protocol.mu_water
        self.pixel_size_mm = protocol.pixel_size_mm
        self.filter_name = protocol.filter_name
        self.geometry = protocol.geometry
        self.p = _LineIntegrals(mu, protocol.pixel_size_mm)
        views = protocol.views_for(n)
        nb = detector_bins(n)
        self.bins = nb
        self.theta = np.arange(views) * (180.0 / views)  # parallel views reconstructed by FBP
        s = (np.arange(nb) - nb // 2).astype(np.float64)
        if self.geometry == "parallel":
            self.ray_p = self.p(s[:, None], self.theta[None, :])
            return
        # Fan beam, equiangular detector, full rotation: the ray at fan angle gamma from source angle beta is
        # the parallel ray theta = beta + gamma, s = D sin(gamma) (all such rays meet at the source).
        d = protocol.source_distance_mm / protocol.pixel_size_mm
        radius = nb / 2.0  # check_fits has made sure the source is outside
        self.d = d
        self.gamma_max = math.asin(radius / d)
        self.gamma = np.linspace(-self.gamma_max, self.gamma_max, nb)
        self.beta = np.arange(views) * (2.0 * math.pi / views)
        theta_fan = np.rad2deg(self.beta[None, :] + self.gamma[:, None])
        self.ray_p = self.p(d * np.sin(self.gamma)[:, None], theta_fan)

    def noise_hu(self, dose_fraction: float, noise_model: NoiseModel, rng: np.random.Generator) -> np.ndarray:
        """One noise image (HU, shape of the input slice) for a scan at ``dose_fraction`` under ``noise_model``
        (which may differ from the protocol's: a dose pair draws both models from one projection)."""
        delta_p = _ray_noise(self.ray_p, dose_fraction, self.protocol.incident_flux,
                             self.protocol.electronic_noise_var, noise_model, rng)
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

