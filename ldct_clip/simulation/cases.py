"""Simulate low-dose cases on disk from normal-dose ones (``ldct-clip simulate``).

Every case :func:`~ldct_clip.ct.io.cases.find_cases` finds under a path gets projection-domain low-dose noise
(:func:`~ldct_clip.simulation.low_dose.simulate_low_dose`) or the paper's Gaussian noise
(:func:`~ldct_clip.simulation.gaussian.add_gaussian_noise`) and is written as NIfTI (input affine) and, for DICOM
input, a derived DICOM series. Volumes are ``(X, Y, Z)`` in HU.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.ct.io.cases import find_cases
from ldct_clip.ct.io.derived_series import write_derived_series
from ldct_clip.ct.io.nifti_writer import write_nifti
from ldct_clip.ct.io.output_paths import check_output_path
from ldct_clip.ct.io.read import read_case
from ldct_clip.ct.io.volume import CTVolume
from ldct_clip.reporting.progress import slice_progress
from ldct_clip.simulation.gaussian import add_gaussian_noise
from ldct_clip.simulation.low_dose import simulate_low_dose
from ldct_clip.simulation.protocol import ScanProtocol

__all__ = ["SimulationResult", "simulate_case"]

log = logging.getLogger("ldct_clip")

#: Voxels below this (HU) are scanner padding outside the reconstruction circle (-2000, -3024...), not air:
#: the simulation leaves them as they are, so the padding value survives.
_PADDING_BELOW_HU = -1500.0


@dataclass
class SimulationResult:
    """One simulated case.

    Attributes:
        name: case name.
        slices: number of axial slices.
        outputs: NIfTI file, and the derived DICOM series folder for DICOM input.
        added_noise_sd_hu: SD (HU) of the added noise (output - input) inside the body (input > -500 HU).
    """

    name: str
    slices: int
    outputs: list[Path] = field(default_factory=list)
    added_noise_sd_hu: float = math.nan


def _percent(fraction: float) -> str:
    return f"{100.0 * fraction:.4g}%"


def _in_plane_pixel_mm(volume: CTVolume) -> float:
    """Square pixel size (mm) for the projector; anisotropic pixels use their geometric mean (with a warning)."""
    dx, dy, _ = volume.spacing
    if not (dx > 0 and dy > 0):
        raise InputError(f"{volume.name}: in-plane spacing {dx} x {dy} mm is not positive; fix the image header.")
    if abs(dx - dy) > 0.01 * max(dx, dy):
        log.warning(
            "%s: pixels are %.3g x %.3g mm; the projector assumes square pixels and uses %.3g mm.",
            volume.name, dx, dy, math.sqrt(dx * dy),
        )
    return math.sqrt(dx * dy)


def simulate_case(
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    dose_fraction: float = 0.25,
    protocol: ScanProtocol | None = None,
    gaussian_sigma_255: float | None = None,
    seed: int | None = None,
    write_dicom: bool = True,
    progress: bool | Callable[[str, int, int], None] | None = None,
    **fields: Any,
) -> list[SimulationResult]:
    """Simulate a low-dose scan of every case under ``input_path`` and write it to ``output_dir``.

    Writes ``output_dir/nifti/<case>.nii.gz`` (int16 HU, the input's affine) and, for DICOM input,
    ``output_dir/dicom/<case>/`` -- a derived series whose SeriesDescription gets `` [simulated 25% dose]``
    (or `` [simulated gaussian 5/255]``).  The two kinds go to separate folders so that either one can be
    the ``ldct_dir`` of :func:`pair_cases` with the case names of the input.

    Args:
        input_path: a case (DICOM series folder or file, NIfTI/MHA/NRRD file) or a folder of cases, read as
            normal-dose scans.
        output_dir: destination; must not be (inside) an input.  Earlier results of the same cases are replaced.
        dose_fraction: simulated dose relative to the input's, in (0, 1].
        protocol: the scan (:class:`~ldct_clip.simulation.protocol.ScanProtocol`), of which ``fields`` replace
            some (``geometry``, ``incident_flux``, ``noise_model``...); its pixel size is taken from each image's
            header.
        gaussian_sigma_255: when given, add the paper's i.i.d. Gaussian noise of ``sigma/255`` on the
            [-1024, 3072] HU window instead (``dose_fraction`` and the projection arguments are then unused).
        seed: reproducible noise (each case gets its own child stream); ``None`` for fresh entropy.
        write_dicom: write the derived DICOM series for DICOM input.
        progress: ``True`` for a progress bar per case (slices done of total) on stderr, a callable
            ``progress(case_name, slices_done, slices_total)``, or ``None``.

    Returns:
        One :class:`SimulationResult` per case.

    Raises:
        InputError: no readable case, invalid parameters, an output path inside an input.
    """
    protocol = ScanProtocol.of(protocol, fields)
    output_dir = Path(output_dir)
    cases = find_cases(input_path)
    # Refuse before any work: an output inside an input would also be found as a case next time.
    check_output_path(output_dir, [c.source for c in cases])
    gaussian = gaussian_sigma_255 is not None
    if gaussian:
        suffix = f" [simulated gaussian {float(gaussian_sigma_255):g}/255]"
        derivation = f"ldct-clip: i.i.d. Gaussian noise, sigma {float(gaussian_sigma_255):g}/255 of [-1024, 3072] HU"
    else:
        k = float(dose_fraction)
        if not (math.isfinite(k) and 0.0 < k <= 1.0):
            raise InputError(f"dose fraction must be in (0, 1] (e.g. 0.25 for quarter dose), got {dose_fraction}.")
        suffix = f" [simulated {_percent(k)} dose]"
        derivation = (
            f"ldct-clip: simulated {_percent(k)} dose by projection-domain noise insertion "
            f"({protocol.geometry} beam, I0 {protocol.incident_flux:g}, "
            f"electronic noise variance {protocol.electronic_noise_var:g})"
        )
    case_seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(len(cases))]
    results = []
    for case, case_seed in zip(cases, case_seeds, strict=True):
        volume = read_case(case)
        for note in volume.warnings:
            log.warning("%s: %s", case.name, note)
        hu = volume.hu
        nz = hu.shape[2]
        with slice_progress(progress, case.name, nz, "simulating") as step:
            if gaussian:
                low = add_gaussian_noise(hu, float(gaussian_sigma_255), seed=case_seed)
                step(nz, nz)
            else:
                scan = dataclasses.replace(protocol, pixel_size_mm=_in_plane_pixel_mm(volume))
                low = simulate_low_dose(hu, dose_fraction, scan, seed=case_seed, progress=step)
        low = np.where(hu < _PADDING_BELOW_HU, hu, low).astype(np.float32)
        nifti = output_dir / "nifti" / f"{case.name}.nii.gz"
        outputs = [write_nifti(low, volume.affine, nifti, inputs=[volume.source])]
        if write_dicom and volume.dicom_headers:
            files = write_derived_series(
                low, volume.dicom_headers, output_dir / "dicom" / case.name, series_description_suffix=suffix,
                derivation=derivation, inputs=[volume.source], overwrite=True,
            )
            outputs.append(files[0].parent)
        body = hu > -500.0
        added = float(np.std((low - hu)[body])) if body.any() else math.nan
        results.append(SimulationResult(case.name, nz, outputs, added))
        log.info("%s: %d slices, added noise SD %.1f HU in the body -> %s", case.name, nz, added,
                 ", ".join(str(p) for p in outputs))
    return results
