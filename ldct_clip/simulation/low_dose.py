"""Low-dose CT simulation from a (normal-dose or noise-free) CT image: the public entry points.

:func:`simulate_low_dose` simulates a scan at a fraction of the input's dose by projection-domain noise insertion
(Zeng et al. 2015, Yu et al. 2012) over a slice or a volume, with the numpy reference
(:mod:`ldct_clip.simulation.reference`) or the fast torch paths (:mod:`ldct_clip.simulation.fast`);
:func:`simulate_low_dose_torch` is the fast path on a batch of slices as a tensor, for the training transforms and
the noise bank.  The scan is a :class:`~ldct_clip.simulation.protocol.ScanProtocol`; its fields can also be given
as keywords (``simulate_low_dose(img, 0.25, pixel_size_mm=0.8)``), which replace those of ``protocol``.

Array conventions (MONAI): a volume is ``(X, Y, Z)`` in HU with axial slices ``vol[:, :, k]``; a single slice is
``(X, Y)``.  Outputs are float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ldct_clip.errors import InputError
from ldct_clip.simulation.protocol import ScanProtocol
from ldct_clip.simulation.reference import SliceSimulator
from ldct_clip.simulation.runs import (
    ProgressArg,
    check_batch_size,
    checked_inputs,
    progress_step,
    run_slices,
    slice_rngs,
    torch_device,
    torch_seeds,
)

__all__ = ["simulate_low_dose", "simulate_low_dose_torch", "simulate_volume_torch"]


def _generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        gens.append(g)
    return gens


def simulate_low_dose_torch(
    image_hu: torch.Tensor,
    dose_fraction: float | torch.Tensor,
    protocol: ScanProtocol | None = None,
    *,
    seeds: Sequence[int],
    **fields: Any,
) -> torch.Tensor:
    """:func:`simulate_low_dose` of a batch of slices as a tensor, on the tensor's device (no validation of HU).

    Args:
        image_hu: ``(B, X, Y)`` slices in HU, any float dtype, CPU or CUDA.
        dose_fraction: one dose fraction in (0, 1] or a ``(B,)`` tensor of one per slice (not checked).
        protocol: the scan; its method ``"auto"``, ``"sector"`` or ``"projection"`` (``"reference"`` is numpy-only).
        seeds: one integer seed per slice (the noise of a slice depends only on its seed and its image).
        fields: :class:`ScanProtocol` fields replacing those of ``protocol``.

    Returns:
        ``(B, X, Y)`` float32 HU on the input's device.
    """
    from ldct_clip.simulation.fast import noise_hu_batch

    protocol = ScanProtocol.of(protocol, fields)
    if protocol.method == "reference":
        raise InputError("method 'reference' is the numpy simulator: use simulate_low_dose, or method 'auto'.")
    x = image_hu.to(torch.float32)
    b, nx, ny = x.shape
    n = max(nx, ny)
    protocol.check_fits(n)
    bx, by = (n - nx) // 2, (n - ny) // 2
    mu = torch.clamp(protocol.mu_water * (1.0 + x / 1000.0), min=0.0)
    mu = torch.nn.functional.pad(mu, (by, n - ny - by, bx, n - nx - bx))  # air around a non-square slice
    k = torch.as_tensor(dose_fraction, dtype=torch.float32, device=x.device).reshape(-1).expand(b)
    method = protocol.method
    if method == "auto":
        method = "projection" if x.device.type == "cuda" or protocol.geometry == "fan" else "sector"
    noise = noise_hu_batch(mu, k, protocol, method=method, views=protocol.views_for(n),
                           generators=_generators(seeds, x.device))[:, bx : bx + nx, by : by + ny]
    if protocol.noise_model == "variance_matched":
        noise = torch.where((k == 1.0).reshape(-1, 1, 1), torch.zeros_like(noise), noise)
    return x + noise


def simulate_volume_torch(
    image: np.ndarray, dose_fraction: float, protocol: ScanProtocol, seeds: Sequence[int], progress: ProgressArg,
    batch_size: int, device: torch.device,
) -> np.ndarray:
    """Run :func:`simulate_low_dose_torch` over a slice ``(X, Y)`` or the axial slices of ``(X, Y, Z)`` in batches
    of ``batch_size`` on ``device``, slice ``i`` with ``seeds[i]``; returns float32 HU of the input's shape."""
    planes = image[None] if image.ndim == 2 else np.moveaxis(image, 2, 0)
    step = progress_step(progress, planes.shape[0])
    out = np.empty(planes.shape, dtype=np.float32)
    for z0 in range(0, planes.shape[0], batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(planes[z0 : z0 + batch_size], dtype=np.float32)).to(device)
        out[z0 : z0 + batch_size] = simulate_low_dose_torch(
            chunk, dose_fraction, protocol, seeds=seeds[z0 : z0 + batch_size]).cpu().numpy()
        for done in range(z0 + 1, min(planes.shape[0], z0 + batch_size) + 1):
            step(done)  # per slice, as the reference path
    return out[0] if image.ndim == 2 else np.moveaxis(out, 0, 2)


def simulate_low_dose(
    image_hu: np.ndarray,
    dose_fraction: float,
    protocol: ScanProtocol | None = None,
    *,
    seed: int | None = None,
    progress: ProgressArg = None,
    device: str | torch.device | None = None,
    batch_size: int = 16,
    **fields: Any,
) -> np.ndarray:
    """Simulate a scan at ``dose_fraction`` times the dose of ``image_hu`` by projection-domain noise insertion.

    Per axial slice:

    1. HU to linear attenuation ``mu = mu_water * (1 + HU/1000)`` (1/mm, clipped at 0), zero (air) outside
       the slice; the slice is padded to its circumscribed circle so that the corners are projected too.
    2. Forward projection to line integrals ``p`` (dimensionless: 1/mm times mm, hence the pixel size).
    3. Noise per detector reading, for the photon count ``N = I0 * exp(-p)`` of the full-dose scan
       (``noise_model``, below).
    4. Filtered back-projection (``filter_name``, scikit-image ``iradon``) of the *noise only*,
       ``FBP(p_low) - FBP(p) = FBP(p_low - p)``, converted to HU and added to the input.

    Adding only the noise difference leaves the input's resolution and HU values untouched: no
    reconstruction blur or discretisation bias of the simulator's own FBP ends up in the output, only
    noise with FBP texture (correlated, with a noise power spectrum that vanishes at zero frequency) and
    the right spatial variation (more noise behind bone and in the centre of large bodies).

    Noise models
    ------------
    ``"variance_matched"`` (default; Zeng et al. 2015, Yu et al. 2012): ``image_hu`` is a real full-dose
    scan acquired with ``incident_flux`` and already contains the noise of dose 1.  Only the missing
    variance is added (zero-mean Gaussian on each line integral)::

        var_added = var(dose k) - var(dose 1) = (1/k - 1) e^p / I0  +  (1/k^2 - 1) s_e^2 e^(2p) / I0^2

    so the *added* noise SD scales as ``sqrt(1/k - 1)`` (quantum-limited), the *total* noise SD of the
    output as ``1/sqrt(k)``, and ``dose_fraction = 1`` returns the input unchanged.  For low doses
    ``sqrt(1/k - 1)`` approaches ``1/sqrt(k)`` (within 3 % for k <= 1/16).
    ``"poisson"``: ``image_hu`` is noise-free.  The low-dose readings are
    ``I = Poisson(k I0 e^-p) + N(0, s_e^2)``, ``p_low = -log(max(I, 1) / (k I0))``; the added noise SD
    scales as ``1/sqrt(k)`` (quantum-limited) and ``dose_fraction = 1`` adds full-dose noise.  Applied to a
    real scan it overestimates the total noise by the input's own noise (variance ``(1 + k)/k`` instead of
    ``1/k`` times the full-dose variance).

    Args:
        image_hu: slice ``(X, Y)`` or volume ``(X, Y, Z)`` in HU (axial slices ``vol[:, :, k]``).
        dose_fraction: simulated dose relative to the input's, in (0, 1] (0.25 = quarter dose).
        protocol: the scan (flux, electronic noise, geometry, views, pixel size, noise model, filter, method):
            :class:`~ldct_clip.simulation.protocol.ScanProtocol`; default its defaults.
        seed: seed of ``np.random.default_rng``; slices draw from independent child streams, so a result
            is reproducible for an integer seed (``None``: fresh entropy).
        progress: ``callable(done, total)`` called after each slice (or batch of slices), ``True`` for a tqdm
            bar, or ``None``.
        device: torch device of the fast paths (default: CUDA when available, else CPU).
        batch_size: slices simulated at once by the fast paths.
        fields: :class:`ScanProtocol` fields replacing those of ``protocol`` (e.g. ``pixel_size_mm=0.8``).

    Returns:
        float32 array of the input's shape, HU.

    Raises:
        InputError: dose_fraction outside (0, 1], an array that is not 2D or 3D, non-finite values, or
            invalid parameters.

    Notes:
        The line integrals only set the photon count (noise variance) of each ray; they are computed on a
        grid of at most 256 pixels and 180 views and interpolated, which keeps a 512 x 512 slice at about
        2 s on one core (the noise itself is drawn and reconstructed at full resolution).  Beam hardening,
        scatter, bowtie filters and tube-current modulation are not modelled.
    """
    image, k, protocol = checked_inputs(image_hu, dose_fraction, protocol, fields)
    nz = 1 if image.ndim == 2 else image.shape[2]
    unchanged = k == 1.0 and protocol.noise_model == "variance_matched"  # nothing is missing from a full-dose scan
    if protocol.method != "reference":
        if unchanged:
            return image.astype(np.float32)
        seeds = [s[0] for s in torch_seeds(seed, nz)]
        return simulate_volume_torch(image, k, protocol, seeds, progress, check_batch_size(batch_size),
                                     torch_device(device))
    rngs = slice_rngs(seed, nz)

    def work(slice_hu: np.ndarray, index: int) -> np.ndarray:
        if unchanged:
            return slice_hu.astype(np.float32)
        noise = SliceSimulator(slice_hu, protocol).noise_hu(k, protocol.noise_model, rngs[index][0])
        return (slice_hu + noise).astype(np.float32)

    return run_slices(image, work, progress)
