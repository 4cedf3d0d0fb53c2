"""Shared pytest fixtures: tiny models and checkpoints generated on the fly (no network, no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ldct_clip.checkpoints import save_checkpoint
from ldct_clip.networks import CLIPDenoiser

# the bundle's unit tests in the model zoo's format: the zoo's own runner runs them (tests/test_model_zoo.py)
collect_ignore = ["model_zoo"]

FIXTURES = Path(__file__).parent / "fixtures"
PARITY = FIXTURES / "reference_parity"
TINY = {"layers": [1, 1, 1, 1], "width": 8}


def tiny_model(seed: int = 0, **kwargs) -> CLIPDenoiser:
    """A random CT CLIPDenoiser small enough for CPU tests (width 8)."""
    torch.manual_seed(seed)
    return CLIPDenoiser(**{**TINY, **kwargs})


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tiny_model(), tmp_path / "tiny.pt")


def denoise(src: Path, out: Path, ckpt: Path, **overrides):
    """The bundle's inference (``denoise_cases``) with the tiny network on CPU, without progress bars: the
    :class:`~ldct_clip.handlers.CaseResult` of each case."""
    from ldct_clip.workflows import denoise_cases

    settings = {"network_def#layers": TINY["layers"], "network_def#width": TINY["width"], "roi_size": [64, 64],
                "device": torch.device("cpu"), "progress": False}
    return denoise_cases(src, out, ckpt_path=str(ckpt), **{**settings, **overrides})
