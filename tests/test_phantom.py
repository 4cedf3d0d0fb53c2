"""Procedural abdomen phantom and the low-dose example pair."""

from __future__ import annotations

import numpy as np
import pytest

from ldct_clip.errors import InputError
from ldct_clip.metrics import noise_sd
from ldct_clip.simulation.phantom import HU, make_low_dose_example, make_phantom

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


# -- other body regions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["chest", "head", "neck"])
def test_regions_are_deterministic_and_distinct(region):
    vol = make_phantom((96, 96, 3), region=region, seed=0)
    assert vol.shape == (96, 96, 3) and vol.dtype == np.float32
    np.testing.assert_array_equal(vol, make_phantom((96, 96, 3), region=region, seed=0))
    assert not np.array_equal(vol, make_phantom((96, 96, 3), region=region, seed=1))
    assert not np.array_equal(vol, make_phantom((96, 96, 3), seed=0))  # not the abdomen
    assert np.all(vol[:3, :3] == -1000.0) and vol.max() <= 1100.0


def test_chest_has_lungs_with_vessels_heart_and_bone():
    flat = make_phantom((256, 256, 4), region="chest", texture_hu=0.0, seed=0)
    assert np.isclose(flat, HU["lung"]).mean() > 0.08  # two lungs fill much of the slice
    assert np.isclose(flat, HU["lung_vessel"]).sum() > 30  # small vessels inside them
    assert np.isclose(flat, HU["myocardium"]).sum() > 500 and np.isclose(flat, HU["blood"]).sum() > 200
    assert (flat > 600).mean() > 0.002  # ribs, sternum, vertebra
    textured = make_phantom((256, 256, 4), region="chest", seed=0)
    lung = np.isclose(flat, HU["lung"])
    assert 5.0 < (textured - flat)[lung].std() < 60.0  # parenchyma texture


def test_head_has_skull_grey_white_matter_ventricles_and_lesions():
    flat = make_phantom((256, 256, 3), region="head", texture_hu=0.0, seed=0)
    assert (flat > 900).mean() > 0.01  # skull
    for tissue in ("grey_matter", "white_matter", "ventricle"):
        assert np.isclose(flat, HU[tissue]).sum() > 100, tissue
    # low-contrast lesions: values a few HU off white matter
    off = np.abs(flat - HU["white_matter"])
    assert ((off > 3) & (off < 9) & (np.abs(flat - HU["grey_matter"]) > 1)).sum() > 20


def test_neck_has_airway_thyroid_vessels_and_spine():
    flat = make_phantom((192, 192, 3), region="neck", texture_hu=0.0, seed=0)
    body = ndimage_fill(flat > -500)
    assert ((flat < -990) & body).sum() > 50  # trachea inside the neck
    assert np.isclose(flat, HU["thyroid"]).sum() > 100
    assert np.isclose(flat, HU["aorta"]).sum() > 20  # carotids
    assert (flat > 600).sum() > 100  # cervical vertebra


def ndimage_fill(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return np.stack([ndimage.binary_fill_holes(mask[:, :, k]) for k in range(mask.shape[2])], axis=2)


def test_pixel_spacing_sets_the_field_of_view():
    # the same anatomy in mm: a finer grid over half the field of view shows the centre magnified
    wide = make_phantom((128, 128), region="head", pixel_size_mm=2.0, seed=3)
    zoom = make_phantom((128, 128), region="head", pixel_size_mm=1.0, seed=3)
    assert (wide > -500).mean() < (zoom > -500).mean()


def test_unknown_region_raises():
    with pytest.raises(InputError, match="region"):
        make_phantom((64, 64), region="knee")


def test_low_dose_example_of_a_region():
    ld, nd = make_low_dose_example((96, 96, 1), 0.25, seed=0, region="head")
    clean = make_phantom((96, 96, 1), region="head", seed=0)
    assert ld.shape == nd.shape == clean.shape
    assert np.std(ld - clean) > np.std(nd - clean) > 0
