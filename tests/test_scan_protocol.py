"""ScanProtocol: the one record of the simulators' parameters, checked on construction, taken by every entry point;
and the training noise transforms built on it (RandCTNoise, its deprecated name CTNoise, the Gaussian mode through
MONAI's RandGaussianNoise)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ldct_clip.errors import InputError
from ldct_clip.simulation.gaussian import add_gaussian_noise, gaussian_training_noise
from ldct_clip.simulation.low_dose import simulate_low_dose, simulate_low_dose_torch
from ldct_clip.simulation.pairs import simulate_dose_pair
from ldct_clip.simulation.phantom import make_phantom
from ldct_clip.simulation.protocol import ScanProtocol
from ldct_clip.transforms import CTNoise, RandCTNoise

PX = 6.0


def test_protocol_is_frozen_and_normalises_numbers():
    scan = ScanProtocol(incident_flux=np.int64(100000), num_views=64.0, pixel_size_mm=np.float32(0.5))
    assert type(scan.incident_flux) is float and type(scan.num_views) is int and type(scan.pixel_size_mm) is float
    with pytest.raises(dataclasses.FrozenInstanceError):
        scan.incident_flux = 1.0  # type: ignore[misc]
    assert scan.views_for(512) == 64 and ScanProtocol().views_for(512) == 720
    assert hash(scan) == hash(ScanProtocol(incident_flux=1e5, num_views=64, pixel_size_mm=0.5))


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(method="fastest"), "method must be"),
        (dict(geometry="fan", method="sector"), "parallel beam only"),
        (dict(electronic_noise_var=-1.0), "electronic_noise_var"),
        (dict(mu_water=0.0), "mu_water"),
        (dict(source_distance_mm=float("inf")), "source_distance_mm"),
        (dict(num_views=True), "num_views"),
    ],
)
def test_protocol_refuses_bad_fields_on_construction(fields, match):
    with pytest.raises(InputError, match=match):
        ScanProtocol(**fields)


def test_entry_points_take_a_protocol_or_its_fields_and_give_the_same_noise():
    img = make_phantom((48, 48, 2), seed=1)
    scan = ScanProtocol(pixel_size_mm=PX, filter_name="hann", num_views=64)
    for method in ("reference", "sector"):
        by_protocol = simulate_low_dose(img, 0.25, dataclasses.replace(scan, method=method), seed=2)
        by_fields = simulate_low_dose(img, 0.25, pixel_size_mm=PX, filter_name="hann", num_views=64, method=method,
                                      seed=2)
        np.testing.assert_array_equal(by_protocol, by_fields)
    # keywords replace the protocol's fields: a coarser filter there, overridden back to hann here
    mixed = simulate_low_dose(img, 0.25, dataclasses.replace(scan, filter_name="ramp"), filter_name="hann", seed=2)
    np.testing.assert_array_equal(mixed, simulate_low_dose(img, 0.25, scan, seed=2))
    low, normal = simulate_dose_pair(img, 0.25, scan, seed=3)
    low2, normal2 = simulate_dose_pair(img, 0.25, seed=3, pixel_size_mm=PX, filter_name="hann", num_views=64)
    np.testing.assert_array_equal(low, low2)
    np.testing.assert_array_equal(normal, normal2)
    with pytest.raises(TypeError, match="unknown scan protocol field"):
        simulate_low_dose(img, 0.25, pixel_size=PX)


def test_torch_entry_point_checks_its_protocol():
    planes = torch.from_numpy(make_phantom((48, 48), seed=1)[None].astype(np.float32))
    with pytest.raises(InputError, match="numpy simulator"):
        simulate_low_dose_torch(planes, 0.25, ScanProtocol(method="reference"), seeds=[0])
    with pytest.raises(InputError, match="inside the field of view"):
        simulate_low_dose_torch(planes, 0.25, seeds=[0], geometry="fan", pixel_size_mm=PX, source_distance_mm=50.0)
    out = simulate_low_dose_torch(planes, 0.25, ScanProtocol(pixel_size_mm=PX), seeds=[0])
    assert out.shape == planes.shape and float((out - planes).std()) > 1.0


def test_gaussian_training_noise_is_monai_rand_gaussian_noise_in_hu():
    from monai.transforms import RandGaussianNoise

    clean = np.zeros((1, 64, 64), np.float32)
    ours = RandCTNoise(sigma=5.0, hu_window=(-160.0, 240.0)).set_random_state(7)(clean)
    monai_noise = RandGaussianNoise(prob=1.0, std=5.0 / 255.0 * 400.0, sample_std=False)
    monai_noise.set_random_state(7)
    np.testing.assert_allclose(ours, np.asarray(monai_noise(clean)), rtol=1e-6)
    np.testing.assert_allclose(add_gaussian_noise(clean, 5.0, hu_window=(-160.0, 240.0), seed=7), ours, rtol=1e-6)
    assert gaussian_training_noise(5.0).std == pytest.approx(5.0 / 255.0 * 4096.0)


def test_ctnoise_is_a_deprecated_name_of_randctnoise():
    with pytest.warns(FutureWarning, match="RandCTNoise"):
        old = CTNoise(sigma=5.0)
    assert isinstance(old, RandCTNoise)
    clean = np.zeros((1, 32, 32), np.float32)
    np.testing.assert_array_equal(old.set_random_state(1)(clean), RandCTNoise(sigma=5.0).set_random_state(1)(clean))
