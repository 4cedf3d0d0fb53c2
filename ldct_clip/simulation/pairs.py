"""(Low-dose, normal-dose) pairs from a noise-free image, built the way paired CT datasets are."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ldct_clip.simulation import runs
from ldct_clip.simulation.low_dose import simulate_volume_torch
from ldct_clip.simulation.protocol import ScanProtocol
from ldct_clip.simulation.reference import SliceSimulator

__all__ = ["simulate_dose_pair"]


def simulate_dose_pair(
    clean_hu: np.ndarray,
    dose_fraction: float,
    protocol: ScanProtocol | None = None,
    *,
    seed: int | None = None,
    progress: runs.ProgressArg = None,
    device: str | torch.device | None = None,
    batch_size: int = 16,
    **fields: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """A (low-dose, normal-dose) pair from a noise-free image, built the way paired CT datasets are.

    The normal-dose image is ``clean_hu`` plus full-dose noise (``noise_model="poisson"``, dose 1); the
    low-dose image is that normal-dose image plus the variance-matched extra noise of ``dose_fraction``
    (as the Mayo low-dose data were made from the full-dose projections).  So the two share their
    full-dose noise, the low-dose total noise SD is ``1/sqrt(k)`` times the normal-dose one, and each slice
    is projected only once (reference) or twice (fast paths).  Arguments are those of
    :func:`~ldct_clip.simulation.low_dose.simulate_low_dose`; the protocol's ``noise_model`` is not used (the
    pair sets it as above).

    Returns:
        ``(ldct_hu, ndct_hu)``: float32 arrays of the input's shape, HU.
    """
    image, k, protocol = runs.checked_inputs(clean_hu, dose_fraction, protocol, fields, "clean_hu")
    full = dataclasses.replace(protocol, noise_model="poisson")
    extra = dataclasses.replace(protocol, noise_model="variance_matched")
    nz = 1 if image.ndim == 2 else image.shape[2]
    if protocol.method != "reference":
        streams = runs.torch_seeds(seed, nz, streams=2)
        batch, dev = runs.check_batch_size(batch_size), runs.torch_device(device)
        normal = simulate_volume_torch(image, 1.0, full, [s[0] for s in streams], None, batch, dev)
        if k == 1.0:
            runs.progress_step(progress, nz)(nz)
            return normal.copy(), normal
        # the extra noise is set by the clean image's rays, as in the reference (one projection of each slice)
        added = simulate_volume_torch(image, k, extra, [s[1] for s in streams], progress, batch, dev)
        return (normal + (added - image.astype(np.float32))).astype(np.float32), normal
    rngs = runs.slice_rngs(seed, nz, streams=2)
    normal = np.empty(image.shape, dtype=np.float32)

    def work(slice_hu: np.ndarray, index: int) -> np.ndarray:
        sim = SliceSimulator(slice_hu, protocol)
        nd = slice_hu + sim.noise_hu(1.0, "poisson", rngs[index][0])
        if image.ndim == 2:
            normal[...] = nd
        else:
            normal[:, :, index] = nd
        if k == 1.0:
            return nd.astype(np.float32)
        return (nd + sim.noise_hu(k, "variance_matched", rngs[index][1])).astype(np.float32)

    low = runs.run_slices(image, work, progress)
    return low, normal
