"""Tests for ldct_clip.rgb.noise: the natural-image noise suite and its MONAI transforms.

Statistical tests use constant images of 3 x 256 x 256 = 196,608 independent samples, so the
relative standard error of a sample variance is about 0.3 % and of a sample SD about 0.16 %;
tolerances are a few percent, far above sampling noise and far below any definition error
(e.g. a forgotten /255, a variance used as an SD, or a sigma applied after instead of before the
box filter, which is off by a factor 3).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from ldct_clip.errors import InputError
from ldct_clip.rgb.noise import (
    NOISE_KINDS,
    NOISE_SUITE,
    RandNaturalNoise,
    RandNaturalNoised,
    add_noise,
    noise_suite_settings,
)

SHAPE = (3, 256, 256)


def _const(value: float, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32)


def _lagged(n: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping views ``a``, ``b`` of ``n`` (..., H, W) with ``b[..., i, j] = n[..., i + dy, j + dx]``, dy >= 0."""
    h, w = n.shape[-2:]
    a = n[..., : h - dy, max(0, -dx) : w - max(0, dx)]
    b = n[..., dy:, max(0, dx) : w - max(0, -dx)]
    return a, b


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    return float((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean()))


# ----------------------------------------------------------------------------------------------
# definitions


@pytest.mark.parametrize("sigma", [15.0, 50.0])
def test_gaussian_sd_is_sigma_over_255_and_unclipped(sigma: float) -> None:
    x = _const(0.5)
    y = add_noise(x, "gaussian", sigma, seed=0)
    n = y.astype(np.float64) - 0.5
    assert abs(n.mean()) < 4 * sigma / 255 / np.sqrt(n.size)
    assert n.std() == pytest.approx(sigma / 255.0, rel=0.02)
    # Independent per channel (colour benchmarks add noise per element).
    assert abs(_corr(n[0], n[1])) < 0.02
    # Unclipped by default: sigma 50 around 0.5 crosses both ends of [0, 1].
    if sigma == 50.0:
        assert y.min() < 0.0 and y.max() > 1.0


def test_clip_and_quantize() -> None:
    x = _const(0.02)
    y = add_noise(x, "gaussian", 25, seed=1, clip=True)
    assert y.min() == 0.0 and y.max() <= 1.0
    q = add_noise(x, "gaussian", 25, seed=1, quantize=True)
    assert q.min() >= 0.0 and q.max() <= 1.0
    np.testing.assert_allclose(q * 255.0, np.round(q * 255.0), atol=1e-4)
    # Quantising is rounding of the clipped image (same noise field for the same seed).
    assert np.abs(q - y).max() <= 0.5 / 255.0 + 1e-6
    # Without clip the same draw goes below zero.
    assert add_noise(x, "gaussian", 25, seed=1).min() < 0.0


def test_correlated_noise_matches_box_filter_definition() -> None:
    # sigma is the SD of the white noise *before* the 3x3 mean filter.
    sigma = 50.0
    n = add_noise(_const(0.0), "correlated", sigma, seed=3).astype(np.float64)
    assert abs(n.mean()) < 2e-3
    assert n.std() == pytest.approx(sigma / (3.0 * 255.0), rel=0.02)
    # Correlation = overlap of the two 3x3 windows / 9.
    expected = {
        (0, 1): 6 / 9,
        (1, 0): 6 / 9,
        (1, 1): 4 / 9,
        (1, -1): 4 / 9,
        (0, 2): 3 / 9,
        (2, 0): 3 / 9,
        (2, 2): 1 / 9,
        (0, 3): 0.0,
        (3, 0): 0.0,
    }
    for (dy, dx), rho in expected.items():
        assert _corr(*_lagged(n, dy, dx)) == pytest.approx(rho, abs=0.02), (dy, dx)
    # Channels are filtered separately: no cross-channel correlation.
    assert abs(_corr(n[0], n[2])) < 0.02
    # Stationary up to the border (noise drawn on a larger field, valid filtering): the SD of the
    # outermost ring equals the interior SD; zero or reflect padding would change it.
    ring = np.concatenate([n[:, 0, :], n[:, -1, :], n[:, 1:-1, 0], n[:, 1:-1, -1]], axis=None)
    assert ring.std() == pytest.approx(sigma / (3.0 * 255.0), rel=0.05)


@pytest.mark.parametrize(("x0", "alpha"), [(0.4, 3.0), (0.8, 2.0)])
def test_poisson_mean_and_variance(x0: float, alpha: float) -> None:
    # Definition: y = x + alpha * (Poisson(255 x) / 255 - x): E = x, Var = alpha^2 x / 255.
    y = add_noise(_const(x0), "poisson", alpha, seed=4).astype(np.float64)
    var = alpha**2 * x0 / 255.0
    assert y.mean() == pytest.approx(x0, abs=4 * np.sqrt(var / y.size))
    assert y.var() == pytest.approx(var, rel=0.03)
    # The noisy values sit on the lattice x + alpha * (k/255 - x).
    k = (y - x0) / alpha * 255.0 + 255.0 * x0
    np.testing.assert_allclose(k, np.round(k), atol=1e-3)


def test_poisson_is_signal_dependent() -> None:
    x = np.concatenate([_const(0.0, (1, 128, 128)), _const(0.1, (1, 128, 128)), _const(0.9, (1, 128, 128))])
    n = add_noise(x, "poisson", 2.5, seed=5).astype(np.float64) - x
    assert np.all(n[0] == 0.0)  # no signal, no shot noise
    assert n[2].var() / n[1].var() == pytest.approx(9.0, rel=0.1)


def test_speckle_variance() -> None:
    x0, v = 0.6, 0.04
    y = add_noise(_const(x0), "speckle", v, seed=6).astype(np.float64)
    assert y.mean() == pytest.approx(x0, abs=2e-3)
    assert y.var() == pytest.approx(v * x0**2, rel=0.03)
    assert np.all(add_noise(_const(0.0, (3, 16, 16)), "speckle", v, seed=6) == 0.0)  # multiplicative


def test_salt_and_pepper_fraction() -> None:
    d = 0.05
    x = _const(0.5)
    y = add_noise(x, "salt_pepper", d, seed=7)
    salt, pepper = np.mean(y == 1.0), np.mean(y == 0.0)
    se = np.sqrt(d * (1 - d) / y.size)
    assert salt + pepper == pytest.approx(d, abs=5 * se)
    assert salt == pytest.approx(d / 2, abs=5 * se) and pepper == pytest.approx(d / 2, abs=5 * se)
    changed = y != 0.5
    assert np.all((y[changed] == 0.0) | (y[changed] == 1.0))  # other elements untouched


# ----------------------------------------------------------------------------------------------
# suite, seeds, containers


def test_noise_suite_holds_the_paper_settings() -> None:
    assert NOISE_SUITE["gaussian"] == (15.0, 25.0, 50.0)
    assert NOISE_SUITE["correlated"] == (40.0, 45.0, 50.0, 55.0)
    assert NOISE_SUITE["poisson"] == (2.0, 2.5, 3.0, 3.5)
    assert set(NOISE_SUITE) == set(NOISE_KINDS)
    assert len(noise_suite_settings()) == sum(len(v) for v in NOISE_SUITE.values())


def test_every_suite_setting_runs_and_levels_are_ordered() -> None:
    x = _const(0.5, (3, 64, 64))
    for kind, levels in NOISE_SUITE.items():
        errors = []
        for level in levels:
            y = add_noise(x, kind, level, seed=8)
            assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
            errors.append(float(np.mean((y - x) ** 2)))
        assert errors == sorted(errors) and errors[0] > 0, kind  # stronger level, more noise


@pytest.mark.parametrize("kind", sorted(NOISE_KINDS))
def test_seeds_are_reproducible(kind: str) -> None:
    x = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    level = NOISE_SUITE[kind][0]
    a = add_noise(x, kind, level, seed=11)
    b = add_noise(x, kind, level, seed=11)
    c = add_noise(x, kind, level, seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # A Generator argument is consumed: two calls on one Generator differ, a fresh one repeats.
    g = np.random.default_rng(11)
    first, second = add_noise(x, kind, level, seed=g), add_noise(x, kind, level, seed=g)
    np.testing.assert_array_equal(first, a)
    assert not np.array_equal(first, second)


def test_torch_input_gives_same_noise_and_keeps_type() -> None:
    x = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    t = torch.from_numpy(x.copy())
    yt = add_noise(t, "correlated", 45, seed=2)
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float32 and yt.shape == t.shape
    np.testing.assert_allclose(yt.numpy(), add_noise(x, "correlated", 45, seed=2), atol=1e-7)
    assert torch.equal(t, torch.from_numpy(x))  # input untouched
    m = MetaTensor(t, meta={"filename_or_obj": "a.png"})
    ym = add_noise(m, "gaussian", 15, seed=2)
    assert isinstance(ym, MetaTensor) and ym.meta["filename_or_obj"] == "a.png"


def test_input_not_modified_and_2d_supported() -> None:
    x = _const(0.5, (32, 32))
    y = add_noise(x, "salt_pepper", 0.5, seed=0)
    assert np.all(x == 0.5) and y.shape == (32, 32) and np.any(y != 0.5)


@pytest.mark.parametrize(
    ("image", "kind", "level", "seed"),
    [
        (_const(0.5, (3, 8, 8)), "pink", 15, 0),
        (_const(0.5, (3, 8, 8)), "gaussian", -1, 0),
        (_const(0.5, (3, 8, 8)), "gaussian", float("nan"), 0),
        (_const(0.5, (3, 8, 8)), "gaussian", "15", 0),
        (_const(0.5, (3, 8, 8)), "gaussian", True, 0),
        (_const(0.5, (3, 8, 8)), "salt_pepper", 1.5, 0),
        (np.full((3, 8, 8), 128, dtype=np.uint8), "gaussian", 15, 0),
        (np.full((3, 8, 8), np.nan, dtype=np.float32), "gaussian", 15, 0),
        (_const(0.5, (8,)), "gaussian", 15, 0),
        ([[0.5, 0.5], [0.5, 0.5]], "gaussian", 15, 0),
        (_const(-0.1, (3, 8, 8)), "poisson", 2, 0),
        (_const(0.5, (3, 8, 8)), "gaussian", 15, 1.5),
        (_const(0.5, (3, 8, 8)), "gaussian", 15, -3),
    ],
)
def test_bad_arguments_raise_input_error(image, kind, level, seed) -> None:
    with pytest.raises(InputError):
        add_noise(image, kind, level, seed=seed)


# ----------------------------------------------------------------------------------------------
# MONAI transforms


def test_array_transform_is_deterministic_under_set_random_state() -> None:
    x = _const(0.5, (3, 64, 64))
    a = RandNaturalNoise("gaussian", 25).set_random_state(5)
    b = RandNaturalNoise("gaussian", 25).set_random_state(5)
    ya1, ya2 = a(x), a(x)
    np.testing.assert_array_equal(ya1, b(x))
    np.testing.assert_array_equal(ya2, b(x))
    assert not np.array_equal(ya1, ya2)  # fresh noise on every call
    assert np.std(ya1 - x) == pytest.approx(25 / 255, rel=0.05)


def test_array_transform_level_choices_and_prob() -> None:
    x = _const(0.5, (3, 64, 64))
    t = RandNaturalNoise("gaussian", [15, 50]).set_random_state(0)
    picked = set()
    for _ in range(12):
        sd = float(np.std(t(x) - x)) * 255.0
        level = min((15, 50), key=lambda lv: abs(sd - lv))
        assert sd == pytest.approx(level, rel=0.05)
        picked.add(level)
    assert picked == {15, 50}
    off = RandNaturalNoise("gaussian", 15, prob=0.0)
    assert off(x) is x
    with pytest.raises(InputError):
        RandNaturalNoise("nope", 15)
    with pytest.raises(InputError):
        RandNaturalNoise("gaussian", [])


def test_old_names_warn_and_give_the_same_noise() -> None:
    from ldct_clip.rgb.noise import AddNaturalNoise, AddNaturalNoised

    x = _const(0.5, (3, 32, 32))
    with pytest.warns(FutureWarning, match="RandNaturalNoise"):
        old = AddNaturalNoise("gaussian", 25)
    np.testing.assert_array_equal(old.set_random_state(5)(x), RandNaturalNoise("gaussian", 25).set_random_state(5)(x))
    with pytest.warns(FutureWarning, match="RandNaturalNoised"):
        oldd = AddNaturalNoised(keys="image", level=25, target_key="label")
    new = RandNaturalNoised(keys="image", level=25, target_key="label")
    a, b = oldd.set_random_state(2)({"image": x}), new.set_random_state(2)({"image": x})
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], x)


def test_dict_transform_keeps_clean_target_and_is_deterministic() -> None:
    x = np.random.default_rng(1).random((3, 32, 32)).astype(np.float32)
    def pipeline() -> Compose:
        # As a bundle config would use it; Compose seeds its members from its own seed.
        return Compose([RandNaturalNoised(keys=["image"], noise="poisson", level=3.0, target_key="label")])

    out1 = pipeline().set_random_state(9)({"image": x, "other": 1})
    out2 = pipeline().set_random_state(9)({"image": x, "other": 1})
    out3 = pipeline().set_random_state(10)({"image": x, "other": 1})
    np.testing.assert_array_equal(out1["label"], x)
    assert out1["label"] is not x  # a copy: later in-place transforms cannot alias the pair
    assert not np.array_equal(out1["image"], x)
    np.testing.assert_array_equal(out1["image"], out2["image"])
    assert not np.array_equal(out1["image"], out3["image"])
    assert out1["other"] == 1
    # prob 0: no noise, but the training pair is still formed.
    skip = RandNaturalNoised(keys="image", prob=0.0, target_key="label")({"image": x})
    np.testing.assert_array_equal(skip["image"], x)
    np.testing.assert_array_equal(skip["label"], x)


def test_dict_transform_shares_one_draw_across_keys_and_validates_targets() -> None:
    x = _const(0.5, (1, 32, 32))
    out = RandNaturalNoised(keys=["a", "b"], level=25).set_random_state(0)({"a": x, "b": x.copy()})
    np.testing.assert_array_equal(out["a"], out["b"])
    with pytest.raises(InputError):
        RandNaturalNoised(keys=["image"], target_key="image")
    with pytest.raises(InputError):
        RandNaturalNoised(keys=["a", "b"], target_key="label")
