"""How the network runs: precision policy, BatchNorm folding, slices per call."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_model
from ldct_clip.inference import SliceSlidingWindowInferer, denoise_volume
from ldct_clip.simulation.phantom import make_phantom
from ldct_clip.engine.precision import (
    cpu_has_native_bf16,
    default_sw_batch_size,
    fold_batchnorm,
    prepare_model,
    resolve_precision,
)
from ldct_clip.ct.hu import hu_to_unit


def _model_with_real_bn_stats():
    model = tiny_model(layers=[2, 1, 2, 1]).eval()
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


def test_fold_batchnorm_same_function_and_original_untouched():
    model = _model_with_real_bn_stats()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0  # a copy was folded
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_prepare_model_is_eval_channels_last():
    model = _model_with_real_bn_stats().train()
    ready = prepare_model(model, "cpu")
    assert not ready.training
    assert ready.last.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.training  # the caller's model is not changed


def test_resolve_precision():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    with pytest.raises(ValueError, match="CUDA only"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("int8", "cpu")


def test_default_slices_per_call():
    assert default_sw_batch_size("cpu") == 2 and default_sw_batch_size("cuda") == 16


def _image_like_model(head_precision: str, hu: np.ndarray) -> torch.nn.Module:
    """A tiny model whose last conv is fitted by least squares to reproduce ``hu``: an output that looks like CT,
    so that precision loss shows in HU (random weights give a near-constant output that hides it)."""
    model = tiny_model(seed=2, width=16, head_precision=head_precision).eval()
    x = torch.as_tensor(hu_to_unit(hu)).permute(2, 0, 1)[:, None].float()
    feats = []
    handle = model.last.register_forward_hook(lambda m, i, o: feats.append(i[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    cols = torch.nn.functional.unfold(feats[0], 3, padding=1)
    a = cols.permute(0, 2, 1).reshape(-1, cols.shape[1]).double()
    w = torch.linalg.lstsq(a, x.reshape(-1, 1).double()).solution.float()
    model.last.weight.data.copy_(w.reshape(model.last.weight.shape))
    return prepare_model(model, "cpu")


def test_bf16_fast_path_stays_within_a_hu_of_fp32():
    hu = make_phantom((96, 96, 4), seed=1)
    errors = {}
    for head_precision in ("split", "autocast"):
        model = _image_like_model(head_precision, hu)
        fp32 = denoise_volume(hu, model, precision="fp32")
        assert np.abs(fp32 - hu).mean() < 15.0  # the fit makes the output CT-like
        errors[head_precision] = np.abs(denoise_volume(hu, model, precision="bf16") - fp32)
    # the default keeps the fidelity bar; plain autocast does not (so the test can tell them apart)
    assert errors["split"].mean() < 1.0 and errors["split"].max() < 10.0
    assert errors["autocast"].max() > 10.0


def test_inference_runs_a_model_left_in_training_mode_in_eval_mode():
    # load_checkpoint (like any torch module) returns a module in training mode: batch-statistics BatchNorm and
    # random feature augmentation would change the output; every inference entry point goes through the inferer
    model = _model_with_real_bn_stats()
    hu = make_phantom((64, 64, 3), seed=3)
    x = torch.as_tensor(hu_to_unit(hu)).permute(2, 0, 1)[:, None].float()
    with torch.no_grad():
        eval_out = model(x)
        model.train()
        train_out = model(x)
    assert (train_out - eval_out).abs().max() * 4096 > 20.0  # training mode is really different here (HU)
    expected = denoise_volume(hu, model.eval(), precision="fp32")
    got = denoise_volume(hu, model.train(), precision="fp32")
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert model.training and all(m.training for m in model.modules())  # the caller's mode is given back
    # the bundle's inferer itself, on a (B, C, X, Y, Z) volume
    inferer = SliceSlidingWindowInferer(roi_size=(64, 64), sw_batch_size=2, precision="fp32")
    vol = x.permute(1, 2, 3, 0)[None]
    torch.testing.assert_close(inferer(vol, model), inferer(vol, model.eval()), atol=1e-6, rtol=0)
