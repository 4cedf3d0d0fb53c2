"""Checkpoint files: round trip, the authors' layout, and bad files with clear errors."""

from __future__ import annotations

import pytest
import torch

from conftest import PARITY, tiny_model
from ldct_clip.checkpoints import extract_state_dict, infer_config, load_checkpoint, load_weights, save_checkpoint
from ldct_clip.errors import WeightsError


def test_round_trip_same_output(tmp_path):
    model = tiny_model(seed=3).eval()
    path = save_checkpoint(model, tmp_path / "sub" / "model.pt")
    loaded = load_checkpoint(path).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_same_weights_give_the_same_bytes(tmp_path):
    # a provenance file's SHA-256 is reproducible: saving the same weights again, anywhere, writes the same file
    import hashlib

    digests = {hashlib.sha256(save_checkpoint(tiny_model(seed=3), tmp_path / d / "m.pt").read_bytes()).hexdigest()
               for d in ("a", "b")}
    assert len(digests) == 1


def test_plain_state_dict_is_what_monai_reads(tmp_path):
    # MONAI's CheckpointLoader and ckpt_export read a plain state dict with weights_only=True
    path = save_checkpoint(tiny_model(), tmp_path / "model.pt")
    state = torch.load(path, weights_only=True)
    assert set(state) == set(tiny_model().state_dict())


def test_authors_file_drops_only_layer4(tmp_path):
    raw = torch.load(PARITY / "tiny_ct_checkpoint.pth", weights_only=True)
    assert any(k.startswith("encoder.layer4.") for k in raw["params"])
    model = load_checkpoint(PARITY / "tiny_ct_checkpoint.pth")
    assert infer_config(model.state_dict())["layers"][:3] == [1, 1, 1]
    # params_ema is read when asked for
    torch.save({"params": raw["params"], "params_ema": {k: v * 0 for k, v in raw["params"].items()}}, tmp_path / "ema.pth")
    ema = load_checkpoint(tmp_path / "ema.pth", param_key="params_ema")
    assert torch.count_nonzero(ema.last.weight) == 0
    assert torch.count_nonzero(load_checkpoint(tmp_path / "ema.pth").last.weight) > 0


def test_unused_encoder_keys_are_the_weights_modules_list():
    from ldct_clip.weights import UNUSED_ENCODER_PREFIXES

    state = dict(tiny_model().state_dict())
    extra = {f"encoder.{prefix}0.weight": torch.zeros(1) for prefix in UNUSED_ENCODER_PREFIXES}
    assert set(extract_state_dict({"params": {**state, **extra}})) == set(state)


def test_inferred_rgb_config():
    model = load_checkpoint(PARITY / "tiny_rgb_checkpoint.pth")
    assert (model.in_channels, model.out_channels, model.encoder.layers[:3], model.encoder.width) == (3, 3, [2, 1, 2], 8)
    assert model.last.bias is not None and model.first is None


def test_truncated_file(tmp_path):
    good = save_checkpoint(tiny_model(), tmp_path / "model.pt").read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(WeightsError, match="truncated|not a readable"):
        load_checkpoint(bad)


def test_text_file(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("these are not weights\n")
    with pytest.raises(WeightsError, match="not a readable PyTorch weight file"):
        load_checkpoint(bad)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_missing_keys_are_named(tmp_path):
    state = tiny_model().state_dict()
    del state["up_path.2.conv_block.block.0.weight"]
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(WeightsError, match=r"missing keys \(1\): up_path\.2\.conv_block\.block\.0\.weight"):
        load_checkpoint(tmp_path / "m.pt")


def test_unexpected_keys_are_named(tmp_path):
    state = tiny_model().state_dict()
    state["extra.head.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(WeightsError, match=r"unexpected keys \(1\): extra\.head\.weight"):
        load_checkpoint(tmp_path / "m.pt")


def test_wrong_shapes_are_named(tmp_path):
    state = tiny_model().state_dict()
    state["up_path.0.conv_block.block.2.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(WeightsError, match=r"wrong shapes .*up_path\.0\.conv_block\.block\.2\.weight"):
        load_checkpoint(tmp_path / "m.pt")


def test_load_weights_into_differently_shaped_model(tmp_path):
    path = save_checkpoint(tiny_model(), tmp_path / "m.pt")
    other = tiny_model(layers=[1, 2, 1, 1])
    with pytest.raises(WeightsError, match=r"missing keys \(\d+\): encoder\.layer2\.1\."):
        load_weights(other, path)


def test_pickled_code_is_not_executed(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('pwned')" % str(tmp_path / "pwned"),))

    torch.save({"params": {"x": Boom()}}, tmp_path / "evil.pth", _use_new_zipfile_serialization=True)
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()
