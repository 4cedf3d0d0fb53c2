"""ldct-clip: low-dose CT denoising with a frozen CLIP ResNet encoder (Cheng, Liang, Tan, CVPR 2024)."""

from __future__ import annotations

__version__ = "0.1.0"

from ldct_clip.bundle import bundle_root  # noqa: E402
from ldct_clip.errors import InputError, LdctClipError, WeightsError  # noqa: E402

__all__ = ["__version__", "bundle_root", "LdctClipError", "InputError", "WeightsError"]
