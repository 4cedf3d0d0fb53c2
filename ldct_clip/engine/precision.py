"""How the network runs: numeric precision, memory layout and compilation.

``precision`` is one of ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA only) or ``"auto"``. Reduced precision
uses autocast, and :class:`~ldct_clip.networks.CLIPDenoiser` keeps its precision-critical parts (the
image skip and the full-resolution head) in float32, which holds the error against fp32 to about 1 HU.
``"auto"`` picks bf16 where the hardware runs it natively (CUDA with bf16, or a CPU with AVX-512 BF16
or AMX) and fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import os
import sys
from collections.abc import Iterator

import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "PRECISIONS",
    "autocast",
    "cpu_has_native_bf16",
    "default_sw_batch_size",
    "fold_batchnorm",
    "keep_freed_memory",
    "prepare_model",
    "resolve_precision",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# oneDNN instruction-set caps (``ONEDNN_MAX_CPU_ISA``) under which its bf16 kernels are still native
_ONEDNN_BF16_ISAS = {
    "ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
    "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2",
}


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has AVX-512 BF16 or AMX tiles (where bf16 GEMMs beat fp32 by ~4x) and oneDNN may use
    them: ``ONEDNN_MAX_CPU_ISA=AVX2`` (say) caps oneDNN below them, and bf16 is then emulated (~300x slower)."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    if isa and isa not in _ONEDNN_BF16_ISAS:
        return False
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


def default_sw_batch_size(device: torch.device | str) -> int:
    """Slices per network call: 2 on CPU (512x512 activations already fill the caches; more only costs memory),
    16 on CUDA (keeps the GPU busy)."""
    return 16 if torch.device(device).type == "cuda" else 2


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold eval-mode BatchNorm into the preceding conv (``convN``/``bnN`` pairs and ``downsample`` blocks).

    Returns a copy of ``model`` with the folded convs and ``Identity`` in place of the BatchNorms: the same
    function in eval mode, one pass over memory less per layer. Only for inference: the copy cannot train.
    """
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.BatchNorm2d):
                conv_name = f"conv{name[2:]}" if name.startswith("bn") else str(int(name) - 1) if name.isdigit() else None
                conv = getattr(module, conv_name, None) if conv_name is not None else None
                if isinstance(conv, torch.nn.Conv2d):
                    setattr(module, conv_name, fuse_conv_bn_eval(conv, child))
                    setattr(module, name, torch.nn.Identity())
    return model


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the system (Linux only).

    Activations of a 512x512 slice are tens to hundreds of MB; glibc serves such blocks with fresh ``mmap``
    pages and unmaps them on free, so every network call page-faults all of its activations again (about a
    quarter of CPU inference time here). ``M_MMAP_MAX=0`` and a high ``M_TRIM_THRESHOLD`` make freed blocks
    stay in the heap. Process-wide and permanent; peak memory is unchanged. Returns whether it applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 40))


def prepare_model(
    model: torch.nn.Module,
    device: torch.device | str,
    *,
    channels_last: bool = True,
    compile: bool = False,
    fold_bn: bool = True,
    reuse_memory: bool = True,
) -> torch.nn.Module:
    """Return ``model`` ready for inference on ``device``: eval mode, optionally with BatchNorm folded into the
    convs (a copy), channels_last, ``torch.compile``-d; on CPU, ``reuse_memory`` applies :func:`keep_freed_memory`.
    """
    device = torch.device(device)
    model = fold_batchnorm(model) if fold_bn else model.eval()
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if reuse_memory and device.type == "cpu":
        keep_freed_memory()
    if compile:
        model = torch.compile(model, dynamic=True)  # type: ignore[assignment]
    return model
