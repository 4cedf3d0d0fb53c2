"""The shipped demo weights must also denoise the chest: the region where weights tuned for real CT broke.

The CI quality check of ``tests/test_demo_weights.py`` uses an abdomen phantom. Fine-tuned candidates of issue #17
passed it (+2.8 dB) while drawing a bright halo along the chest wall and lung borders of the chest phantom
(abdomen-window PSNR 7.6 dB *below* their input); this check fails for them and passes for the shipped weights
(+2.2 dB abdomen window, +2.8 dB paper protocol on this case).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldct_clip.checkpoints import load_checkpoint
from ldct_clip.inference import denoise_volume
from ldct_clip.metrics import compute_metrics
from ldct_clip.simulation.phantom import make_low_dose_example, make_phantom
from ldct_clip.weights import resolve_weights

SHAPE = (192, 192, 2)
SEED = 7001  # held out: training used seeds < 1200, validation 5000+, the benchmark 9000+, the abdomen check 7000
MIN_GAIN_DB = 1.0


@pytest.fixture(scope="module")
def chest() -> tuple[np.ndarray, np.ndarray]:
    low, _ = make_low_dose_example(SHAPE, 0.25, seed=SEED, region="chest")
    return low, make_phantom(SHAPE, region="chest", seed=SEED)


@pytest.mark.parametrize("protocol", ["ldct-benchmark-abdomen", "paper"])
def test_demo_weights_denoise_the_chest(chest, protocol):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    low, clean = chest
    out = denoise_volume(low, load_checkpoint(resolve_weights("demo")).eval(), precision="fp32")
    gain = compute_metrics(out, clean, protocol)["psnr"] - compute_metrics(low, clean, protocol)["psnr"]
    assert gain >= MIN_GAIN_DB, f"{protocol}: {gain:+.2f} dB"
