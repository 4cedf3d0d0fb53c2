"""Noise-level conditioning of CLIPDenoiser: the level is measured on the input itself (estimate_noise_level), the
decoder is scaled and shifted by it (NoiseLevelFiLM), and a conditioned model starts as the model it came from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_model
from ldct_clip.checkpoints import infer_config, load_checkpoint, load_weights, network_overrides, save_checkpoint
from ldct_clip.errors import WeightsError
from ldct_clip.networks import estimate_noise_level, gate_openness


def _smooth_image(n: int = 96, seed: int = 0) -> torch.Tensor:
    """A CT-like slice in [0, 1] units: a ramp, a disk and a sharp bright bar, no noise."""
    yy, xx = np.mgrid[0:n, 0:n] / n
    img = 0.24 + 0.02 * xx + 0.01 * yy
    img[(xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.08] += 0.015
    img[40:44, 10:80] = 0.5
    return torch.as_tensor(img, dtype=torch.float32)[None, None]


@pytest.mark.parametrize("sd_hu", [10.0, 40.0, 150.0])
def test_estimate_follows_white_noise_sd(sd_hu):
    g = torch.Generator().manual_seed(int(sd_hu))
    clean = _smooth_image()
    noisy = clean + sd_hu / 4096 * torch.randn(clean.shape, generator=g)
    estimate = float(estimate_noise_level(noisy)[0]) * 4096
    assert abs(estimate - sd_hu) < 0.12 * sd_hu, estimate
    assert float(estimate_noise_level(clean)[0]) * 4096 < 1.0  # the ramp, disk and bar are not noise


def test_estimate_ignores_clipped_air_and_is_per_image():
    g = torch.Generator().manual_seed(3)
    clean = _smooth_image()
    noisy = clean + 30 / 4096 * torch.randn(clean.shape, generator=g)
    padded = noisy.clone()
    padded[..., :, :60] = 0.0  # 60 % of the slice clipped to the window's floor (air, scanner padding)
    both = torch.cat([noisy, padded, clean + 80 / 4096 * torch.randn(clean.shape, generator=g)])
    levels = estimate_noise_level(both) * 4096
    assert abs(float(levels[1]) - float(levels[0])) < 0.15 * 30  # the zeros do not pull the median down
    assert float(levels[2]) > 2 * float(levels[0])  # each image its own level


def test_conditioned_model_starts_as_the_model_it_came_from(tmp_path):
    plain = tiny_model(0).eval()
    path = save_checkpoint(plain, tmp_path / "plain.pt")
    conditioned = tiny_model(1, noise_conditioning=True).eval()
    with pytest.raises(WeightsError, match="noise_film"):  # strict unless the new module is named
        load_weights(conditioned, path)
    load_weights(conditioned, path, new_prefixes=("noise_film.",))
    x = _smooth_image(64) + 0.01 * torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(conditioned(x), plain(x))


def test_level_changes_the_decoder_and_checkpoints_keep_it(tmp_path):
    model = tiny_model(2, noise_conditioning=True).eval()
    for head in model.noise_film.heads:  # as after training: the conditioning is no longer an identity
        torch.nn.init.normal_(head.weight, std=0.2, generator=torch.Generator().manual_seed(4))
    (low_scale, _), *_ = model.noise_film.condition(torch.tensor([[10 / 4096, 5 / 4096, 2.5 / 4096]]))
    (high_scale, _), *_ = model.noise_film.condition(torch.tensor([[150 / 4096, 75 / 4096, 38 / 4096]]))
    assert (low_scale - high_scale).abs().max() > 0.01
    path = save_checkpoint(model, tmp_path / "conditioned.pt")
    assert infer_config(torch.load(path, weights_only=True))["noise_conditioning"] is True
    loaded = load_checkpoint(path).eval()
    x = _smooth_image(64) + 0.02 * torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
        torch.testing.assert_close(torch.jit.script(loaded)(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["film", "expert"])
def test_conditioned_model_exports_to_onnx(tmp_path, kind):
    # the level estimate is a sort and a gather (not nanmedian), so the exported graph measures it too; the
    # trace runs the expert whatever the level of the example (here noise-free), so the graph holds at every level
    ort = pytest.importorskip("onnxruntime", reason="the export extra (pip install 'ldct-clip[export]')")
    expert = {"noise_expert": infer_config(tiny_model(8).state_dict()), "noise_expert_gate": (20 / 4096, 40 / 4096)}
    model = tiny_model(3, noise_conditioning=True, **(expert if kind == "expert" else {})).eval()
    for head in model.noise_film.heads:
        torch.nn.init.normal_(head.weight, std=0.2, generator=torch.Generator().manual_seed(5))
    path = tmp_path / "conditioned.onnx"
    torch.onnx.export(model, (_smooth_image(64),), str(path), input_names=["image"], output_names=["pred"],
                      dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}}, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape, sd in (((1, 1, 96, 96), 10.0), ((2, 1, 77, 101), 120.0), ((1, 1, 64, 64), 30.0)):
        x = (_smooth_image(128)[..., : shape[2], : shape[3]].numpy().repeat(shape[0], 0)
             + rng.normal(0, sd / 4096, shape)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(session.run(None, {"image": x})[0], expected, atol=1e-4, rtol=0)


def _trained_heads(model, seed: int) -> None:
    """As after training: the conditioning is no longer an identity."""
    for head in model.noise_film.heads:
        torch.nn.init.normal_(head.weight, std=0.2, generator=torch.Generator().manual_seed(seed))
        torch.nn.init.normal_(head.bias, std=0.2, generator=torch.Generator().manual_seed(seed + 1))


def test_gate_keeps_the_model_it_came_from_below_low_and_conditions_above_high(tmp_path):
    plain = tiny_model(0).eval()
    path = save_checkpoint(plain, tmp_path / "plain.pt")
    gate = (20 / 4096, 40 / 4096)
    gated = tiny_model(1, noise_conditioning=True, noise_gate=gate).eval()
    load_weights(gated, path, new_prefixes=("noise_film.",))
    _trained_heads(gated, 6)
    ungated = tiny_model(1, noise_conditioning=True).eval()
    ungated.load_state_dict({**gated.state_dict(), "noise_film.gate": torch.zeros(2)})
    g = torch.Generator().manual_seed(2)
    clean = _smooth_image(64)
    quiet = clean + 8 / 4096 * torch.randn(clean.shape, generator=g)  # scale-1 level ~8 HU: below the gate
    loud = clean + 120 / 4096 * torch.randn(clean.shape, generator=g)  # ~120 HU: above it
    with torch.no_grad():
        torch.testing.assert_close(gated(quiet), plain(quiet))  # exactly the model it came from
        assert (ungated(quiet) - plain(quiet)).abs().max() > 1e-3  # which the trained conditioning alone is not
        torch.testing.assert_close(gated(loud), ungated(loud))
        assert (gated(loud) - plain(loud)).abs().max() > 1e-3
        levels = torch.tensor([[10.0], [30.0], [50.0]]) / 4096 * torch.ones(1, 3)
        torch.testing.assert_close(gated.noise_film.openness(levels), torch.tensor([0.0, 0.5, 1.0]))
    # the gate travels with the weights, and weights saved before it existed load with an open gate
    loaded = load_checkpoint(save_checkpoint(gated, tmp_path / "gated.pt")).eval()
    torch.testing.assert_close(loaded.noise_film.gate, torch.tensor(gate))
    state = {k: v for k, v in gated.state_dict().items() if k != "noise_film.gate"}
    torch.save(state, tmp_path / "before_the_gate.pt")
    assert load_checkpoint(tmp_path / "before_the_gate.pt").noise_film.gate.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="gate"):
        tiny_model(1, noise_conditioning=True, noise_gate=(0.01, 0.005))


def test_noise_expert_takes_over_above_its_gate_only(tmp_path):
    base, expert = tiny_model(0).eval(), tiny_model(7).eval()
    gate = (20 / 4096, 40 / 4096)
    model = tiny_model(0, noise_expert=infer_config(expert.state_dict()), noise_expert_gate=gate).eval()
    model.load_state_dict({**base.state_dict(), **{f"noise_expert.{k}": v for k, v in expert.state_dict().items()},
                           "noise_expert_gate": torch.tensor(gate)})
    calls = []
    model.noise_expert.register_forward_hook(lambda *_: calls.append(1))
    g = torch.Generator().manual_seed(5)
    clean = _smooth_image(64)
    quiet = clean + 8 / 4096 * torch.randn(clean.shape, generator=g)  # scale-1 level ~8 HU
    loud = clean + 120 / 4096 * torch.randn(clean.shape, generator=g)
    middle = clean + 30 / 4096 * torch.randn(clean.shape, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(model(quiet), base(quiet))
        assert not calls  # below the gate the expert is not even run
        torch.testing.assert_close(model(loud), expert(loud))
        share = float(gate_openness(estimate_noise_level(middle)[:, 0], torch.tensor(gate)))
        assert 0.2 < share < 0.8
        torch.testing.assert_close(model(middle), base(middle) + share * (expert(middle) - base(middle)))
        both = torch.cat([quiet, loud])  # each image its own share
        torch.testing.assert_close(model(both), torch.cat([base(quiet), expert(loud)]))
    # a fixed model: never trained with the one that carries it
    assert not any(p is q for p in model.trainable_parameters() for q in model.noise_expert.parameters())
    assert not model.train().noise_expert.training
    # the checkpoint shapes the network, expert and gate included, for every door
    path = save_checkpoint(model.eval(), tmp_path / "experts.pt")
    loaded = load_checkpoint(path).eval()
    torch.testing.assert_close(loaded.noise_expert_gate, torch.tensor(gate))
    overrides = network_overrides(path)
    assert overrides["network_def#noise_expert"]["width"] == expert.encoder.width
    with torch.no_grad():
        for x in (quiet, loud, middle):
            torch.testing.assert_close(loaded(x), model(x))
            torch.testing.assert_close(torch.jit.script(loaded)(x), model(x), atol=1e-5, rtol=1e-5)
    assert "noise_expert_gate" not in tiny_model(0).state_dict()  # plain models keep their keys
    with pytest.raises(ValueError, match="noise_expert_gate"):
        tiny_model(0, noise_expert=infer_config(expert.state_dict()), noise_expert_gate=(0.01, 0.005))
