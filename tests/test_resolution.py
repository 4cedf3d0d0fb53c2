"""TTF and NPS on cases with known answers: a disk blurred by a known Gaussian, white and filtered noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from ldct_clip.errors import InputError
from ldct_clip.metrics.noise import noise_power_spectrum, nps_summary, radial_nps
from ldct_clip.metrics.resolution import crossing_frequency, task_transfer_function


def blurred_disk(size: int, px: float, radius_mm: float, contrast: float, sigma_mm: float, centre=None):
    """A disk drawn at 8x supersampling (area-averaged pixels), blurred by a Gaussian of SD ``sigma_mm``."""
    ss = 8
    centre = ((size - 1) / 2.0, (size - 1) / 2.0) if centre is None else centre
    fine = (np.arange(size * ss) + 0.5) / ss - 0.5
    di = fine[:, None] - centre[0]
    dj = fine[None, :] - centre[1]
    disk = (np.hypot(di, dj) * px <= radius_mm).astype(np.float64)
    disk = disk.reshape(size, ss, size, ss).mean(axis=(1, 3)) * contrast
    return ndimage.gaussian_filter(disk, sigma_mm / px, mode="constant"), centre


@pytest.mark.parametrize("contrast", [-1000.0, 120.0, 990.0])
def test_ttf_of_a_gaussian_blurred_disk_is_the_gaussians_transform(contrast):
    px, sigma = 0.5, 0.6
    image, centre = blurred_disk(160, px, 10.0, contrast, sigma, centre=(80.3, 79.6))
    res = task_transfer_function(image + 40.0, centre, 10.0, px)
    expected = np.exp(-2.0 * math.pi**2 * sigma**2 * res.f**2)
    band = res.f <= 1.0 / (2.0 * px) * 0.8  # below Nyquist, where the pixel's own sampling matters little
    # the pixel aperture (0.5 mm box) multiplies in a sinc: compare with that included
    expected_pixel = expected * np.abs(np.sinc(res.f * px))
    np.testing.assert_allclose(res.ttf[band], expected_pixel[band], atol=0.03)
    f50 = math.sqrt(math.log(2.0) / (2 * math.pi**2 * sigma**2))
    assert res.f50 == pytest.approx(f50, rel=0.05)
    assert res.contrast_hu == pytest.approx(contrast, rel=0.01)
    assert res.f10 > res.f50


def test_ttf_of_noisy_realisations_averages_them():
    rng = np.random.default_rng(0)
    px, sigma = 0.5, 0.8
    image, centre = blurred_disk(128, px, 8.0, 340.0, sigma)
    stack = image[:, :, None] + 20.0 * rng.standard_normal((128, 128, 40))
    res = task_transfer_function(stack, centre, 8.0, px)
    f50 = math.sqrt(math.log(2.0) / (2 * math.pi**2 * sigma**2))
    assert res.f50 == pytest.approx(f50, rel=0.08)


def test_ttf_bad_input():
    with pytest.raises(InputError, match="does not fit"):
        task_transfer_function(np.zeros((32, 32)), (5, 5), 5.0, 1.0)
    with pytest.raises(InputError, match="no contrast"):
        task_transfer_function(np.zeros((64, 64)), (32, 32), 5.0, 1.0)
    assert math.isnan(crossing_frequency(np.arange(4.0), np.ones(4), 0.5))


def test_nps_of_white_noise_is_flat_at_sigma2_dx_dy():
    rng = np.random.default_rng(1)
    sigma, dx, dy = 12.0, 0.7, 0.5
    rois = sigma * rng.standard_normal((400, 64, 64))
    nps, freqs = noise_power_spectrum(rois, (dx, dy))
    level = sigma**2 * dx * dy
    centre = (32, 32)
    off_dc = np.ones_like(nps, dtype=bool)
    off_dc[centre] = False  # the mean removal zeroes the DC bin
    assert nps[off_dc].mean() == pytest.approx(level, rel=0.01)
    assert np.abs(nps[off_dc] / level - 1).max() < 0.35  # each bin: a mean of 400 exponentials
    summary = nps_summary(nps, freqs)
    assert summary["noise_hu"] == pytest.approx(sigma, rel=0.01)


def test_nps_of_filtered_noise_is_the_filters_squared_response():
    rng = np.random.default_rng(2)
    sigma, d, n = 5.0, 0.8, 64
    f = np.fft.fftfreq(n, d=d)
    h = np.exp(-((f[:, None] ** 2 + f[None, :] ** 2) / (2 * 0.25**2)))  # Gaussian low-pass, 1/mm
    h = h * (1.0 - np.exp(-((f[:, None] ** 2 + f[None, :] ** 2) / (2 * 0.05**2))))  # and a ramp-like high-pass
    white = sigma * rng.standard_normal((600, n, n))
    filtered = np.real(np.fft.ifft2(np.fft.fft2(white, axes=(1, 2)) * h, axes=(1, 2)))  # circular: exact
    nps, freqs = noise_power_spectrum(filtered, d)
    expected = np.fft.fftshift(sigma**2 * d * d * h**2)
    big = expected > 0.05 * expected.max()
    np.testing.assert_allclose(nps[big], expected[big], rtol=0.25)
    assert nps[big].sum() == pytest.approx(expected[big].sum(), rel=0.02)
    fr, nps_1d = radial_nps(nps, freqs)
    summary = nps_summary(nps, freqs)
    peak_expected = fr[int(np.argmax(radial_nps(expected, freqs)[1]))]
    assert summary["peak_frequency"] == pytest.approx(peak_expected, abs=2.0 / (n * d))
    assert 0 < summary["mean_frequency"] < fr.max()
