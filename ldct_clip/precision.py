"""How the network runs: numeric precision, memory layout and compilation.

``precision`` is one of ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA only) or ``"auto"``. Reduced precision
uses autocast, and :class:`~ldct_clip.networks.CLIPDenoiser` keeps its precision-critical parts (the
image skip and the full-resolution head) in float32, which holds the error against fp32 to about 1 HU.
``"auto"`` picks bf16 where the hardware runs it natively (CUDA with bf16, or a CPU with AVX-512 BF16
or AMX) and fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

__all__ = ["PRECISIONS", "autocast", "cpu_has_native_bf16", "prepare_model", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has AVX-512 BF16 or AMX tiles (where bf16 GEMMs beat fp32 by ~4x)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        flags = []
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """Turn ``precision`` (possibly ``"auto"``) into ``"fp32"``, ``"bf16"`` or ``"fp16"`` for ``device``."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 runs on CUDA only; use bf16 or fp32 on CPU")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str) -> Iterator[None]:
    """Autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    device = torch.device(device)
    resolved = resolve_precision(precision, device)
    if resolved == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[resolved]):
        yield


def prepare_model(
    model: torch.nn.Module, device: torch.device | str, *, channels_last: bool = True, compile: bool = False
) -> torch.nn.Module:
    """Move ``model`` to ``device`` in eval mode, optionally channels_last and ``torch.compile``-d."""
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model, dynamic=True)  # type: ignore[assignment]
    return model
