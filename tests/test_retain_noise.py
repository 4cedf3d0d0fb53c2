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
    out = RetainNoised(keys="pred", reference_key="image_hu", fraction=0.15)(data)
    assert isinstance(out["pred"], MetaTensor)
    torch.testing.assert_close(out["pred"].affine, affine.to(out["pred"].affine.dtype))
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
