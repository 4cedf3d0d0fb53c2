"""A simulated task-based image-quality study: CCT189 and TTF/NPS phantoms, several doses, every method.

:func:`run_iq_study` builds the phantoms (:mod:`ldct_clip.simulation.iq_phantoms`), simulates them at each dose with
the projection-domain simulator (:func:`~ldct_clip.simulation.low_dose.simulate_low_dose`, Poisson noise on the
noise-free phantom, ``realisations`` signal-present and as many signal-absent images per dose, and
``ttf_realisations`` of the TTF phantom), and runs every method on the same images:

* ``fbp``: the simulated images themselves;
* the model: the bundle's inference pipeline (``denoise``: the doors pass :func:`~ldct_clip.workflows.denoise_cases`, i.e.
  ``inference.json``: reading, HU window, sliding-window inferer, window back to HU, rounding, NIfTI
  writing) on one NIfTI case per dose and phantom whose slices are the realisations;
* ``nlm``: :func:`~ldct_clip.evaluation.classical.denoise_nlm` given the true noise SD of the FBP images (tuned: the
  strength scikit-image recommends for a known noise level);
* ``bm3d``: :func:`~ldct_clip.evaluation.classical.denoise_bm3d` (correlated-noise BM3D) given the PSD of the
  simulated noise (signal-absent images minus the truth, inside the phantom:
  :func:`~ldct_clip.evaluation.noise_psd.simulated_noise_psd`), where the ``bm3d`` package is installed (skipped, with a
  note, where not).

It then measures per method and dose: low-contrast detectability of the four CCT189 inserts
(:func:`~ldct_clip.metrics.detectability.measure_lcd`), the NPS of the signal-absent images in a central
ROI after removing their ensemble mean, and the TTF of the five TTF inserts on the ensemble-mean image.
Tables and figures are written by :mod:`ldct_clip.evaluation.iq_report`.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ldct_clip.evaluation.classical import CLASSICAL_DENOISERS, available_denoisers
from ldct_clip.simulation.iq_phantoms import (
    CCT189_INSERTS,
    TTF_INSERTS,
    insert_centre_px,
    make_cct189,
    make_ttf_phantom,
)
from ldct_clip.errors import InputError
from ldct_clip.metrics.detectability import OBSERVERS, Insert, measure_lcd
from ldct_clip.metrics.noise import noise_power_spectrum, nps_summary, radial_nps
from ldct_clip.metrics.resolution import task_transfer_function

__all__ = ["Denoiser", "IQSettings", "IQStudy", "run_iq_study"]

#: ``denoise(input_dir, output_dir) -> results`` (each with ``ok``, ``name``, ``message``): the model of a study.
Denoiser = Callable[[Path, Path], Sequence[Any]]

log = logging.getLogger("ldct_clip")

MODEL = "model"


@dataclass
class IQSettings:
    """What the study simulates and measures (defaults: the ``ldct-clip iq`` defaults).

    ``incident_flux`` and ``filter_name`` set the FBP noise: about 18 HU at full dose in the phantom's centre
    with 3e5 photons and the Shepp-Logan filter at 0.94 mm pixels (a standard-dose body scan's level).
    """

    doses: Sequence[float] = (0.1, 0.25, 0.5, 1.0)
    realisations: int = 100
    ttf_realisations: int = 10
    size: int = 256
    pixel_size_mm: float = 0.9375
    incident_flux: float = 3e5
    filter_name: str = "shepp-logan"
    observers: Sequence[str] = ("LG_CHO",)
    readers: int = 10
    bootstrap: int = 200
    nps_roi_px: int = 64
    seed: int = 0
    classical: Sequence[str] = ("nlm", "bm3d")

    def check(self) -> None:
        if not self.doses or any(not (0.0 < float(d) <= 1.0) for d in self.doses):
            raise InputError(f"doses must be fractions in (0, 1], got {list(self.doses)}.")
        if self.realisations < 4:
            raise InputError(f"realisations must be >= 4 (2 to train and 2 to test per class), got {self.realisations}.")
        if self.ttf_realisations < 1:
            raise InputError(f"ttf_realisations must be >= 1, got {self.ttf_realisations}.")
        unknown = [o for o in self.observers if o not in OBSERVERS]
        if unknown:
            raise InputError(f"unknown observer(s) {unknown}; choose from {', '.join(OBSERVERS)}.")
        if self.nps_roi_px * self.pixel_size_mm > 70.0:
            raise InputError("the NPS ROI must stay inside the uniform centre of the phantom (at most 70 mm wide).")


@dataclass
class IQStudy:
    """The study's results: rows of ``lcd``, ``nps``, ``ttf`` tables, curves, example images, notes."""

    settings: IQSettings
    methods: list[str]
    lcd: list[dict] = field(default_factory=list)
    nps: list[dict] = field(default_factory=list)
    nps_curves: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    ttf: list[dict] = field(default_factory=list)
    ttf_curves: dict[tuple[str, float, float], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    examples: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _say(progress: bool, text: str) -> None:
    log.debug("iq: %s", text)
    if progress:
        print(f"[iq] {text}", file=sys.stderr, flush=True)


def _lcd_inserts(settings: IQSettings) -> list[Insert]:
    px = settings.pixel_size_mm
    return [Insert(insert_centre_px(i, settings.size, px), i.diameter_mm / 2.0 / px, i.hu, i.diameter_mm)
            for i in CCT189_INSERTS]


def _simulate(settings: IQSettings, progress: bool) -> dict[tuple[str, float], np.ndarray]:
    """``{(kind, dose): (X, Y, N) HU}`` for kind in present, absent, ttf."""
    from ldct_clip.simulation.low_dose import simulate_low_dose
    from ldct_clip.simulation.protocol import ScanProtocol

    phantoms = {
        "present": (make_cct189(settings.size, settings.pixel_size_mm, signal=True), settings.realisations),
        "absent": (make_cct189(settings.size, settings.pixel_size_mm, signal=False), settings.realisations),
        "ttf": (make_ttf_phantom(settings.size, settings.pixel_size_mm), settings.ttf_realisations),
    }
    scan = ScanProtocol(incident_flux=settings.incident_flux, noise_model="poisson",
                        pixel_size_mm=settings.pixel_size_mm, filter_name=settings.filter_name)
    stacks = {}
    for d_index, dose in enumerate(settings.doses):
        _say(progress, f"simulating dose {100 * dose:g}%")
        for k_index, (kind, (truth, n)) in enumerate(phantoms.items()):
            volume = np.repeat(truth[:, :, None], n, axis=2)
            stacks[(kind, float(dose))] = simulate_low_dose(
                volume, float(dose), scan, seed=settings.seed * 1000 + 10 * d_index + k_index, progress=progress)
    return stacks


def _run_model(stacks: dict, settings: IQSettings, denoise: Denoiser, workdir: Path) -> dict:
    """``denoise`` (the bundle's inference pipeline) on one NIfTI case per stack; returns the denoised stacks."""
    from ldct_clip.ct.io import read_path, write_nifti

    src, dst = workdir / "in", workdir / "out"
    src.mkdir(parents=True)
    affine = np.diag([settings.pixel_size_mm, settings.pixel_size_mm, 1.0, 1.0])
    names = {}
    for (kind, dose), stack in stacks.items():
        name = f"{kind}_dose{int(round(1000 * dose)):04d}"
        write_nifti(stack, affine, src / f"{name}.nii.gz")
        names[(kind, dose)] = name
    results = denoise(src, dst)
    failed = [r for r in results if not r.ok]
    if failed:
        raise InputError(f"the model failed on {failed[0].name}: {failed[0].message}")
    return {key: read_path(dst / f"{name}.nii.gz").hu for key, name in names.items()}


def _run_classical(name: str, stacks: dict, noise: dict[float, dict], progress: bool) -> dict:
    """``noise[dose]``: ``{"sigma_hu": SD, "noise_psd": PSD}`` of the simulated noise: NLM takes the SD, BM3D the
    PSD."""
    from ldct_clip.reporting.progress import slice_progress

    out = {}
    for (kind, dose), stack in stacks.items():
        given = {"noise_psd": noise[dose]["noise_psd"]} if name == "bm3d" else {"sigma_hu": noise[dose]["sigma_hu"]}
        with slice_progress(progress, f"{kind} {100 * dose:g}%", stack.shape[2], name) as step:
            out[(kind, dose)] = CLASSICAL_DENOISERS[name](stack, **given, progress=step)
    return out


def _noise_rois(absent: np.ndarray, roi_px: int) -> np.ndarray:
    """Central ``roi_px`` squares of the ensemble-mean-removed signal-absent images, ``(N, roi, roi)``; scaled
    by ``sqrt(N / (N - 1))`` because removing the sample mean also removes ``1/N`` of each image's noise."""
    n = absent.shape[2]
    c0, c1 = (absent.shape[0] - roi_px) // 2, (absent.shape[1] - roi_px) // 2
    roi = absent[c0 : c0 + roi_px, c1 : c1 + roi_px, :].astype(np.float64)
    noise = (roi - roi.mean(axis=2, keepdims=True)) * math.sqrt(n / (n - 1.0))
    return np.moveaxis(noise, 2, 0)


def _measure(study: IQStudy, method: str, images: dict, progress: bool) -> None:
    s = study.settings
    px = s.pixel_size_mm
    truth = make_cct189(s.size, px, signal=True)
    inserts = _lcd_inserts(s)
    for dose in s.doses:
        dose = float(dose)
        present, absent, ttf_stack = images[("present", dose)], images[("absent", dose)], images[("ttf", dose)]
        rows = measure_lcd(present, absent, truth, pixel_size_mm=px, observers=s.observers, readers=s.readers,
                           seed=s.seed, bootstrap=s.bootstrap, inserts=inserts)
        study.lcd += [{"method": method, "dose": dose, **r} for r in rows]
        nps2d, freqs = noise_power_spectrum(_noise_rois(absent, s.nps_roi_px), px)
        study.nps.append({"method": method, "dose": dose, **nps_summary(nps2d, freqs)})
        study.nps_curves[(method, dose)] = radial_nps(nps2d, freqs)
        for ins in TTF_INSERTS:
            res = task_transfer_function(ttf_stack, insert_centre_px(ins, s.size, px), ins.diameter_mm / 2.0, px)
            study.ttf.append({"method": method, "dose": dose, "insert_hu": ins.hu, "contrast_hu": res.contrast_hu,
                              "f50": res.f50, "f10": res.f10})
            study.ttf_curves[(method, dose, ins.hu)] = (res.f, res.ttf)
        study.examples[(method, dose)] = present[:, :, 0].copy()
    _say(progress, f"measured {method}")


def run_iq_study(settings: IQSettings | None = None, *, denoise: Denoiser | None = None,
                 progress: bool = True, workdir: str | os.PathLike | None = None) -> IQStudy:
    """Simulate, denoise and measure (see the module's description).

    Args:
        settings: :class:`IQSettings` (default: the ``ldct-clip iq`` defaults).
        denoise: the model: called as ``denoise(input_dir, output_dir)``, it writes a NIfTI of the same name for
            each NIfTI case in ``input_dir`` and returns results with ``ok``, ``name`` and ``message`` (the doors
            pass :func:`ldct_clip.workflows.denoise_cases` with the run's overrides, DICOM and PNG output off);
            ``None`` leaves the model out.
        progress: stage lines and progress bars on stderr.
        workdir: where the model's NIfTI cases go (default: a temporary folder, removed afterwards).

    Returns:
        :class:`IQStudy`.
    """
    settings = settings or IQSettings()
    settings.check()
    classical, notes = available_denoisers(settings.classical)
    methods = ["fbp"] + ([MODEL] if denoise is not None else []) + classical
    study = IQStudy(settings, methods, notes=notes)
    for note in notes:
        _say(progress, note)
    t0 = time.perf_counter()
    stacks = _simulate(settings, progress)
    study.seconds["simulate"] = time.perf_counter() - t0
    truth = {"present": make_cct189(settings.size, settings.pixel_size_mm, signal=True),
             "absent": make_cct189(settings.size, settings.pixel_size_mm, signal=False)}
    c0 = (settings.size - settings.nps_roi_px) // 2
    centre = (slice(c0, c0 + settings.nps_roi_px),) * 2
    sigmas = {float(d): float(np.std(stacks[("absent", float(d))][centre] - truth["absent"][centre][:, :, None]))
              for d in settings.doses}
    _measure(study, "fbp", stacks, progress)
    if denoise is not None:
        _say(progress, "denoising with the model through the bundle's inference pipeline")
        t0 = time.perf_counter()
        if workdir is None:
            with tempfile.TemporaryDirectory(prefix="ldct-clip-iq-") as tmp:
                denoised = _run_model(stacks, settings, denoise, Path(tmp))
        else:
            denoised = _run_model(stacks, settings, denoise, Path(workdir))
        study.seconds[MODEL] = time.perf_counter() - t0
        _measure(study, MODEL, denoised, progress)
    noise = {}
    if "bm3d" in classical:
        from ldct_clip.evaluation.noise_psd import simulated_noise_psd

        for d in sigmas:
            absent = stacks[("absent", d)]
            ref = np.broadcast_to(truth["absent"][:, :, None], absent.shape)
            noise[d] = {"noise_psd": simulated_noise_psd(lambda _, a=absent: a, ref, seeds=[0])}
    noise = {d: {"sigma_hu": v, **noise.get(d, {})} for d, v in sigmas.items()}
    for name in classical:
        _say(progress, f"denoising with {name} (noise SD given: {', '.join(f'{v:.1f}' for v in sigmas.values())} HU"
                       + (", and its PSD)" if name == "bm3d" else ")"))
        t0 = time.perf_counter()
        out = _run_classical(name, stacks, noise, progress)
        study.seconds[name] = time.perf_counter() - t0
        _measure(study, name, out, progress)
    return study
