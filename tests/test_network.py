"""CLIPDenoiser: parity with the reference, frozen encoder, feature augmentation, odd sizes."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import PARITY, tiny_model
from ldct_clip.checkpoints import load_checkpoint
from ldct_clip.networks import CLIPDenoiser


@pytest.mark.parametrize("case", ["tiny_ct", "tiny_rgb"])
def test_reference_parity(case):
    io = torch.load(PARITY / f"{case}_io.pt", weights_only=True)
    model = load_checkpoint(PARITY / f"{case}_checkpoint.pth").eval()
    assert model.in_channels == io["config"]["inp_channels"]
    with torch.no_grad():
        out = model(io["input"])
    assert out.shape == io["expected_output"].shape
    assert (out - io["expected_output"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("manifest,in_channels", [("rn50_ct", 1), ("rn50_rgb", 3)])
def test_rn50_state_dict_matches_authors_layout(manifest, in_channels):
    keys = json.loads((PARITY / f"{manifest}_checkpoint_keys.json").read_text())
    expected = {k: v for k, v in keys.items() if not k.startswith("encoder.layer4.")}
    model = CLIPDenoiser(in_channels=in_channels, out_channels=in_channels, encoder="RN50")
    state = model.state_dict()
    assert set(state) == set(expected)
    assert all(list(state[k].shape) == expected[k] for k in state)
    # the paper's figures: ~19.55M parameters without layer4, ~11.0M of them trainable (CT model)
    if in_channels == 1:
        assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - 19.55) < 0.01
        assert abs(sum(p.numel() for p in model.trainable_parameters()) / 1e6 - 10.99) < 0.01


def test_layer4_and_attnpool_are_not_built():
    model = tiny_model()
    names = [n for n, _ in model.named_modules()]
    assert not any("layer4" in n or "attnpool" in n for n in names)


def test_encoder_unchanged_after_optimizer_step():
    model = tiny_model(aug_level=0.025).train()
    encoder_before = {k: v.clone() for k, v in model.encoder.named_parameters()}
    decoder_before = model.last.weight.clone()
    params = list(model.trainable_parameters())
    assert not any(p is q for p in params for q in model.encoder.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-4)
    x = torch.rand(2, 1, 64, 64)
    loss = torch.nn.functional.l1_loss(model(x + 0.02 * torch.randn_like(x)), x)
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in model.encoder.parameters())
    for k, v in model.encoder.named_parameters():
        assert torch.equal(v, encoder_before[k]), k
    assert not torch.equal(model.last.weight, decoder_before)


def test_encoder_bn_modes():
    x = torch.rand(2, 1, 64, 64)
    ref = tiny_model(encoder_bn="train").train()
    before = ref.encoder.bn1.running_mean.clone()
    ref(x)
    assert not torch.equal(ref.encoder.bn1.running_mean, before)  # reference behaviour: stats update

    frozen = tiny_model(encoder_bn="frozen").train()
    assert not frozen.encoder.training and frozen.last.training
    before = frozen.encoder.bn1.running_mean.clone()
    frozen(x)
    assert torch.equal(frozen.encoder.bn1.running_mean, before)


def test_feature_augmentation_only_in_training():
    model = tiny_model(aug_level=0.5, encoder_bn="frozen")
    x = torch.rand(1, 1, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert not torch.equal(a, b)
    # with aug_level 0 training mode is deterministic again (BN frozen): the difference came from augmentation
    model.aug_level = 0.0
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("shape", [(33, 47), (64, 96), (100, 31), (20, 20), (128, 65)])
def test_odd_image_sizes(shape):
    model = tiny_model().eval()
    x = torch.rand(2, 1, *shape)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_padding_is_reflect_and_cropped_back():
    # an image padded by hand with reflection gives the same result on the original region
    model = tiny_model().eval()
    x = torch.rand(1, 1, 50, 70)
    padded = torch.nn.functional.pad(x, (0, 26, 0, 14), mode="reflect")
    with torch.no_grad():
        assert torch.allclose(model(x), model(padded)[..., :50, :70], atol=1e-6)


def test_torchscript_matches_eager():
    model = tiny_model().eval()
    scripted = torch.jit.script(model)
    x = torch.rand(1, 1, 40, 72)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-5)


@pytest.mark.parametrize("head_precision", ["split", "fp32"])
def test_bf16_keeps_output_in_fp32(head_precision):
    model = tiny_model(head_precision=head_precision).eval()
    x = torch.rand(1, 1, 64, 64)
    seen = {}

    def record(module, inputs, output):
        seen["dtype"] = output.dtype

    model.last.register_forward_hook(record)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    assert seen["dtype"] == torch.float32
    model.head_precision = "autocast"
    seen.clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    assert seen["dtype"] == torch.bfloat16


def test_bad_arguments():
    with pytest.raises(ValueError, match="in_channels"):
        CLIPDenoiser(in_channels=2, layers=[1, 1, 1, 1], width=8)
    with pytest.raises(ValueError, match="encoder_bn"):
        CLIPDenoiser(layers=[1, 1, 1, 1], width=8, encoder_bn="eval")
    with pytest.raises(Exception, match="not an open_clip ResNet"):
        CLIPDenoiser(encoder="ViT-B-32")


def test_split_head_is_the_same_function():
    # in fp32 the split evaluation of the last block equals the plain one
    model = tiny_model().eval()
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        image = model._adapt(x)
        y = model._decode(model.encoder(image))
        assert torch.allclose(model._head_split(y, image), model._head(y, image), atol=1e-6)


def test_bf16_fidelity_ordering():
    # error against fp32: autocast everywhere > split head >= fp32 head (on an output that is image-like)
    model = tiny_model(seed=4).eval()
    torch.nn.init.zeros_(model.last.weight)
    with torch.no_grad():
        model.last.weight[0, :, 1, 1] = 1.0 / model.last.weight.shape[1]
    x = torch.rand(1, 1, 64, 64) * 0.5 + 0.25
    with torch.no_grad():
        ref = model(x)
        errors = {}
        for mode in ("autocast", "split", "fp32"):
            model.head_precision = mode
            with torch.autocast("cpu", dtype=torch.bfloat16):
                errors[mode] = (model(x).float() - ref).abs().mean().item()
    assert errors["autocast"] > errors["split"] >= errors["fp32"] * 0.5
