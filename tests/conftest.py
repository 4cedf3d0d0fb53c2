"""Shared pytest fixtures: tiny models and checkpoints generated on the fly (no network, no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ldct_clip.checkpoints import save_checkpoint
from ldct_clip.networks import CLIPDenoiser

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
