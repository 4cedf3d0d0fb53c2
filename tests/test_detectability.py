"""Model observers on cases with known answers: white Gaussian noise and a known disk signal.

For a signal ``s`` in white Gaussian noise of SD ``sigma`` the ideal observer (here the prewhitening matched
filter) has ``d' = ||s|| / sigma``; NPW, whose template is the signal, reaches it too; a channelized Hotelling
observer cannot exceed it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from ldct_clip.errors import InputError
from ldct_clip.metrics.channels import dog_channels, gabor_channels, laguerre_gauss_channels
from ldct_clip.metrics.detectability import (
    auc_from_dprime,
    auc_from_scores,
    dprime_from_auc,
    dprime_from_scores,
    extract_rois,
    find_inserts,
    measure_lcd,
    reader_splits,
    reader_study,
)

SIZE = 15  # ROI side (pixels)


def disk_signal(size: int, radius_px: float, amplitude: float, blur_px: float = 0.7) -> np.ndarray:
    """A Gaussian-blurred disk centred in a ``size x size`` ROI, rotationally symmetric."""
    c = (np.arange(size) - (size - 1) / 2.0)
    disk = (np.hypot(c[:, None], c[None, :]) <= radius_px).astype(np.float64) * amplitude
    return ndimage.gaussian_filter(disk, blur_px)


def test_auc_and_dprime_agree_for_gaussian_scores():
    rng = np.random.default_rng(0)
    for d in (0.5, 1.0, 2.0):
        tp, ta = rng.normal(d, 1.0, 20000), rng.normal(0.0, 1.0, 20000)
        auc, dp = auc_from_scores(tp, ta), dprime_from_scores(tp, ta)
        assert dp == pytest.approx(d, abs=0.03)
        assert auc == pytest.approx(float(auc_from_dprime(dp)), abs=0.005)
        assert float(dprime_from_auc(auc)) == pytest.approx(d, abs=0.04)
    # ties count one half; a perfect separation is 1
    assert auc_from_scores([1.0, 1.0], [1.0, 1.0]) == 0.5
    assert auc_from_scores([2.0, 3.0], [0.0, 1.0]) == 1.0


def test_npw_on_white_noise_reaches_norm_over_sigma():
    rng = np.random.default_rng(1)
    sigma = 10.0
    s = disk_signal(SIZE, 3.0, 1.0)
    s *= 5.0 * sigma / np.linalg.norm(s)  # ||s|| / sigma = 5
    n = 2000
    present = sigma * rng.standard_normal((n, SIZE, SIZE)) + s
    absent = sigma * rng.standard_normal((n, SIZE, SIZE))
    study = reader_study(present, absent, "NPW", readers=5, bootstrap=0)
    assert study.dprime.mean() == pytest.approx(5.0, rel=0.05)


def test_lg_cho_is_within_and_close_to_the_ideal_observer():
    rng = np.random.default_rng(2)
    sigma = 10.0
    s = disk_signal(SIZE, 3.0, 1.0)
    s *= 3.0 * sigma / np.linalg.norm(s)  # ideal d' = 3
    n = 2000
    present = sigma * rng.standard_normal((n, SIZE, SIZE)) + s
    absent = sigma * rng.standard_normal((n, SIZE, SIZE))
    study = reader_study(present, absent, "LG_CHO", radius_px=3.0, readers=5, bootstrap=0)
    d = study.dprime.mean()
    assert d <= 3.0 * 1.03  # not above the ideal observer (up to the estimate's sampling error)
    assert d >= 3.0 * 0.9  # and close to it: the LG channels span a rotationally symmetric signal


def test_laguerre_gauss_channels_are_orthonormal():
    u = laguerre_gauss_channels(101, 12.0, 5)
    gram = u.T @ u
    np.testing.assert_allclose(gram, np.eye(5), atol=1e-3)


def test_dog_and_gabor_channels_are_band_pass_where_the_conventions_put_them():
    size = 65
    dog = dog_channels(size)
    assert dog.shape == (size * size, 10)
    f = np.fft.fftfreq(size)
    for j, expected_peak in ((0, 0.005), (9, 0.005 * 1.4**9)):
        spectrum = np.abs(np.fft.fft2(dog[:, j].reshape(size, size)))[0, : size // 2]
        # the DoG profile exp(-r^2/2Q^2s^2) - exp(-r^2/2s^2) peaks at s * Q * sqrt(4 ln Q / (Q^2 - 1))
        q = 1.67
        peak = expected_peak * q * math.sqrt(4.0 * math.log(q) / (q * q - 1.0))
        assert abs(f[int(np.argmax(spectrum))] - peak) <= 1.0 / size
    gab = gabor_channels(size)
    assert gab.shape == (size * size, 16)
    spectrum = np.abs(np.fft.fft2(gab[:, 0].reshape(size, size)))  # band 1 (1/16..1/8), orientation 0
    i, j = np.unravel_index(int(np.argmax(spectrum)), spectrum.shape)
    assert abs(abs(f[i]) - 3.0 / 32.0) <= 1.0 / size and j == 0


def test_channels_change_the_answer():
    """A CHO with channels that miss the signal (Gabor bands far above a large smooth disk) does worse than
    LG channels matched to it: the channels matter, and a wrong set shows."""
    rng = np.random.default_rng(3)
    sigma = 10.0
    size = 31
    s = disk_signal(size, 8.0, 1.0, blur_px=2.0)
    s *= 3.0 * sigma / np.linalg.norm(s)
    present = sigma * rng.standard_normal((600, size, size)) + s
    absent = sigma * rng.standard_normal((600, size, size))
    lg = reader_study(present, absent, "LG_CHO", radius_px=8.0, readers=3, bootstrap=0).dprime.mean()
    narrow_lg = reader_study(present, absent, "LG_CHO", radius_px=0.8, readers=3, bootstrap=0).dprime.mean()
    assert lg > 2.6
    assert narrow_lg < 0.7 * lg


def test_the_split_keeps_training_and_test_apart():
    splits = reader_splits(10, 12, readers=4, train_fraction=0.5, seed=7)
    assert len(splits) == 4
    for trp, tep, tra, tea in splits:
        assert len(trp) == 5 and len(tep) == 5 and len(tra) == 6 and len(tea) == 6
        assert not set(trp) & set(tep) and not set(tra) & set(tea)
        assert sorted([*trp, *tep]) == list(range(10)) and sorted([*tra, *tea]) == list(range(12))
    assert any(not np.array_equal(splits[0][0], s[0]) for s in splits[1:])  # readers differ
    # reproducible for a seed
    again = reader_splits(10, 12, readers=4, train_fraction=0.5, seed=7)
    assert all(np.array_equal(a, b) for x, y in zip(splits, again) for a, b in zip(x, y))


def test_no_signal_gives_chance_with_a_proper_split():
    """Pure noise in both classes: a Hotelling observer with 16 channels trained on 20 images overfits; tested
    on held-out images its d' is about 0, while rating its own training images gives a large false d'."""
    rng = np.random.default_rng(4)
    present = rng.standard_normal((40, 21, 21))
    absent = rng.standard_normal((40, 21, 21))
    study = reader_study(present, absent, "GABOR_CHO", readers=20, bootstrap=0)
    assert abs(study.dprime.mean()) < 0.35
    from ldct_clip.metrics.detectability import observer_scores

    tp, ta = observer_scores(present[:20], absent[:20], present[:20], absent[:20], "GABOR_CHO")
    assert dprime_from_scores(tp, ta) > 1.0  # what testing on the training set would report


def make_phantom_stack(rng, n: int, signal: bool, sigma: float = 8.0):
    """A 200-mm-like water disk (96 px) with two inserts, plus white noise; returns (stack, truth)."""
    size = 96
    c = np.arange(size) - (size - 1) / 2.0
    r = np.hypot(c[:, None], c[None, :])
    truth = np.where(r < 44, 0.0, -1000.0)
    inserts = [((30.0, 48.0), 4.0, 20.0), ((66.0, 48.0), 6.0, 10.0)]
    ii, jj = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    for (ci, cj), radius, hu in inserts:
        truth = np.where(np.hypot(ii - ci, jj - cj) <= radius, hu, truth)
    base = truth if signal else np.where(r < 44, 0.0, -1000.0)
    stack = base[:, :, None] + sigma * rng.standard_normal((size, size, n))
    return stack, truth, inserts


def test_find_inserts_locates_the_known_inserts():
    _, truth, inserts = make_phantom_stack(np.random.default_rng(5), 1, True)
    found = find_inserts(truth, pixel_size_mm=0.5)
    assert len(found) == 2
    for ins, ((ci, cj), radius, hu) in zip(found, inserts):
        assert ins.contrast_hu == pytest.approx(hu)
        assert ins.centre_px == pytest.approx((ci, cj), abs=0.05)
        assert ins.radius_px == pytest.approx(radius, rel=0.1)
        assert ins.diameter_mm == pytest.approx(2 * radius * 0.5, rel=0.1)


def test_measure_lcd_rows_and_the_insert_location_matters():
    rng = np.random.default_rng(6)
    present, truth, _ = make_phantom_stack(rng, 60, True)
    absent, _, _ = make_phantom_stack(rng, 60, False)
    rows = measure_lcd(present, absent, truth, pixel_size_mm=0.5, observers=["LG_CHO", "NPW"], readers=5,
                       bootstrap=50)
    assert [(r["insert_hu"], r["observer"]) for r in rows] == [(20.0, "LG_CHO"), (20.0, "NPW"), (10.0, "LG_CHO"),
                                                                 (10.0, "NPW")]
    for row in rows:
        assert row["dprime_mean"] > 3.0 and row["auc_mean"] > 0.97
        assert row["dprime_sd"] > 0 and row["dprime_ci95_low"] < row["dprime_mean"] < row["dprime_ci95_high"]
    # the same images with the noise-free image transposed: the ROIs land beside the inserts, d' vanishes
    wrong = measure_lcd(present, absent, truth.T, pixel_size_mm=0.5, readers=5, bootstrap=0)
    assert all(abs(r["dprime_mean"]) < 1.0 for r in wrong)


def test_bad_inputs_are_one_line_errors():
    rng = np.random.default_rng(8)
    present, truth, _ = make_phantom_stack(rng, 3, True)
    with pytest.raises(InputError, match="at least 4"):
        measure_lcd(present, present, truth, pixel_size_mm=0.5, bootstrap=0)
    with pytest.raises(InputError, match="unknown observer"):
        measure_lcd(present, present, truth, pixel_size_mm=0.5, observers=["HO"])
    with pytest.raises(InputError, match="no insert"):
        find_inserts(np.zeros((32, 32)), 1.0)
    with pytest.raises(InputError, match="does not fit"):
        extract_rois(present, (1, 1), 9)
