"""The noise retention of the CT postprocessing (RetainNoise / RetainNoised): a share of the removed residual
given back, exactly, on numpy and torch, with the output's type and metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from ldct_clip.transforms import RetainNoise, RetainNoised


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = rng.normal(40.0, 60.0, (1, 24, 20, 3)).astype(np.float32)
    noisy = clean + rng.normal(0.0, 30.0, clean.shape).astype(np.float32)
    return clean, noisy


@pytest.mark.parametrize("fraction", [0.0, 0.15, 0.5, 1.0])
def test_numpy_and_torch_give_the_blend(fraction):
    pred, ref = _pair()
    expected = (1.0 - fraction) * pred.astype(np.float64) + fraction * ref.astype(np.float64)
    out_np = RetainNoise(fraction)(pred, ref)
    out_t = RetainNoise(fraction)(torch.as_tensor(pred), ref)
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_np, expected, atol=1e-3)
    np.testing.assert_allclose(out_t.numpy(), expected, atol=1e-3)
    # the retained residual is the given share of what was removed
    removed = ref - pred
    np.testing.assert_allclose(out_np - pred, fraction * removed, atol=1e-3)


def test_dictionary_version_keeps_metadata_and_reference():
    pred, ref = _pair(1)
    affine = torch.diag(torch.tensor([0.7, 0.7, 2.5, 1.0]))
    data = {"pred": MetaTensor(pred, affine=affine), "image_hu": MetaTensor(ref.astype(np.int16))}
    out = RetainNoised(keys="pred", reference_key="image_hu", fraction=0.15, max_sd=5.0)(data)
    assert isinstance(out["pred"], MetaTensor)
    torch.testing.assert_close(out["pred"].affine, affine.to(out["pred"].affine.dtype))
    # 30 HU of noise: 5 / 30 is above 0.15, so the cap leaves the share as it is
    np.testing.assert_allclose(np.asarray(out["pred"]), 0.85 * pred + 0.15 * ref.astype(np.int16), atol=1e-3)
    assert out["image_hu"] is data["image_hu"]  # the input is not touched


def test_where_the_output_equals_the_input_nothing_changes():
    # voxels KeepOutsideWindow took from the input (padding, metal) come out exactly as they came in
    pred, ref = _pair(2)
    pred[..., :4, :, :] = ref[..., :4, :, :] = -3024.0
    out = RetainNoise(0.15)(pred, ref)
    np.testing.assert_array_equal(out[..., :4, :, :], -3024.0)


@pytest.mark.parametrize("fraction", [-0.1, 1.01, float("nan"), "a lot"])
def test_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(ValueError, match="noise_retention must be"):
        RetainNoise(fraction)


def test_shape_mismatch_is_refused():
    pred, ref = _pair()
    with pytest.raises(ValueError, match="differ in shape"):
        RetainNoise(0.15)(pred, ref[..., :2])


# -- the cap: at most max_sd HU (robust SD per slice) of the removed residual given back ------------------------


def _slices_with_noise(sds: tuple[float, ...], seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``(1, 128, 128, len(sds))`` soft tissue (40 HU) as the denoised image, plus Gaussian noise of SD ``sds[k]``
    in slice ``k`` as the input."""
    rng = np.random.default_rng(seed)
    pred = np.full((1, 128, 128, len(sds)), 40.0, np.float32)
    noise = np.stack([rng.normal(0.0, sd, (1, 128, 128)) for sd in sds], axis=-1).astype(np.float32)
    return pred, pred + noise


def test_cap_lowers_the_share_where_the_removed_noise_is_strong():
    pred, ref = _slices_with_noise((10.0, 25.0, 60.0, 110.0))
    out = RetainNoise(0.15, max_sd=5.0)(pred, ref)
    removed = (ref - pred).astype(np.float64)
    share = ((out - pred) * removed).sum(axis=(0, 1, 2)) / (removed * removed).sum(axis=(0, 1, 2))
    # 10 and 25 HU: 5 / sd >= 0.15, the share itself; 60 and 110 HU: 5 / sd (the robust SD of 16k samples: +-2 %)
    np.testing.assert_allclose(share[:2], 0.15, rtol=1e-5)
    np.testing.assert_allclose(share[2:], [5.0 / 60.0, 5.0 / 110.0], rtol=0.03)
    # the SD given back is about 5 HU in the capped slices, 0.15 x sd below
    np.testing.assert_allclose((out - pred).std(axis=(0, 1, 2)), [1.5, 3.75, 5.0, 5.0], rtol=0.03)
    # the same shares, as a tensor on the output's type
    out_t = RetainNoise(0.15, max_sd=5.0)(torch.as_tensor(pred), torch.as_tensor(ref))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), out, atol=1e-3)
    # no cap: the share everywhere
    np.testing.assert_allclose(RetainNoise(0.15)(pred, ref) - pred, 0.15 * removed, atol=1e-3)
    np.testing.assert_allclose(RetainNoise(0.15, max_sd=float("inf"))(pred, ref) - pred, 0.15 * removed, atol=1e-3)


def test_sd_is_measured_in_soft_tissue_only():
    # bone and air borders of the denoised image are structure, not noise: a large residual there does not count
    pred, ref = _slices_with_noise((20.0, 20.0))
    pred[0, :64, :, 1] = 1200.0  # half of slice 1 is "bone" with a residual of +-400 HU
    ref[0, :64, :, 1] = 1200.0 + np.random.default_rng(4).normal(0, 400.0, (64, 128))
    shares = RetainNoise(0.15, max_sd=2.0).shares(pred, ref)
    np.testing.assert_allclose(shares.numpy(), [0.1, 0.1], rtol=0.03)  # 2 / 20 in both slices


def test_slices_without_enough_soft_tissue_get_the_share_itself():
    pred, ref = _slices_with_noise((80.0, 80.0))
    pred[..., 1] = -1000.0  # slice 1: air only (above the head)
    ref[..., 1] = -1000.0 + (ref[..., 1] - 40.0)
    shares = RetainNoise(0.15, max_sd=5.0).shares(pred, ref).numpy()
    assert abs(shares[0] - 5.0 / 80.0) < 0.003 and shares[1] == 0.15


def test_2d_slice_is_one_slice():
    pred, ref = _slices_with_noise((60.0,))
    out2d = RetainNoise(0.15, max_sd=5.0)(pred[0, :, :, 0], ref[0, :, :, 0])
    np.testing.assert_allclose(out2d, RetainNoise(0.15, max_sd=5.0)(pred, ref)[0, :, :, 0], atol=1e-4)


@pytest.mark.parametrize("max_sd", [0, -1.0, float("nan"), "a few"])
def test_cap_must_be_positive_hu(max_sd):
    with pytest.raises(ValueError, match="noise_retention_max_sd must be"):
        RetainNoise(0.15, max_sd=max_sd)
