"""The fast torch paths of the low-dose simulator make the same noise as the scikit-image reference.

``method="projection"`` is the reference algorithm in torch (same FBP operator, tested to round-off); ``"sector"``
inserts the noise in the image domain from the same ray variances and the closed-form FBP noise spectrum.  Both
are compared with ``method="reference"`` on a water cylinder and on the abdomen phantom: noise SD map in the
body, radial NPS per frequency band, mean bias, dose scaling and the dose-1 identity.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.transform import iradon

from ldct_clip.errors import InputError
from ldct_clip.simulation.fast import _ramp_filter, back_project
from ldct_clip.metrics import noise_power_spectrum, radial_nps
from ldct_clip.simulation.phantom import make_phantom
from ldct_clip.simulation.low_dose import simulate_low_dose
from ldct_clip.simulation.pairs import simulate_dose_pair

N = 128
PIXEL_MM = 1.5
REALISATIONS = 32
BLOCK = 16  # SD map on 16 x 16 pixel blocks: 256 pixels x 32 realisations per estimate


def water_cylinder(radius_mm: float = 80.0) -> np.ndarray:
    x = (np.arange(N) - (N - 1) / 2.0) * PIXEL_MM
    return np.where(x[:, None] ** 2 + x[None, :] ** 2 <= radius_mm**2, 0.0, -1000.0)


PHANTOMS = {"water": water_cylinder(), "abdomen": make_phantom((N, N, 1), seed=3)[:, :, 0]}


def realisations(image: np.ndarray, method: str, seed: int, **kw) -> np.ndarray:
    """``REALISATIONS`` noise images of one slice, ``(N, N, R)`` HU."""
    vol = np.repeat(image[:, :, None], REALISATIONS, axis=2)
    return simulate_low_dose(vol, pixel_size_mm=PIXEL_MM, seed=seed, method=method, batch_size=REALISATIONS, **kw) - vol


def block_sd(noise: np.ndarray, body: np.ndarray) -> np.ndarray:
    """SD per block wholly inside the body: sqrt of the mean per-pixel variance over realisations."""
    var = noise.var(axis=2)
    nb = N // BLOCK
    v = var.reshape(nb, BLOCK, nb, BLOCK).mean(axis=(1, 3))
    inside = body.reshape(nb, BLOCK, nb, BLOCK).all(axis=(1, 3))
    return np.sqrt(v[inside])


def band_nps(noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NPS power in radial bands of 1/16 cycle per pixel of the central 64 x 64 ROI; (power, fraction)."""
    c = N // 2
    rois = np.moveaxis(noise[c - 32 : c + 32, c - 32 : c + 32], 2, 0)
    f, nps = radial_nps(*noise_power_spectrum(rois, PIXEL_MM))
    band = np.floor(f * PIXEL_MM * 16).astype(int)
    power = np.array([(nps * f)[band == b].sum() for b in range(8)])  # ring area grows with f
    return power, power / power.sum()


@pytest.fixture(scope="module")
def reference_noise() -> dict:
    cases = {}
    for name, image in PHANTOMS.items():
        for model, dose in (("variance_matched", 0.25), ("poisson", 0.5)):
            cases[name, model, "parallel"] = realisations(image, "reference", 1, dose_fraction=dose, noise_model=model)
    cases["abdomen", "poisson", "fan"] = realisations(PHANTOMS["abdomen"], "reference", 1, dose_fraction=0.5,
                                                      noise_model="poisson", geometry="fan")
    return cases


CASES = [
    ("sector", "water", "variance_matched", "parallel"),
    ("sector", "abdomen", "variance_matched", "parallel"),
    ("sector", "abdomen", "poisson", "parallel"),
    ("projection", "water", "variance_matched", "parallel"),
    ("projection", "abdomen", "poisson", "parallel"),
    ("projection", "abdomen", "poisson", "fan"),
]


@pytest.mark.parametrize("method, phantom, model, geometry", CASES)
def test_same_noise_as_reference(reference_noise, method, phantom, model, geometry):
    image = PHANTOMS[phantom]
    dose = 0.25 if model == "variance_matched" else 0.5
    ref = reference_noise[phantom, model, geometry]
    fast = realisations(image, method, 2, dose_fraction=dose, noise_model=model, geometry=geometry)
    body = image > -500
    # noise SD map in the body within 5 %
    ratio = block_sd(fast, body) / block_sd(ref, body)
    assert ratio.size >= 12
    np.testing.assert_allclose(ratio, 1.0, atol=0.05)
    # radial NPS within 10 % in every band holding more than 1 % of the noise power
    p_ref, frac = band_nps(ref)
    p_fast, _ = band_nps(fast)
    keep = frac > 0.01
    assert keep.sum() >= 5
    np.testing.assert_allclose(p_fast[keep] / p_ref[keep], 1.0, atol=0.10)
    # no mean bias (1 HU) in the body: the mean over 32 realisations and the body's pixels
    assert abs(fast[body].mean()) < 1.0
    assert abs(fast.mean(axis=2)[body]).mean() < 0.25 * fast[body].std()


@pytest.mark.parametrize("filter_name", ["ramp", "hann"])
def test_projection_fbp_is_iradon(filter_name):
    n, views = 96, 40
    nb = n + int(math.ceil(math.sqrt(2.0) * n - n))
    sino = np.random.default_rng(0).standard_normal((nb, views))
    theta = np.arange(views) * (180.0 / views)
    ref = iradon(sino, theta, output_size=n, filter_name=filter_name, circle=False)
    q = _ramp_filter(torch.from_numpy(sino.T.copy())[None], filter_name)
    out = back_project(q, torch.from_numpy(theta), n)[0].numpy() * math.pi / (2 * views)
    np.testing.assert_allclose(out, ref, atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize("method", ["sector", "projection"])
def test_dose_scaling_laws(method):
    image = water_cylinder()
    c = (slice(N // 2 - 20, N // 2 + 20),) * 2
    sd = lambda k, model, seed: realisations(image, method, seed, dose_fraction=k, noise_model=model)[c].std()  # noqa: E731
    assert sd(0.0625, "poisson", 1) / sd(0.25, "poisson", 2) == pytest.approx(2.0, rel=0.05)
    assert sd(0.0625, "variance_matched", 3) / sd(0.25, "variance_matched", 4) == pytest.approx(math.sqrt(5.0), rel=0.05)


@pytest.mark.parametrize("method", ["sector", "projection"])
def test_variance_matched_dose_one_is_identity(method):
    image = np.repeat(PHANTOMS["abdomen"][:, :, None], 2, axis=2)
    out = simulate_low_dose(image, 1.0, pixel_size_mm=PIXEL_MM, seed=0, method=method)
    np.testing.assert_array_equal(out, image.astype(np.float32))
    low, normal = simulate_dose_pair(image, 1.0, pixel_size_mm=PIXEL_MM, seed=0, method=method)
    np.testing.assert_array_equal(low, normal)
    assert normal.std() > 0 and not np.array_equal(normal, image.astype(np.float32))


def test_batching_does_not_change_a_slice():
    vol = np.repeat(PHANTOMS["abdomen"][:, :, None], 5, axis=2)
    whole = simulate_low_dose(vol, 0.25, pixel_size_mm=PIXEL_MM, seed=3, batch_size=5)
    pieces = simulate_low_dose(vol, 0.25, pixel_size_mm=PIXEL_MM, seed=3, batch_size=2)
    np.testing.assert_allclose(whole, pieces, atol=1e-3)


def test_sector_refuses_fan_and_bad_method():
    with pytest.raises(InputError, match="parallel beam only"):
        simulate_low_dose(water_cylinder(), 0.25, geometry="fan", method="sector")
    with pytest.raises(InputError, match="method"):
        simulate_low_dose(water_cylinder(), 0.25, method="fastest")
    with pytest.raises(InputError, match="batch_size"):
        simulate_low_dose(water_cylinder(), 0.25, batch_size=0)
