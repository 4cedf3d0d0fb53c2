"""Low-dose simulation: noise scaling with dose, no HU bias, CT-like noise texture, Gaussian noise, inputs."""

from __future__ import annotations

import numpy as np
import pytest

from ldct_clip.errors import InputError
from ldct_clip.metrics import noise_power_spectrum, radial_nps
from ldct_clip.simulation.gaussian import add_gaussian_noise
from ldct_clip.simulation.low_dose import simulate_low_dose
from ldct_clip.simulation.pairs import simulate_dose_pair

N = 128
PIXEL_MM = 1.5
CENTRE = (slice(N // 2 - 20, N // 2 + 20), slice(N // 2 - 20, N // 2 + 20))


def water_cylinder(n: int = N, radius_mm: float = 80.0, pixel_mm: float = PIXEL_MM, slices: int = 0) -> np.ndarray:
    """0 HU disc in -1000 HU air; a (n, n) slice, or (n, n, slices)."""
    x = (np.arange(n) - (n - 1) / 2.0) * pixel_mm
    img = np.where(x[:, None] ** 2 + x[None, :] ** 2 <= radius_mm**2, 0.0, -1000.0)
    return np.repeat(img[:, :, None], slices, axis=2) if slices else img


def added_noise(dose: float, seed: int, slices: int = 4, **kw) -> np.ndarray:
    """Noise added inside the cylinder's central 40 x 40 region, (40, 40, slices)."""
    img = water_cylinder(slices=slices)
    out = simulate_low_dose(img, dose, pixel_size_mm=PIXEL_MM, seed=seed, **kw)
    return (out - img)[CENTRE]


def test_poisson_added_noise_scales_as_inverse_sqrt_dose():
    sd_quarter = added_noise(0.25, seed=1, noise_model="poisson").std()
    sd_sixteenth = added_noise(0.0625, seed=2, noise_model="poisson").std()
    assert sd_sixteenth / sd_quarter == pytest.approx(2.0, rel=0.10)


def test_variance_matched_added_noise_scales_as_sqrt_inverse_dose_minus_one():
    sd = {k: added_noise(k, seed=i).std() for i, k in enumerate((0.25, 0.0625, 0.015625))}
    # the law implemented: SD of the added noise proportional to sqrt(1/k - 1) ...
    assert sd[0.0625] / sd[0.25] == pytest.approx(np.sqrt(15 / 3), rel=0.10)
    # ... which is 1/sqrt(k) to within a few per cent at low doses
    assert sd[0.015625] / sd[0.0625] == pytest.approx(2.0, rel=0.10)


@pytest.mark.parametrize("noise_model, dose", [("poisson", 1.0), ("variance_matched", 0.25)])
def test_noise_level_matches_fbp_theory(noise_model, dose):
    # Centre of a 160 mm water cylinder: every ray has p = mu_w * 160 mm.  For parallel-beam FBP with the
    # discrete ramp filter and linear interpolation, var(mu) = pi^2 var(p) / (12 V tau^2) * (2/3 - 2/pi^2)
    # (ramp-filtered noise has lag-1 correlation -6/pi^2).  Catches errors of units, pixel size and flux.
    img = water_cylinder(slices=8)
    out = simulate_low_dose(img, dose, pixel_size_mm=PIXEL_MM, seed=0, noise_model=noise_model)
    c = N // 2
    sd = (out - img)[c - 5 : c + 5, c - 5 : c + 5].std()
    counts, e_var, k = 1e5 * np.exp(-0.0192 * 160.0), 10.0, dose
    if noise_model == "poisson":
        var_p = (counts + e_var) / counts**2
    else:
        var_p = (1 / k - 1) / counts * (1 + (1 + k) / k * e_var / counts)
    views, tau = 180, PIXEL_MM  # default views for 128 pixels
    var_mu = np.pi**2 * var_p / (12 * views * tau**2) * (2 / 3 - 2 / np.pi**2)
    assert sd == pytest.approx(1000.0 / 0.0192 * np.sqrt(var_mu), rel=0.10)


def test_variance_matched_full_dose_returns_input_unchanged():
    img = water_cylinder()
    np.testing.assert_array_equal(simulate_low_dose(img, 1.0, pixel_size_mm=PIXEL_MM, seed=0), img.astype(np.float32))


def test_dose_pair_total_noise_scales_as_inverse_sqrt_dose():
    # Normal dose = clean + full-dose Poisson noise; low dose adds the variance-matched remainder, so the total
    # low-dose noise must be what a direct quarter-dose scan gives: 2x the normal-dose SD.
    clean = water_cylinder(slices=4)
    low, normal = simulate_dose_pair(clean, 0.25, pixel_size_mm=PIXEL_MM, seed=5)
    ratio = (low - clean)[CENTRE].std() / (normal - clean)[CENTRE].std()
    assert ratio == pytest.approx(2.0, rel=0.10)
    direct = simulate_low_dose(clean, 0.25, pixel_size_mm=PIXEL_MM, seed=6, noise_model="poisson")
    assert (low - clean)[CENTRE].std() == pytest.approx((direct - clean)[CENTRE].std(), rel=0.10)


@pytest.mark.parametrize("noise_model", ["variance_matched", "poisson"])
@pytest.mark.parametrize("geometry", ["parallel", "fan"])
def test_no_mean_hu_bias_in_water(noise_model, geometry):
    noise = added_noise(0.25, seed=3, noise_model=noise_model, geometry=geometry)
    assert abs(noise.mean()) < 2.0
    assert noise.std() > 5.0  # there is noise to be unbiased about


def low_to_mid_nps_ratio(rois: np.ndarray) -> float:
    """Mean radial NPS below 0.05/mm (zero frequency excluded) over the mean in 0.1..0.25/mm."""
    f, nps = radial_nps(*noise_power_spectrum(rois, PIXEL_MM))
    low = nps[(f > 0) & (f < 0.05)].mean()
    mid = nps[(f >= 0.1) & (f <= 0.25)].mean()
    return float(low / mid)


def test_noise_is_spatially_correlated_like_fbp():
    img = water_cylinder(slices=8)
    noise = simulate_low_dose(img, 0.25, pixel_size_mm=PIXEL_MM, seed=4) - img
    c = N // 2
    rois = np.moveaxis(noise[c - 32 : c + 32, c - 32 : c + 32], 2, 0)  # (8, 64, 64) inside the cylinder
    # FBP noise: power vanishes towards zero frequency and rises to mid frequencies (ramp filter).
    assert low_to_mid_nps_ratio(rois) < 0.35
    # i.i.d. Gaussian noise is flat under the same estimator: the contrast above is the simulation's.
    white = add_gaussian_noise(np.zeros((8, 64, 64)), 5.0, seed=0)
    assert low_to_mid_nps_ratio(white) > 0.7


def test_fan_beam_noise_same_order_as_parallel():
    parallel = added_noise(0.25, seed=7).std()
    fan = added_noise(0.25, seed=7, geometry="fan").std()
    assert 0.3 < fan / parallel < 1.5


def test_noise_is_larger_behind_more_attenuation():
    # Quantum noise grows with the line integral: the centre of a larger cylinder is noisier.
    small = water_cylinder(radius_mm=50.0)
    large = water_cylinder(radius_mm=90.0)
    sd_small = (simulate_low_dose(small, 0.25, pixel_size_mm=PIXEL_MM, seed=1) - small)[CENTRE].std()
    sd_large = (simulate_low_dose(large, 0.25, pixel_size_mm=PIXEL_MM, seed=1) - large)[CENTRE].std()
    assert sd_large > 1.5 * sd_small


def test_volume_reproducible_and_slices_independent():
    vol = water_cylinder(slices=3)
    a = simulate_low_dose(vol, 0.25, pixel_size_mm=PIXEL_MM, seed=11)
    b = simulate_low_dose(vol, 0.25, pixel_size_mm=PIXEL_MM, seed=11)
    c = simulate_low_dose(vol, 0.25, pixel_size_mm=PIXEL_MM, seed=12)
    assert a.shape == vol.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a[:, :, 0], a[:, :, 1])  # each slice draws its own noise
    # A slice on its own gets the same noise as the first slice of a volume with the same seed.
    np.testing.assert_array_equal(simulate_low_dose(vol[:, :, 0], 0.25, pixel_size_mm=PIXEL_MM, seed=11), a[:, :, 0])


def test_non_square_slice_and_progress_callback():
    img = water_cylinder()[:, 16:112]
    calls = []
    out = simulate_low_dose(
        np.repeat(img[:, :, None], 2, axis=2), 0.5, pixel_size_mm=PIXEL_MM, seed=0, progress=lambda d, t: calls.append((d, t))
    )
    assert out.shape == (N, 96, 2)
    assert calls == [(1, 2), (2, 2)]


def test_gaussian_noise_sigma_5_is_about_80_hu():
    img = np.zeros((256, 256, 2), dtype=np.float32)
    noisy = add_gaussian_noise(img, 5.0, seed=0)
    assert noisy.shape == img.shape and noisy.dtype == np.float32
    assert noisy.std() == pytest.approx(5 / 255 * 4096, rel=0.02)  # 80.3 HU
    assert abs(noisy.mean()) < 1.0
    np.testing.assert_array_equal(noisy, add_gaussian_noise(img, 5.0, seed=0))
    narrow = add_gaussian_noise(img, 5.0, hu_window=(-160.0, 240.0), seed=0)
    assert narrow.std() == pytest.approx(5 / 255 * 400, rel=0.02)


@pytest.mark.parametrize("dose", [0.0, -0.25, 1.5, float("nan")])
def test_bad_dose_fraction_raises(dose):
    with pytest.raises(InputError, match="dose_fraction"):
        simulate_low_dose(water_cylinder(), dose)


@pytest.mark.parametrize("shape", [(64,), (2, 64, 64, 2)])
def test_wrong_ndim_raises(shape):
    with pytest.raises(InputError, match="2D slice"):
        simulate_low_dose(np.zeros(shape), 0.25)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(geometry="cone"), "geometry"),
        (dict(noise_model="gaussian"), "noise_model"),
        (dict(incident_flux=0), "incident_flux"),
        (dict(pixel_size_mm=-1.0), "pixel_size_mm"),
        (dict(num_views=3), "num_views"),
        (dict(filter_name="lanczos"), "filter_name"),
        (dict(geometry="fan", source_distance_mm=50.0), "source"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(InputError, match=match):
        simulate_low_dose(water_cylinder(), 0.25, **kwargs)


def test_non_finite_image_raises():
    img = water_cylinder()
    img[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        simulate_low_dose(img, 0.25)


def test_gaussian_noise_bad_inputs_raise():
    with pytest.raises(InputError):
        add_gaussian_noise(np.zeros((8, 8)), -1.0)
    with pytest.raises(InputError):
        add_gaussian_noise(np.zeros((8, 8)), 5.0, hu_window=(100.0, -100.0))
