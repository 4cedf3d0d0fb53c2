"""Noise PSDs for BM3D (simulated, estimated, resized) and correlated-noise BM3D itself, which must use them."""

from __future__ import annotations

import numpy as np
import pytest

from ldct_clip.evaluation.classical import denoise_bm3d
from ldct_clip.evaluation.noise_psd import estimate_noise_psd, noise_psd, psd_sd, resize_psd, simulated_noise_psd, white_psd
from ldct_clip.simulation.phantom import make_phantom
from ldct_clip.simulation.low_dose import simulate_low_dose
from ldct_clip.errors import InputError
from ldct_clip.metrics import compute_metrics

N = 128
PX = 400.0 / N


def correlated_noise(shape: tuple[int, ...], sd: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Band-pass noise (FBP-like: no power at zero frequency, a mid-frequency peak) of SD ``sd`` and its exact PSD."""
    nx, ny = shape[:2]
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(nx), np.fft.fftfreq(ny), indexing="ij"))
    gain = f * np.exp(-((f / 0.15) ** 2))
    gain *= sd / np.sqrt(np.mean(gain**2))
    white = np.random.default_rng(seed).normal(size=shape)
    noise = np.real(np.fft.ifft2(np.fft.fft2(white, axes=(0, 1)) * (gain[:, :, None] if white.ndim == 3 else gain),
                                 axes=(0, 1)))
    return noise, nx * ny * gain**2


def test_psd_conventions_white_and_correlated():
    rng = np.random.default_rng(0)
    white = rng.normal(0, 20.0, (64, 48, 40))
    psd = noise_psd(white)
    assert psd.shape == (64, 48)
    assert psd_sd(psd) == pytest.approx(20.0, rel=0.02)
    assert psd.mean() == pytest.approx(white_psd(20.0, (64, 48)).mean(), rel=0.03)  # flat at X * Y * sd^2
    noise, exact = correlated_noise((64, 64, 60), 30.0, seed=1)
    measured = noise_psd(noise)
    assert psd_sd(measured) == pytest.approx(30.0, rel=0.02)
    assert np.corrcoef(measured.ravel(), exact.ravel())[0, 1] > 0.95
    with pytest.raises(InputError, match="X, Y >= 4"):
        noise_psd(np.zeros((3, 3)))


def test_resize_psd_keeps_the_noise():
    # the PSD of the noise measured on 32 x 32 windows, resized, is the PSD of the same noise on 128 x 128 slices
    noise, exact = correlated_noise((128, 128, 8), 25.0, seed=2)
    small = noise_psd(np.concatenate([noise[i:i + 32, j:j + 32] for i in range(0, 128, 32)
                                      for j in range(0, 128, 32)], axis=2))
    big = resize_psd(small, (128, 128))
    assert big.shape == (128, 128)
    assert psd_sd(big) == pytest.approx(25.0, rel=0.05)
    assert np.corrcoef(big.ravel(), exact.ravel())[0, 1] > 0.9
    assert np.array_equal(resize_psd(exact, (128, 128)), exact)


def test_estimated_psd_follows_the_noise():
    # a water cylinder with one dense insert plus band-pass noise: the estimate (uniform region, Welch) has the
    # noise's SD and spectral shape, far from white
    x, y = np.meshgrid(np.arange(N) - N / 2, np.arange(N) - N / 2, indexing="ij")
    clean = np.where(np.hypot(x, y) < 55, 0.0, -1000.0) + np.where(np.hypot(x - 25, y) < 8, 300.0, 0.0)
    noise, exact = correlated_noise((N, N, 4), 40.0, seed=3)
    est = estimate_noise_psd(clean[:, :, None] + noise)
    assert est.shape == (N, N)
    assert psd_sd(est) == pytest.approx(40.0, rel=0.15)
    assert np.corrcoef(est.ravel(), exact.ravel())[0, 1] > 0.8
    # no uniform region at all: the white PSD of the fallback SD estimate
    air = np.random.default_rng(4).normal(-1000.0, 5.0, (N, N))
    flat = estimate_noise_psd(air)
    assert np.ptp(flat) == 0 and psd_sd(flat) == pytest.approx(5.0, rel=0.2)


@pytest.fixture(scope="module")
def simulated():
    """An abdomen phantom slice with projection-domain quarter-dose noise, and the simulator's noise PSD."""
    clean = make_phantom((N, N, 1), region="abdomen", seed=3)[:, :, 0]

    def sim(seed: int) -> np.ndarray:
        return simulate_low_dose(clean, 0.25, incident_flux=3e4, pixel_size_mm=PX, noise_model="poisson", seed=seed)

    return clean, sim(0), simulated_noise_psd(sim, clean, seeds=[1, 2, 3, 4])


def test_simulated_psd_is_measured_inside_the_body(simulated):
    clean, noisy, psd = simulated
    body = clean > -500
    assert psd_sd(psd) == pytest.approx(float(np.std((noisy - clean)[body])), rel=0.1)
    whole = simulated_noise_psd(lambda s: simulate_low_dose(clean, 0.25, incident_flux=3e4, pixel_size_mm=PX,
                                                            noise_model="poisson", seed=s),
                                clean, seeds=[1, 2], body_hu=None)
    assert psd_sd(whole) < 0.9 * psd_sd(psd)  # less noise in the air around the body
    with pytest.raises(InputError, match="no pixels"):
        simulated_noise_psd(lambda s: clean, clean, seeds=[1], body_hu=5000.0)


def test_bm3d_uses_the_noise_psd(simulated):
    clean, noisy, psd = simulated

    def score(image: np.ndarray) -> dict[str, float]:
        return compute_metrics(image, clean, "ldct-benchmark-abdomen")

    with_psd = denoise_bm3d(noisy, noise_psd=psd)
    white = denoise_bm3d(noisy, psd_sd(psd))  # the same noise SD, modelled as white
    estimated = denoise_bm3d(noisy)  # PSD estimated from the noisy slice
    assert with_psd.dtype == np.float32 and with_psd.shape == noisy.shape
    s_noisy, s_psd, s_white, s_est = score(noisy), score(with_psd), score(white), score(estimated)
    assert s_psd["psnr"] > s_noisy["psnr"] + 5.0 and s_psd["ssim"] > s_noisy["ssim"] + 0.1
    # FBP noise is correlated: the PSD is worth several dB over the white model of the same SD
    assert s_psd["psnr"] > s_white["psnr"] + 2.0 and s_psd["ssim"] > s_white["ssim"]
    assert s_est["psnr"] > s_white["psnr"] + 2.0
    # a PSD of another size (the same noise's, on 64 x 64) is resized to the slice, not refused
    s_small = score(denoise_bm3d(noisy, noise_psd=resize_psd(psd, (64, 64))))
    assert s_small["psnr"] > s_white["psnr"] + 1.0
