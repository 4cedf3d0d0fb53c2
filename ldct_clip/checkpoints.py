"""Checkpoint files of CLIPDenoiser: the authors' basicsr files and this project's own.

This project's format is a plain ``state_dict`` (what MONAI's ``CheckpointLoader`` and
``python -m monai.bundle ckpt_export`` read, and what ``models/model.pt`` of a bundle holds). The
authors' release wraps the same keys as ``{'params': state_dict}`` (sometimes also ``params_ema``) and
adds the unused ``encoder.layer4.*``. The network's shape is inferred from the tensors, so no side
configuration is needed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ldct_clip.errors import WeightsError
from ldct_clip.atomic import atomic_path
from ldct_clip.networks import CLIPDenoiser
from ldct_clip.weights import SHIPPED_WEIGHTS, UNUSED_ENCODER_PREFIXES, read_state_dict, resolve_weights

__all__ = [
    "network_overrides",
    "extract_state_dict",
    "infer_config",
    "load_checkpoint",
    "load_weights",
    "network_for_weights",
    "save_checkpoint",
]

# the encoder keys a checkpoint may hold that the network never builds
_UNUSED_KEYS = tuple("encoder." + prefix for prefix in UNUSED_ENCODER_PREFIXES)


def extract_state_dict(obj: Any, param_key: str = "params") -> dict[str, torch.Tensor]:
    """Return the model state dict from a loaded checkpoint object, without the encoder keys the network never builds
    (``encoder.layer4.*``, ``encoder.attnpool.*``: :data:`~ldct_clip.weights.UNUSED_ENCODER_PREFIXES`), and with
    an open ``noise_film.gate`` for a noise-conditioned state dict saved before the gate existed.

    Accepts ``{'params': sd}`` / ``{'params_ema': sd}`` (basicsr), ``{'model': sd}`` / ``{'network': sd}``
    (MONAI ``CheckpointSaver`` with several objects), ``{'state_dict': sd}``, or a plain state dict.
    """
    if not isinstance(obj, Mapping):
        raise WeightsError(f"the checkpoint holds a {type(obj).__name__}, not a state dict")
    for key in (param_key, "params", "params_ema", "model", "network", "state_dict"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    state = {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad or not state:
        raise WeightsError(f"the checkpoint is not a CLIPDenoiser state dict (non-tensor entries: {bad[:5]})")
    state = {k: v for k, v in state.items() if not k.startswith(_UNUSED_KEYS)}
    if any(k.startswith("noise_film.") for k in state) and "noise_film.gate" not in state:
        # a noise conditioning saved before it had a gate acted at every level: an open gate
        state["noise_film.gate"] = torch.zeros(2)
    return state


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Infer ``CLIPDenoiser`` constructor arguments (channels, width, layers, bias, noise conditioning, and the
    arguments of a noise expert, ``noise_expert.*``) from a state dict."""
    prefix = "noise_expert."
    expert = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    state = {k: v for k, v in state.items() if not k.startswith(prefix)}
    try:
        width = int(state["encoder.conv3.weight"].shape[0])
        out_channels = int(state["last.weight"].shape[0])
    except KeyError as e:
        raise WeightsError(f"the checkpoint is not a CLIPDenoiser state dict (no {e.args[0]!r} key)") from e
    layers = []
    for stage in (1, 2, 3):
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"encoder\.layer{stage}\.(\d+)\.", k))}
        if not blocks:
            raise WeightsError(f"the checkpoint has no encoder.layer{stage} weights")
        layers.append(max(blocks) + 1)
    return {
        "in_channels": 1 if "first.weight" in state else 3,
        "out_channels": out_channels,
        "layers": layers + [1],  # layer4 is never built; its depth does not matter
        "width": width,
        "bias": "last.bias" in state,
        "noise_conditioning": any(k.startswith("noise_film.") for k in state),
        **({"noise_expert": infer_config(expert)} if expert else {}),
    }


def _check_keys(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path,
                new_prefixes: tuple[str, ...] = ()) -> None:
    own = model.state_dict()
    missing = sorted(k for k in set(own) - set(state) if not k.startswith(new_prefixes))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = [f"{name} ({len(keys)}): {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                 for name, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
                 if keys]
        raise WeightsError(f"checkpoint {path} does not fit the network: " + "; ".join(parts))


def load_weights(
    model: CLIPDenoiser, path: str | os.PathLike, map_location: str | torch.device = "cpu", param_key: str = "params",
    new_prefixes: tuple[str, ...] = (),
) -> CLIPDenoiser:
    """Load a checkpoint file into an existing model, strictly (only the unused ``encoder.layer4.*`` / ``encoder.attnpool.*`` are dropped).

    ``new_prefixes``: modules the checkpoint may predate (e.g. ``("noise_film.",)`` to start a noise-conditioned
    model from weights trained without it); their keys may be missing and keep their initial values."""
    path = Path(path)
    state = extract_state_dict(read_state_dict(path), param_key)
    _check_keys(model, state, path, new_prefixes)
    model.load_state_dict(state, strict=not new_prefixes)
    return model.to(map_location)


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", param_key: str = "params", **overrides: Any
) -> CLIPDenoiser:
    """Build a :class:`CLIPDenoiser` shaped after a checkpoint file and load it.

    Args:
        path: the authors' ``.pth`` (``{'params': ...}``) or this project's ``.pt`` state dict.
        map_location: device for the weights.
        param_key: which weights of a basicsr file to use (``"params"`` or ``"params_ema"``).
        overrides: extra ``CLIPDenoiser`` arguments (``aug_level``, ``encoder_bn``, ``head_precision``).

    Raises :class:`WeightsError` naming the keys when the file does not fit.
    """
    path = Path(path)
    state = extract_state_dict(read_state_dict(path), param_key)
    model = CLIPDenoiser(**{**infer_config(state), **overrides})
    _check_keys(model, state, path)
    model.load_state_dict(state)
    return model.to(map_location)


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, half: tuple[str, ...] = ()) -> Path:
    """Write ``model``'s state dict (plain, CPU tensors) atomically to ``path``.

    ``half``: key prefixes whose float32 tensors are stored as float16 (half the bytes; ``load_state_dict`` copies
    them back into the float32 model)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    state = {k: v.half() if v.dtype == torch.float32 and k.startswith(half) else v for k, v in state.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        # a file object, not the temporary path: torch.save names the archive's folder after a path's stem, which
        # is random here and would give the same weights a different SHA-256 on every save
        torch.save(state, f)
    return Path(path)


def network_for_weights(weights: str | None, default: torch.nn.Module) -> torch.nn.Module:
    """The network a bundle run fills: for a shipped weights name (``"demo"``) one shaped after that file,
    otherwise ``default`` (the config's ``network_def``), so ``--weights demo`` needs no other override."""
    if not weights or weights not in SHIPPED_WEIGHTS:
        return default
    state = extract_state_dict(read_state_dict(resolve_weights(weights)))
    return CLIPDenoiser(**infer_config(state))


def network_overrides(path: str | os.PathLike, key: str = "network_def") -> dict[str, Any]:
    """Bundle config overrides (``{"network_def#width": 64, ...}``) that shape the config's network after the
    checkpoint at ``path``, so that a door given only a checkpoint file builds the network that fits it."""
    state = extract_state_dict(read_state_dict(Path(path)))
    return {f"{key}#{name}": value for name, value in infer_config(state).items()}
