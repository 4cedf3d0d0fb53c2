"""ldct-clip: low-dose CT denoising with a frozen CLIP ResNet encoder (Cheng, Liang, Tan, CVPR 2024).

The package by layer, lowest first (imports only point down; ``tests/test_layout.py`` checks it):
:mod:`~ldct_clip.errors` and :mod:`~ldct_clip.atomic`; :mod:`~ldct_clip.reporting` (figures, tables, progress);
:mod:`~ldct_clip.metrics` (every metric, CT and 8-bit RGB); :mod:`~ldct_clip.weights`, :mod:`~ldct_clip.networks`,
:mod:`~ldct_clip.checkpoints`; :mod:`ldct_clip.ct.hu` and :mod:`ldct_clip.ct.io` (HU conventions, reading and
writing cases); :mod:`~ldct_clip.simulation` (low-dose simulators, phantoms); :mod:`~ldct_clip.bundle` and
:mod:`~ldct_clip.engine` (the bundle's configs, the evaluator, trainer and inferer); :mod:`~ldct_clip.ct` (CT
datasets and case outputs); :mod:`~ldct_clip.transforms` and :mod:`~ldct_clip.inference`; :mod:`~ldct_clip.evaluation`;
:mod:`~ldct_clip.handlers` (ignite handlers); :mod:`~ldct_clip.rgb` (the natural-image and sRGB tasks); and the doors
on top: :mod:`~ldct_clip.workflows`, :mod:`~ldct_clip.pacs`, :mod:`~ldct_clip.cli`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ldct_clip.bundle import bundle_root  # noqa: E402
from ldct_clip.errors import InputError, LdctClipError, WeightsError  # noqa: E402

__all__ = ["__version__", "bundle_root", "LdctClipError", "InputError", "WeightsError"]
