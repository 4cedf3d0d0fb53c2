"""Metric protocols (PSNR/SSIM/RMSE against scikit-image and the reference code), noise SD and NPS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ldct_clip.errors import InputError
from ldct_clip.metrics import (
    PROTOCOLS,
    Protocol,
    compute_metrics,
    find_uniform_roi,
    get_protocol,
    noise_power_spectrum,
    noise_sd,
    per_slice_metrics,
    psnr,
    radial_nps,
    ssim,
    window,
)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A smooth HU 'anatomy' (air to bone) and a noisy version, (96, 80, 3)."""
    rng = np.random.default_rng(0)
    target = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (96, 80, 3)), (4, 4, 0))
    target = np.clip(target / target.std() * 500.0, -1000.0, 1500.0)
    pred = target + rng.normal(0.0, 40.0, target.shape)
    return pred, target


def reference_ssim_zero_pad(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """pytorch-ssim as in the paper's/RED-CNN's test code: 11x11 Gaussian (1.5) conv2d with padding=5."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    w = torch.tensor(np.outer(g, g))[None, None]
    a, b = torch.tensor(x)[None, None], torch.tensor(y)[None, None]
    mu1, mu2 = F.conv2d(a, w, padding=5), F.conv2d(b, w, padding=5)
    s1 = F.conv2d(a * a, w, padding=5) - mu1**2
    s2 = F.conv2d(b * b, w, padding=5) - mu2**2
    s12 = F.conv2d(a * b, w, padding=5) - mu1 * mu2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    smap = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    return float(smap.mean())


def test_ssim_valid_region_matches_skimage_gaussian(pair):
    pred, target = pair[0][:, :, 0], pair[1][:, :, 0]
    ours = ssim(pred, target, 4096.0, region="valid")
    ref = structural_similarity(
        target, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=4096.0
    )
    assert ours == pytest.approx(ref, abs=1e-6)


def test_ssim_zero_pad_matches_reference_code_and_differs_little_from_skimage(pair):
    pred, target = pair[0][:, :, 0], pair[1][:, :, 0]
    ours = ssim(pred, target, 4096.0, region="zero_pad")
    assert ours == pytest.approx(reference_ssim_zero_pad(pred, target, 4096.0), abs=1e-9)
    ref = structural_similarity(
        target, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=4096.0
    )
    # Only the 5-pixel border differs (zero padding vs cropping): a small, non-zero difference.
    assert 0 < abs(ours - ref) < 1e-2


def test_ssim_uniform_sample_covariance_matches_skimage_defaults(pair):
    pred, target = window(pair[0][:, :, 1], "ldct-benchmark-abdomen"), window(pair[1][:, :, 1], "ldct-benchmark-abdomen")
    ours = ssim(pred, target, 1.0, window="uniform", win_size=7, region="valid", sample_covariance=True)
    assert ours == pytest.approx(structural_similarity(target, pred, data_range=1.0), abs=1e-6)


def test_valid_gaussian_ssim_needs_skimages_window_size(pair):
    # scikit-image sizes its Gaussian filter from sigma (truncate 3.5), so another win_size would not be honoured
    pred, target = pair[0][:, :, 0], pair[1][:, :, 0]
    with pytest.raises(InputError, match="win_size=11"):
        ssim(pred, target, 4096.0, win_size=7, region="valid")
    with pytest.raises(InputError, match="win_size=9"):
        ssim(pred, target, 4096.0, win_size=11, sigma=1.0, region="valid")
    assert ssim(pred, target, 4096.0, win_size=9, sigma=1.0, region="valid") == pytest.approx(
        structural_similarity(target, pred, gaussian_weights=True, sigma=1.0, use_sample_covariance=False, data_range=4096.0),
        abs=1e-12,
    )
    with pytest.raises(InputError, match="window must be"):
        ssim(pred, target, 4096.0, window="box", region="valid")


def test_paper_protocol_psnr_and_ssim_match_skimage_on_clipped_hu(pair):
    pred, target = pair[0][:, :, 0], pair[1][:, :, 0]
    m = compute_metrics(pred, target, "paper")
    clip_p, clip_t = np.clip(pred, -1024, 3072), np.clip(target, -1024, 3072)
    assert m["psnr"] == pytest.approx(peak_signal_noise_ratio(clip_t, clip_p, data_range=4096.0), abs=1e-9)
    assert m["ssim"] == pytest.approx(reference_ssim_zero_pad(clip_p, clip_t, 4096.0), abs=1e-9)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((clip_p - clip_t) ** 2)), rel=1e-12)


@pytest.mark.parametrize("region, center, width", [("chest", -600, 1500), ("abdomen", 50, 400), ("head", 40, 80)])
def test_ldct_benchmark_windowing_and_metrics(pair, region, center, width):
    pred, target = pair[0][:, :, 2], pair[1][:, :, 2]
    name = f"ldct-benchmark-{region}"

    def ldct_bench_window(x):  # ldct-benchmark's apply_center_width, written out independently
        lower, upper = center - 0.5 - (width - 1) / 2.0, center - 0.5 + (width - 1) / 2.0
        return np.where(x <= lower, 0.0, np.where(x > upper, 1.0, (x - (center - 0.5)) / (width - 1.0) + 0.5))

    np.testing.assert_allclose(window(target, name), ldct_bench_window(target), atol=1e-12)
    m = compute_metrics(pred, target, name)
    wp, wt = ldct_bench_window(pred), ldct_bench_window(target)
    assert m["psnr"] == pytest.approx(peak_signal_noise_ratio(wt, wp, data_range=1.0), abs=1e-9)
    assert m["ssim"] == pytest.approx(structural_similarity(wt, wp, data_range=1.0), abs=1e-6)
    # RMSE is on [-1024, 1900] HU, not on the window.
    cp, ct = np.clip(pred, -1024, 1900), np.clip(target, -1024, 1900)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((cp - ct) ** 2)), rel=1e-12)


def test_redcnn_protocol_truncates_to_minus160_240():
    target = np.full((32, 32), 0.0)
    target[:, :16] = -500.0
    pred = target.copy()
    pred[:, :16] = -900.0  # differs only below -160 HU: invisible after truncation
    pred[5, 20] = 100.0  # differs by 100 HU inside the window
    m = compute_metrics(pred, target, "redcnn")
    mse = 100.0**2 / pred.size
    assert m["psnr"] == pytest.approx(10 * np.log10(400.0**2 / mse))
    assert m["rmse"] == pytest.approx(np.sqrt(mse))
    assert get_protocol("redcnn").data_range == 400.0
    np.testing.assert_array_equal(window(np.array([-1000.0, 0.0, 1000.0]), "redcnn"), [-160.0, 0.0, 240.0])


def test_volume_metrics_average_slices(pair):
    pred, target = pair
    per = per_slice_metrics(pred, target, "paper")
    assert {k: v.shape for k, v in per.items()} == {"psnr": (3,), "ssim": (3,), "rmse": (3,)}
    vol = compute_metrics(pred, target, "paper")
    for k in ("psnr", "ssim", "rmse"):
        assert vol[k] == pytest.approx(per[k].mean())
        assert per[k][1] == pytest.approx(compute_metrics(pred[:, :, 1], target[:, :, 1], "paper")[k])


def test_identical_images():
    img = np.linspace(-1000, 1000, 64 * 64).reshape(64, 64)
    m = compute_metrics(img, img, "paper")
    assert m["psnr"] == np.inf and m["ssim"] == pytest.approx(1.0) and m["rmse"] == 0.0
    assert psnr(img, img + 1.0, 4096.0) == pytest.approx(20 * np.log10(4096.0))


def test_protocol_registry_and_bad_inputs(pair):
    assert {"paper", "redcnn", "ldct-benchmark-chest", "ldct-benchmark-abdomen", "ldct-benchmark-head"} <= set(PROTOCOLS)
    custom = Protocol("custom", -1000.0, 1000.0, normalise=True, data_range=1.0)
    assert get_protocol(custom) is custom
    assert compute_metrics(pair[0][:, :, 0], pair[1][:, :, 0], custom)["psnr"] > 0
    with pytest.raises(InputError, match="Unknown metric protocol"):
        compute_metrics(pair[0], pair[1], "mayo")
    with pytest.raises(InputError, match="same shape"):
        compute_metrics(pair[0], pair[1][:, :, :2], "paper")
    with pytest.raises(InputError, match="slice"):
        compute_metrics(pair[0][None], pair[1][None], "paper")


# ---------------------------------------------------------------------------------------------- noise


def test_noise_sd_given_roi_and_mask():
    rng = np.random.default_rng(1)
    img = rng.normal(0.0, 10.0, (64, 64, 2))
    img[:32] += rng.normal(0.0, 30.0, (32, 64, 2))
    roi = (slice(40, 60), slice(10, 50), slice(None))
    assert noise_sd(img, roi) == pytest.approx(10.0, rel=0.1)
    mask = np.zeros(img.shape, bool)
    mask[:30] = True
    assert noise_sd(img, mask) == pytest.approx(np.hypot(10.0, 30.0), rel=0.1)
    with pytest.raises(InputError):
        noise_sd(img, mask[:, :, 0])


def test_find_uniform_roi_picks_quiet_water_away_from_edges():
    rng = np.random.default_rng(2)
    img = np.full((128, 128), -1000.0)
    img[16:112, 16:112] = 40.0 + rng.normal(0.0, 25.0, (96, 96))  # noisy soft tissue
    img[70:100, 20:60] = 0.0 + rng.normal(0.0, 5.0, (30, 40))  # quiet water insert
    img[30:50, 70:90] = 1000.0  # bone
    sd, roi = noise_sd(img, return_roi=True, size=12)
    rows, cols = roi
    assert 70 <= rows.start and rows.stop <= 100 and 20 <= cols.start and cols.stop <= 60
    assert sd == pytest.approx(5.0, rel=0.25)
    vol_roi = find_uniform_roi(np.repeat(img[:, :, None], 2, axis=2), size=12)
    assert vol_roi[:2] == roi and vol_roi[2] == slice(None)
    with pytest.raises(InputError, match="No 12x12 region"):
        find_uniform_roi(np.full((64, 64), -1000.0), size=12)


def test_nps_of_white_noise_is_flat_and_integrates_to_variance():
    rng = np.random.default_rng(3)
    sigma, d = 10.0, 0.5
    rois = rng.normal(0.0, sigma, (64, 64, 64))
    nps, (fx, fy) = noise_power_spectrum(rois, d)
    assert nps.shape == (64, 64) and fx.shape == (64,)
    assert fx.min() == pytest.approx(-1 / (2 * d)) and 0.0 in fx
    integral = nps.sum() * (fx[1] - fx[0]) * (fy[1] - fy[0])
    assert integral == pytest.approx(sigma**2, rel=0.05)  # Parseval
    f, nps_1d = radial_nps(nps, (fx, fy))
    assert f[0] == 0.0 and f[-1] <= 1 / (2 * d) + 1e-12
    flat = nps_1d[1:]  # the zero-frequency bin is removed by the mean subtraction
    assert flat.max() / flat.min() < 1.3
    assert np.median(flat) == pytest.approx(sigma**2 * d * d, rel=0.05)  # white level: sigma^2 dx dy


def test_nps_of_correlated_noise_is_not_flat():
    rng = np.random.default_rng(4)
    rois = ndimage.gaussian_filter(rng.normal(0.0, 10.0, (32, 64, 64)), (0, 2, 2), mode="wrap")
    f, nps_1d = radial_nps(*noise_power_spectrum(list(rois), (0.7, 0.7)))
    assert nps_1d[1] / nps_1d[-1] > 100.0  # low-pass noise: power at low frequency


def test_nps_linear_detrend_removes_shading():
    rng = np.random.default_rng(5)
    ramp = np.linspace(-50, 50, 64)[:, None] * np.ones((1, 64))
    rois = rng.normal(0.0, 5.0, (16, 64, 64)) + ramp
    nps_mean, freqs = noise_power_spectrum(rois, 1.0, detrend="mean")
    nps_lin, _ = noise_power_spectrum(rois, 1.0, detrend="linear")
    assert nps_lin.sum() * (1 / 64) ** 2 == pytest.approx(25.0, rel=0.1)
    assert nps_mean.sum() > 10 * nps_lin.sum()
    with pytest.raises(InputError):
        noise_power_spectrum([np.zeros((8, 8)), np.zeros((8, 9))], 1.0)
