"""Procedural abdomen phantom and the low-dose example pair."""

from __future__ import annotations

import numpy as np
import pytest

from ldct_clip.errors import InputError
from ldct_clip.metrics import noise_sd
from ldct_clip.phantom import HU, make_low_dose_example, make_phantom

SHAPE = (128, 128, 8)


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return make_phantom(SHAPE, seed=0)


def fraction(vol: np.ndarray, lo: float, hi: float) -> float:
    return float(np.mean((vol >= lo) & (vol <= hi)))


def test_shape_dtype_and_determinism(phantom):
    assert phantom.shape == SHAPE and phantom.dtype == np.float32
    np.testing.assert_array_equal(phantom, make_phantom(SHAPE, seed=0))
    assert not np.array_equal(phantom, make_phantom(SHAPE, seed=1))
    assert make_phantom((64, 48)).shape == (64, 48)


def test_hu_ranges_of_tissues(phantom):
    assert phantom.min() >= -1000.0 - 1e-3 and phantom.max() <= 1000.0
    # corners are air
    assert np.all(phantom[:4, :4] == -1000.0) and np.all(phantom[-4:, -4:] == -1000.0)
    assert fraction(phantom, -1000.0, -990.0) > 0.2  # air outside the body
    assert fraction(phantom, -120.0, -70.0) > 0.05  # subcutaneous / visceral fat
    assert fraction(phantom, 30.0, 75.0) > 0.10  # muscle, liver, spleen
    assert fraction(phantom, 600.0, 1000.0) > 0.002  # cortical bone
    assert fraction(phantom, 180.0, 220.0) > 0.001  # contrast-enhanced aorta


def test_bowel_gas_inside_body(phantom):
    body = np.zeros_like(phantom, dtype=bool)
    # pixels with soft tissue both left and right of them along X and Y are inside the body
    tissue = phantom > -200.0
    for k in range(phantom.shape[2]):
        t = tissue[:, :, k]
        body[:, :, k] = (
            (np.maximum.accumulate(t, 0) & np.maximum.accumulate(t[::-1], 0)[::-1])
            & (np.maximum.accumulate(t, 1) & np.maximum.accumulate(t[:, ::-1], 1)[:, ::-1])
        )
    gas = (phantom < -800.0) & body
    assert gas.sum() > 20


def test_low_contrast_lesions_exist():
    flat = make_phantom((256, 256, 16), texture_hu=0.0, seed=0)
    liver = HU["liver"]
    assert np.isclose(flat, liver).sum() > 1000
    lesion_values = [liver + HU["lesion_delta"], liver - HU["lesion_delta"]]
    assert all(np.isclose(flat, v).sum() > 5 for v in lesion_values)


def test_slices_vary_smoothly_along_z(phantom):
    first, last = phantom[:, :, 0], phantom[:, :, -1]
    assert not np.array_equal(first, last)
    neighbour = np.mean([np.abs(phantom[:, :, k + 1] - phantom[:, :, k]).mean() for k in range(SHAPE[2] - 1)])
    assert np.abs(last - first).mean() > 1.5 * neighbour


def test_texture_is_mild_and_smooth():
    textured = make_phantom(SHAPE, seed=0).astype(np.float64)
    flat = make_phantom(SHAPE, seed=0, texture_hu=0.0).astype(np.float64)
    diff = (textured - flat)[np.abs(flat - HU["liver"]) < 0.5]
    assert 1.0 < diff.std() < 8.0
    assert np.all(textured[flat == -1000.0] == -1000.0)  # no texture in air


def test_bad_shape_raises():
    with pytest.raises(InputError):
        make_phantom((8, 8, 2))
    with pytest.raises(InputError):
        make_phantom((64,))


def test_low_dose_example_pair():
    shape = (128, 128, 2)
    ld, nd = make_low_dose_example(shape, dose_fraction=0.25, seed=0)
    clean = make_phantom(shape, seed=0)
    assert ld.shape == nd.shape == shape and ld.dtype == nd.dtype == np.float32
    roi = (slice(54, 74), slice(54, 74), slice(None))
    sd_nd = noise_sd(nd - clean, roi)
    sd_ld = noise_sd(ld - clean, roi)
    assert 3.0 < sd_nd < 40.0
    assert sd_ld / sd_nd == pytest.approx(2.0, rel=0.15)  # quarter dose: twice the noise
    # deterministic for a seed; the mean HU is kept
    ld2, nd2 = make_low_dose_example(shape, dose_fraction=0.25, seed=0)
    np.testing.assert_array_equal(ld, ld2)
    np.testing.assert_array_equal(nd, nd2)
    assert abs(float((ld - clean)[roi].mean())) < 3.0
