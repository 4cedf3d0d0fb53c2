"""Research workflow: simulate low-dose cases from normal-dose ones, and evaluate a denoiser on paired cases.

Two library entry points sit behind ``ldct-clip simulate``, ``ldct-clip evaluate`` and the bundle's
``evaluate.json``:

* :func:`simulate_case` -- every case :func:`~ldct_clip.io.cases.find_cases` finds under a path gets
  projection-domain low-dose noise (:func:`~ldct_clip.simulation.simulate_low_dose`) or the paper's Gaussian
  noise (:func:`~ldct_clip.simulation.add_gaussian_noise`) and is written as NIfTI (input affine) and, for
  DICOM input, a derived DICOM series.
* :class:`PairedEvaluationWorkflow` / :func:`evaluate_pairs` -- paired LDCT/NDCT cases (two folders matched
  by case name, or a CSV of pairs; :func:`pair_cases`) are denoised by the network and by classical
  denoisers (:data:`CLASSICAL_DENOISERS`), and compared with the NDCT reference under the metric protocols of
  :mod:`ldct_clip.metrics`: per-slice, per-case and summary tables (CSV + markdown), noise SD in a uniform
  ROI, slice panels and radial noise power spectra as PNG.

Arrays follow MONAI: volumes are ``(X, Y, Z)`` in HU with axial slices ``vol[:, :, k]``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, LdctClipError
from .io.atomic import atomic_path
from .ct.pairs import CasePair, pair_cases
from .io.cases import Case, find_cases
from .io.readers import read_case
from .io.volume import CTVolume
from .io.writers import check_output_path, write_derived_series, write_nifti
from .metrics import (
    find_uniform_roi,
    get_protocol,
    noise_power_spectrum,
    noise_sd,
    per_slice_metrics,
    radial_nps,
)
from .simulation import add_gaussian_noise, simulate_low_dose
from .visualize import save_line_plot, save_panels

__all__ = [
    "CLASSICAL_DENOISERS",
    "CasePair",
    "DEFAULT_PROTOCOLS",
    "DEFAULT_WINDOWS",
    "EvaluationReport",
    "METRICS",
    "PairedEvaluationWorkflow",
    "SimulationResult",
    "denoise_bm3d",
    "denoise_nlm",
    "estimate_noise_sd",
    "evaluate_pairs",
    "pair_cases",
    "simulate_case",
]

log = logging.getLogger("ldct_clip")

#: Protocols evaluated by default: the paper's, RED-CNN's and the three ldct-benchmark windows.
DEFAULT_PROTOCOLS: tuple[str, ...] = (
    "paper",
    "redcnn",
    "ldct-benchmark-chest",
    "ldct-benchmark-abdomen",
    "ldct-benchmark-head",
)
#: Display windows ``(center, width)`` in HU of the slice panels: soft tissue and lung.
DEFAULT_WINDOWS: tuple[tuple[float, float], ...] = ((40.0, 400.0), (-600.0, 1500.0))
METRICS: tuple[str, ...] = ("psnr", "ssim", "rmse")

#: Voxels below this (HU) are scanner padding outside the reconstruction circle (-2000, -3024...), not air:
#: the simulation leaves them as they are, so the padding value survives.
_PADDING_BELOW_HU = -1500.0

SliceProgress = Callable[[int, int], None]


# ==========================================================================================================
# low-dose simulation of cases on disk
# ==========================================================================================================


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
    geometry: str = "parallel",
    incident_flux: float = 1e5,
    electronic_noise_var: float = 10.0,
    noise_model: str = "variance_matched",
    num_views: int | None = None,
    filter_name: str = "ramp",
    gaussian_sigma_255: float | None = None,
    seed: int | None = None,
    write_dicom: bool = True,
    progress: bool | Callable[[str, int, int], None] | None = None,
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
        geometry, incident_flux, electronic_noise_var, noise_model, num_views, filter_name: see
            :func:`~ldct_clip.simulation.simulate_low_dose`; the pixel size comes from the image header.
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
            f"({geometry} beam, I0 {incident_flux:g}, electronic noise variance {electronic_noise_var:g})"
        )
    case_seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(len(cases))]
    results = []
    for case, case_seed in zip(cases, case_seeds, strict=True):
        volume = read_case(case)
        for note in volume.warnings:
            log.warning("%s: %s", case.name, note)
        hu = volume.hu
        nz = hu.shape[2]
        with _slice_progress(progress, case.name, nz, "simulating") as step:
            if gaussian:
                low = add_gaussian_noise(hu, float(gaussian_sigma_255), seed=case_seed)
                step(nz, nz)
            else:
                low = simulate_low_dose(
                    hu, dose_fraction, incident_flux=incident_flux, electronic_noise_var=electronic_noise_var,
                    geometry=geometry, num_views=num_views, pixel_size_mm=_in_plane_pixel_mm(volume),
                    noise_model=noise_model, filter_name=filter_name, seed=case_seed, progress=step,
                )
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


class _NullStep:
    def __enter__(self) -> SliceProgress:
        return lambda done, total: None

    def __exit__(self, *exc: Any) -> None:
        return None


class _BarStep:
    """A tqdm bar (stderr) for ``total`` slices, usable as ``progress(done, total)``."""

    def __init__(self, label: str, total: int, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=f"{desc} {label}", unit="slice", file=sys.stderr, leave=False)

    def __enter__(self) -> SliceProgress:
        return lambda done, total: self.bar.update(done - self.bar.n)

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()


class _CallbackStep:
    def __init__(self, fn: Callable[[str, int, int], None], label: str) -> None:
        self.fn, self.label = fn, label

    def __enter__(self) -> SliceProgress:
        return lambda done, total: self.fn(self.label, done, total)

    def __exit__(self, *exc: Any) -> None:
        return None


def _slice_progress(progress: Any, label: str, total: int, desc: str) -> Any:
    if progress is True:
        return _BarStep(label, total, desc)
    if callable(progress):
        return _CallbackStep(progress, label)
    if progress in (None, False):
        return _NullStep()
    raise InputError(f"progress must be True, None or a callable(name, done, total), got {type(progress).__name__}.")


# ==========================================================================================================
# classical denoisers (baselines of the evaluation)
# ==========================================================================================================


def estimate_noise_sd(volume_hu: np.ndarray) -> float:
    """Blind estimate of the noise SD (HU) of a CT volume, from the image alone.

    The SD inside the most uniform water-like square (:func:`~ldct_clip.metrics.find_uniform_roi` on the image
    itself).  Wavelet estimators (``skimage.restoration.estimate_sigma``) look at the finest scale only and
    underestimate FBP noise, which is correlated (its power peaks at mid frequencies); they are the fallback
    when no uniform region exists.

    Args:
        volume_hu: ``(X, Y)`` or ``(X, Y, Z)`` in HU.
    """
    vol = np.asarray(volume_hu, dtype=np.float64)
    try:
        return float(noise_sd(vol, find_uniform_roi(vol)))
    except InputError:
        from skimage.restoration import estimate_sigma

        slices = [vol] if vol.ndim == 2 else [vol[:, :, k] for k in range(vol.shape[2])]
        sd = float(np.median([estimate_sigma(s) for s in slices]))
        log.warning("no uniform region for a noise estimate; wavelet estimate %.1f HU (likely too low for CT)", sd)
        return sd


def _per_slice(
    volume_hu: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], progress: SliceProgress | None
) -> np.ndarray:
    vol = np.asarray(volume_hu, dtype=np.float64)
    if vol.ndim == 2:
        return fn(vol).astype(np.float32)
    out = np.empty(vol.shape, dtype=np.float32)
    for k in range(vol.shape[2]):
        out[:, :, k] = fn(vol[:, :, k])
        if progress is not None:
            progress(k + 1, vol.shape[2])
    return out


def denoise_nlm(
    volume_hu: np.ndarray,
    sigma_hu: float | None = None,
    *,
    h_factor: float = 0.8,
    patch_size: int = 5,
    patch_distance: int = 6,
    progress: SliceProgress | None = None,
) -> np.ndarray:
    """Non-local means (scikit-image ``denoise_nl_means``, fast mode) slice by slice, in HU.

    Args:
        volume_hu: ``(X, Y)`` or ``(X, Y, Z)`` in HU.
        sigma_hu: noise SD (HU); default :func:`estimate_noise_sd` of the volume.
        h_factor: filter strength ``h = h_factor * sigma`` (scikit-image recommends about 0.8 when ``sigma``
            is passed, which also subtracts the noise's own contribution from the patch distances).
        patch_size, patch_distance: patch side and search radius in pixels.
        progress: ``progress(slices_done, slices_total)``.

    Returns:
        float32 array of the input's shape, HU.
    """
    from skimage.restoration import denoise_nl_means

    sigma = estimate_noise_sd(volume_hu) if sigma_hu is None else float(sigma_hu)
    h = h_factor * sigma

    def one(s: np.ndarray) -> np.ndarray:
        return denoise_nl_means(
            s, h=h, sigma=sigma, fast_mode=True, patch_size=patch_size, patch_distance=patch_distance,
            preserve_range=True,
        )

    return _per_slice(volume_hu, one, progress)


def denoise_bm3d(
    volume_hu: np.ndarray, sigma_hu: float | None = None, *, progress: SliceProgress | None = None
) -> np.ndarray:
    """BM3D (the ``bm3d`` package, white-noise model) slice by slice, in HU.

    Optional: ``pip install bm3d``.  Its licence (Tampere University) allows non-commercial use only, so it
    is not a dependency of ldct-clip.  It takes seconds per 128x128 slice and about a minute per 512x512 slice.

    Args:
        volume_hu: ``(X, Y)`` or ``(X, Y, Z)`` in HU.
        sigma_hu: noise SD (HU); default :func:`estimate_noise_sd`.
        progress: ``progress(slices_done, slices_total)``.

    Returns:
        float32 array of the input's shape, HU.
    """
    try:
        import bm3d
    except ImportError:
        raise InputError(
            "the 'bm3d' denoiser needs the bm3d package: pip install bm3d (licence: non-commercial use only)."
        ) from None
    sigma = estimate_noise_sd(volume_hu) if sigma_hu is None else float(sigma_hu)
    # bm3d's internal thresholds are tuned for image values of order 1: work in units of 1000 HU.
    return _per_slice(volume_hu, lambda s: 1000.0 * bm3d.bm3d(s / 1000.0, sigma / 1000.0), progress)


#: Classical denoisers by name: ``fn(volume_hu, sigma_hu=None, *, progress=None) -> volume_hu``.
CLASSICAL_DENOISERS: dict[str, Callable[..., np.ndarray]] = {"nlm": denoise_nlm, "bm3d": denoise_bm3d}


# ==========================================================================================================
# evaluation
# ==========================================================================================================


@dataclass
class EvaluationReport:
    """What :func:`evaluate_pairs` computed and wrote.

    Attributes:
        per_slice: one row per (case, slice, method): metric columns ``<metric>_<protocol>`` and ``noise_sd_hu``.
        per_case: one row per (case, method): slice means (= :func:`~ldct_clip.metrics.compute_metrics`), noise
            SD pooled over the ROI of all slices, the ROI, and the method's run time.
        summary: one row per method over all slices of all cases (mean and SD across slices), plus a
            ``reference`` row with only the NDCT noise SD.
        markdown: the summary as markdown tables (also in ``summary.md``).
        files: written files by role (``per_slice``, ``per_case``, ``summary_csv``, ``summary_md``) and figures.
    """

    per_slice: list[dict[str, Any]]
    per_case: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    markdown: str
    files: dict[str, Path] = field(default_factory=dict)


def _metric_columns(protocols: Sequence[str]) -> list[str]:
    return [f"{m}_{p}" for p in protocols for m in METRICS]


def _check_roi(roi: Sequence[int], shape: tuple[int, ...], name: str) -> tuple[slice, slice]:
    if len(roi) != 4:
        raise InputError(f"noise ROI must be [x0, x1, y0, y1] (pixel indices, end exclusive), got {list(roi)}.")
    x0, x1, y0, y1 = (int(v) for v in roi)
    if not (0 <= x0 < x1 <= shape[0] and 0 <= y0 < y1 <= shape[1]) or (x1 - x0) * (y1 - y0) < 2:
        raise InputError(
            f"{name}: noise ROI [{x0}, {x1}, {y0}, {y1}] does not fit slices of {shape[0]} x {shape[1]} px."
        )
    return slice(x0, x1), slice(y0, y1)


def _roi_text(roi: tuple[slice, slice] | None) -> str:
    return "" if roi is None else f"{roi[0].start}:{roi[0].stop},{roi[1].start}:{roi[1].stop}"


def _nps_box(roi: tuple[slice, slice] | None, shape: tuple[int, ...], size: int | None) -> tuple[slice, slice]:
    """Square NPS region of side ``size`` (default min(64, half the slice), even) centred on the noise ROI."""
    side = min(shape[0], shape[1], size or min(64, min(shape[:2]) // 2))
    side -= side % 2
    if roi is None:
        cx, cy = shape[0] // 2, shape[1] // 2
    else:
        cx, cy = (roi[0].start + roi[0].stop) // 2, (roi[1].start + roi[1].stop) // 2
    x0 = int(np.clip(cx - side // 2, 0, shape[0] - side))
    y0 = int(np.clip(cy - side // 2, 0, shape[1] - side))
    return slice(x0, x0 + side), slice(y0, y0 + side)


def _diff_width(noise: np.ndarray) -> float:
    """Display width (HU) of difference images: about +-3 robust SDs of the input noise, at least 20 HU."""
    mad = float(np.median(np.abs(noise - np.median(noise))))
    return float(max(20.0, round(6.0 * 1.4826 * mad, -1)))


def _check_settings(
    protocols: Sequence[str], classical: Sequence[str], display_windows: Sequence[Sequence[float]]
) -> tuple[list[str], list[tuple[float, float]]]:
    """Validate protocol and denoiser names and display windows (cheap: before any reading or denoising)."""
    if isinstance(protocols, str) or isinstance(classical, str):
        raise InputError("protocols and classical must be lists of names, e.g. ['paper', 'redcnn'] and ['nlm'].")
    names = [get_protocol(p).name for p in protocols]
    if not names:
        raise InputError("give at least one metric protocol.")
    unknown = [c for c in classical if c not in CLASSICAL_DENOISERS]
    if unknown:
        raise InputError(f"unknown classical denoiser(s) {unknown}; choose from {sorted(CLASSICAL_DENOISERS)}.")
    if "bm3d" in classical:
        try:
            import bm3d  # noqa: F401  (optional package: say so now, not after the network has run)
        except ImportError:
            raise InputError(
                "the 'bm3d' denoiser needs the bm3d package: pip install bm3d (licence: non-commercial use only)."
            ) from None
    try:
        windows = [(float(c), float(w)) for c, w in display_windows]
    except (TypeError, ValueError):
        raise InputError(f"display windows must be [center, width] pairs, got {display_windows!r}.") from None
    if not windows or any(not w > 0 for _, w in windows):
        raise InputError(f"display windows must be [center, width] pairs with width > 0, got {display_windows!r}.")
    return names, windows


def evaluate_pairs(
    pairs: Sequence[CasePair],
    output_dir: str | os.PathLike,
    *,
    denoiser: Callable[[np.ndarray, SliceProgress | None], np.ndarray] | None = None,
    network_name: str = "network",
    protocols: Sequence[str] = DEFAULT_PROTOCOLS,
    classical: Sequence[str] = ("nlm",),
    noise_roi: Sequence[int] | None = None,
    nps_size: int | None = None,
    display_windows: Sequence[Sequence[float]] = DEFAULT_WINDOWS,
    write_png: bool = True,
    write_volumes: bool = False,
    progress: bool = False,
    header: Mapping[str, Any] | None = None,
) -> EvaluationReport:
    """Denoise and score paired cases; write CSV tables, a markdown summary and PNG figures.

    For each pair the LDCT volume is scored as it is (``input``), after the network (``network_name``, when a
    ``denoiser`` is given) and after each classical denoiser, against the NDCT reference.

    * Metrics: PSNR (dB), SSIM and RMSE (HU) of each axial slice under each protocol
      (:func:`~ldct_clip.metrics.per_slice_metrics`); case values are slice means, the summary's are means and
      SDs over all slices of all cases (the papers' convention).
    * Noise SD (HU) of every image inside one ROI per case: ``noise_roi`` (``[x0, x1, y0, y1]``, pixel indices,
      end exclusive) or the most uniform water-like square of the *reference*
      (:func:`~ldct_clip.metrics.find_uniform_roi`), so that all methods are measured in the same place; NaN
      (with a warning) when no uniform region exists.
    * Radial NPS of each method's noise, ``image - reference``, in a square of side ``nps_size`` (default
      min(64, half the slice)) centred on the noise ROI, over all slices (HU^2 mm^2 against 1/mm).

    Files in ``output_dir``: ``per_slice.csv``, ``per_case.csv``, ``summary.csv``, ``summary.md``, and in
    ``figures/``: ``<case>_slice<k>_C<c>W<w>.png`` (input, outputs and reference at each display window, middle
    slice ``k``), ``<case>_slice<k>_diff.png`` (image - reference), ``<case>_nps.png`` and ``<case>_nps.csv``;
    with ``write_volumes``, ``volumes/<case>_<method>.nii.gz``.

    Args:
        pairs: from :func:`pair_cases`.
        output_dir: destination folder (never inside an input).
        denoiser: ``denoiser(volume_hu, progress) -> volume_hu`` for ``(X, Y, Z)`` HU volumes, e.g. the network
            through :func:`~ldct_clip.inference.denoise_volume`; ``None`` scores the baselines only.
        network_name: method name of the denoiser's rows.
        protocols: names from :data:`~ldct_clip.metrics.PROTOCOLS`.
        classical: names from :data:`CLASSICAL_DENOISERS`.
        noise_roi, nps_size, display_windows, write_png, write_volumes: see above.
        progress: progress bars (slices) on stderr.
        header: extra ``key: value`` lines for the top of ``summary.md`` (checkpoint, settings).

    Returns:
        An :class:`EvaluationReport`.

    Raises:
        InputError: unknown protocol or denoiser, bad ROI or windows, LDCT/NDCT shapes that differ, unreadable
            cases, output inside an input.
    """
    protocols, windows = _check_settings(protocols, classical, display_windows)
    if not pairs:
        raise InputError("no LDCT/NDCT pairs to evaluate.")
    output_dir = Path(output_dir)
    sources = [c.source for p in pairs for c in (p.ldct, p.ndct)]
    check_output_path(output_dir, sources)
    figures = output_dir / "figures"
    methods = ["input"] + ([network_name] if denoiser is not None else []) + list(classical)
    metric_cols = _metric_columns(protocols)

    per_slice: list[dict[str, Any]] = []
    per_case: list[dict[str, Any]] = []
    seconds: dict[str, float] = dict.fromkeys(methods, 0.0)
    files: dict[str, Path] = {}
    for pair in pairs:
        ld, nd = read_case(pair.ldct), read_case(pair.ndct)
        for vol in (ld, nd):
            for note in vol.warnings:
                log.warning("%s: %s", vol.name, note)
        if ld.shape != nd.shape:
            raise InputError(
                f"{pair.name}: LDCT shape {ld.shape} and NDCT shape {nd.shape} (X, Y, Z) differ; "
                "pairs must be voxel-aligned."
            )
        if not np.allclose(ld.spacing, nd.spacing, rtol=1e-3):
            log.warning("%s: LDCT spacing %s mm differs from NDCT spacing %s mm", pair.name, ld.spacing, nd.spacing)
        ref = nd.hu.astype(np.float32)
        nz = ref.shape[2]
        images: dict[str, np.ndarray] = {"input": ld.hu.astype(np.float32)}
        case_seconds: dict[str, float] = {"input": 0.0}
        if denoiser is not None:
            start = time.perf_counter()
            with _slice_progress(progress or None, pair.name, nz, network_name) as step:
                images[network_name] = np.asarray(denoiser(ld.hu, step), dtype=np.float32)
            case_seconds[network_name] = time.perf_counter() - start
        sigma = estimate_noise_sd(ld.hu) if classical else math.nan
        for name in classical:
            start = time.perf_counter()
            with _slice_progress(progress or None, pair.name, nz, name) as step:
                images[name] = CLASSICAL_DENOISERS[name](ld.hu, sigma, progress=step)
            case_seconds[name] = time.perf_counter() - start
        for name, t in case_seconds.items():
            seconds[name] += t

        # One noise ROI per case, chosen on the reference so every method is measured in the same place.
        if noise_roi is not None:
            roi, roi_source = _check_roi(noise_roi, ref.shape, pair.name), "given"
        else:
            try:
                roi, roi_source = find_uniform_roi(ref)[:2], "auto"
            except InputError as e:
                roi, roi_source = None, "none"
                log.warning("%s: no noise SD: %s", pair.name, e)
        ref_sd = float(noise_sd(ref, roi + (slice(None),))) if roi else math.nan

        for method in methods:
            img = images[method]
            scores = {p: per_slice_metrics(img, ref, p) for p in protocols}
            slice_sd = [float(noise_sd(img[:, :, k], roi)) if roi else math.nan for k in range(nz)]
            for k in range(nz):
                row: dict[str, Any] = {"case": pair.name, "slice": k, "method": method}
                row.update({f"{m}_{p}": float(scores[p][m][k]) for p in protocols for m in METRICS})
                row["noise_sd_hu"] = slice_sd[k]
                per_slice.append(row)
            row = {"case": pair.name, "method": method, "n_slices": nz}
            row.update({f"{m}_{p}": float(np.mean(scores[p][m])) for p in protocols for m in METRICS})
            row["noise_sd_hu"] = float(noise_sd(img, roi + (slice(None),))) if roi else math.nan
            row["reference_noise_sd_hu"] = ref_sd
            row["noise_roi"] = _roi_text(roi)
            row["roi_source"] = roi_source
            row["seconds"] = case_seconds[method]
            per_case.append(row)

        if write_volumes:
            for method in methods[1:]:
                path = output_dir / "volumes" / f"{pair.name}_{method}.nii.gz"
                files[path.name] = write_nifti(images[method], ld.affine, path, inputs=sources)
        if write_png:
            files.update(_case_figures(pair.name, images, ref, roi, nps_size, ld.spacing[:2], windows, figures))
        log.info(
            "%s: %d slices; %s", pair.name, nz,
            "; ".join(f"{r['method']} PSNR {r[f'psnr_{protocols[0]}']:.2f} dB ({protocols[0]})"
                      for r in per_case[-len(methods):]),
        )

    summary = _summarise(per_slice, per_case, methods, metric_cols, seconds)
    markdown = _markdown(summary, protocols, len(pairs), header or {})
    output_dir.mkdir(parents=True, exist_ok=True)
    files["per_slice"] = _write_csv(
        output_dir / "per_slice.csv", per_slice, ["case", "slice", "method", *metric_cols, "noise_sd_hu"]
    )
    files["per_case"] = _write_csv(
        output_dir / "per_case.csv", per_case,
        ["case", "method", "n_slices", *metric_cols, "noise_sd_hu", "reference_noise_sd_hu", "noise_roi", "roi_source",
         "seconds"],
    )
    files["summary_csv"] = _write_csv(
        output_dir / "summary.csv", summary,
        ["method", "n_cases", "n_slices", *[c for col in metric_cols for c in (col, f"{col}_sd")], "noise_sd_hu",
         "seconds_per_slice"],
    )
    files["summary_md"] = _write_text(output_dir / "summary.md", markdown)
    return EvaluationReport(per_slice, per_case, summary, markdown, files)


def _summarise(
    per_slice: list[dict[str, Any]], per_case: list[dict[str, Any]], methods: Sequence[str], metric_cols: Sequence[str],
    seconds: Mapping[str, float],
) -> list[dict[str, Any]]:
    rows = []
    for method in methods:
        slices = [r for r in per_slice if r["method"] == method]
        cases = [r for r in per_case if r["method"] == method]
        row: dict[str, Any] = {"method": method, "n_cases": len(cases), "n_slices": len(slices)}
        for col in metric_cols:
            values = np.array([r[col] for r in slices], dtype=np.float64)
            row[col] = float(values.mean())
            row[f"{col}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        row["noise_sd_hu"] = _nanmean([r["noise_sd_hu"] for r in cases])
        row["seconds_per_slice"] = seconds[method] / max(len(slices), 1)
        rows.append(row)
    ref_cases = [r for r in per_case if r["method"] == methods[0]]
    rows.append({"method": "reference", "n_cases": len(ref_cases), "n_slices": rows[0]["n_slices"],
                 "noise_sd_hu": _nanmean([r["reference_noise_sd_hu"] for r in ref_cases])})
    return rows


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else math.nan


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _markdown(summary: list[dict[str, Any]], protocols: Sequence[str], n_cases: int, header: Mapping[str, Any]) -> str:
    methods = [r for r in summary if r["method"] != "reference"]
    lines = ["# ldct-clip paired evaluation", ""]
    lines += [f"- cases: {n_cases}, slices: {methods[0]['n_slices']}"]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += ["- values: mean ± SD over all slices; PSNR in dB, RMSE in HU", ""]
    for p in protocols:
        lines += [f"## {p}", "", f"{get_protocol(p).description}", "",
                  "| method | PSNR | SSIM | RMSE |", "|---|---|---|---|"]
        for r in methods:
            lines.append(
                f"| {r['method']} | {_fmt(r[f'psnr_{p}'])} ± {_fmt(r[f'psnr_{p}_sd'])} | "
                f"{_fmt(r[f'ssim_{p}'], 4)} ± {_fmt(r[f'ssim_{p}_sd'], 4)} | "
                f"{_fmt(r[f'rmse_{p}'])} ± {_fmt(r[f'rmse_{p}_sd'])} |"
            )
        lines.append("")
    lines += ["## noise", "", "Noise SD inside a uniform ROI (mean over cases); run time per slice.", "",
              "| method | noise SD (HU) | s / slice |", "|---|---|---|"]
    for r in summary:
        lines.append(f"| {r['method']} | {_fmt(r['noise_sd_hu'])} | {_fmt(r.get('seconds_per_slice'), 3)} |")
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    def cell(v: Any) -> Any:
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, ".10g")  # enough digits to compare with recomputed values
        return v

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: cell(row.get(k, "")) for k in columns})
    return path


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _case_figures(
    name: str,
    images: Mapping[str, np.ndarray],
    ref: np.ndarray,
    roi: tuple[slice, slice] | None,
    nps_size: int | None,
    pixel_mm: tuple[float, float],
    windows: Sequence[tuple[float, float]],
    folder: Path,
) -> dict[str, Path]:
    """Slice panels at each window, difference panels, and the radial NPS plot + CSV of one case."""
    files: dict[str, Path] = {}
    k = ref.shape[2] // 2
    # Small slices are enlarged (pixel replication) so that the panel titles fit; display only.
    zoom = max(1, math.ceil(256 / min(ref.shape[:2])))

    def big(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, zoom, axis=0), zoom, axis=1) if zoom > 1 else a

    panels_of = [(m, big(img[:, :, k])) for m, img in images.items()] + [("reference", big(ref[:, :, k]))]
    for c, w in windows:
        path = folder / f"{name}_slice{k}_C{c:g}W{w:g}.png"
        files[path.stem] = save_panels(path, [(t, im, (c, w)) for t, im in panels_of])
    width = _diff_width(images["input"][:, :, k] - ref[:, :, k])
    path = folder / f"{name}_slice{k}_diff.png"
    files[path.stem] = save_panels(
        path, [(f"{m} - reference", big(img[:, :, k] - ref[:, :, k]), (0.0, width)) for m, img in images.items()]
    )
    box = _nps_box(roi, ref.shape, nps_size)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for method, img in images.items():
        noise = np.moveaxis((img - ref)[box], 2, 0)  # (Z, side, side) noise ROIs
        nps2d, freqs = noise_power_spectrum(noise, pixel_mm)
        curves[method] = radial_nps(nps2d, freqs)
    path = folder / f"{name}_nps.png"
    files[path.stem] = save_line_plot(
        path, curves, title=f"{name}: radial NPS of (image - reference), {box[0].stop - box[0].start} px ROI",
        xlabel="spatial frequency (1/mm)", ylabel="NPS (HU^2 mm^2)",
    )
    f = next(iter(curves.values()))[0]
    rows = [{"frequency_per_mm": float(fi), **{m: float(c[1][i]) for m, c in curves.items()}} for i, fi in enumerate(f)]
    files[f"{name}_nps_csv"] = _write_csv(folder / f"{name}_nps.csv", rows, ["frequency_per_mm", *curves])
    return files


# ==========================================================================================================
# the workflow behind `ldct-clip evaluate` and the bundle's evaluate.json
# ==========================================================================================================


class PairedEvaluationWorkflow:
    """Load the network like the denoising workflow does, then :func:`pair_cases` + :func:`evaluate_pairs`.

    Args:
        ldct_dir, ndct_dir: folders of low-dose and normal-dose cases matched by name (or ``pairs_csv``).
        output_dir: where tables and figures go.
        network: the denoiser the checkpoint is loaded into (``None``: shaped after the checkpoint).
        pairs_csv: CSV of pairs (columns ``ldct``, ``ndct``, optional ``name``) instead of the two folders.
        ckpt_path, allow_untrained, device, precision, channels_last, compile, roi_size, overlap, sw_batch_size,
            hu_min, hu_max: as :class:`~ldct_clip.pipeline.CTDenoisingWorkflow` (the network runs through
            :func:`~ldct_clip.inference.denoise_volume` with them).
        protocols, classical, noise_roi, nps_size, display_windows, write_png, write_volumes: as
            :func:`evaluate_pairs`.
        progress: progress bars on stderr.
        print_summary: print the markdown summary to stdout at the end.
    """

    def __init__(
        self,
        ldct_dir: str | os.PathLike | None,
        ndct_dir: str | os.PathLike | None,
        output_dir: str | os.PathLike,
        network: Any = None,
        *,
        pairs_csv: str | os.PathLike | None = None,
        ckpt_path: str | os.PathLike | None = None,
        allow_untrained: bool = False,
        device: Any = "cpu",
        precision: str = "auto",
        channels_last: bool = True,
        compile: bool = False,
        roi_size: Sequence[int] = (512, 512),
        overlap: float = 0.25,
        sw_batch_size: int | None = None,
        hu_min: float = -1024.0,
        hu_max: float = 3072.0,
        protocols: Sequence[str] = DEFAULT_PROTOCOLS,
        classical: Sequence[str] = ("nlm",),
        noise_roi: Sequence[int] | None = None,
        nps_size: int | None = None,
        display_windows: Sequence[Sequence[float]] = DEFAULT_WINDOWS,
        write_png: bool = True,
        write_volumes: bool = False,
        progress: bool = True,
        print_summary: bool = True,
    ) -> None:
        from .pipeline import CTDenoisingWorkflow, as_flag

        self.ldct_dir, self.ndct_dir = ldct_dir, ndct_dir
        self.pairs_csv = pairs_csv or None  # "" from a config means none
        self.output_dir = Path(output_dir)
        # The denoising workflow owns checkpoint loading and the inference settings: one implementation.
        self.denoising = CTDenoisingWorkflow(
            ldct_dir or ".", output_dir, network, ckpt_path=ckpt_path, allow_untrained=allow_untrained, device=device,
            precision=precision, channels_last=channels_last, compile=compile, roi_size=roi_size, overlap=overlap,
            sw_batch_size=sw_batch_size, hu_min=hu_min, hu_max=hu_max, write_dicom=False, write_png=False,
            progress=False,
        )
        self.protocols = list(protocols)
        self.classical = list(classical or [])
        self.noise_roi = list(noise_roi) if noise_roi else None
        self.nps_size = nps_size
        self.display_windows = display_windows
        # flags may arrive as text from a bundle command line (`--write_png false`)
        self.write_png = as_flag(write_png, "write_png")
        self.write_volumes = as_flag(write_volumes, "write_volumes")
        self.progress = as_flag(progress, "progress")
        self.print_summary = as_flag(print_summary, "print_summary")

    def _denoiser(self, model: Any) -> Callable[[np.ndarray, SliceProgress | None], np.ndarray]:
        from .inference import denoise_volume

        d = self.denoising

        def run(volume_hu: np.ndarray, progress: SliceProgress | None) -> np.ndarray:
            return denoise_volume(
                volume_hu, model, roi_size=d.roi_size, overlap=d.overlap, sw_batch_size=d.sw_batch_size,
                hu_window=d.hu_window, device=d.device, precision=d.precision, channels_last=d.channels_last,
                progress=progress,
            )

        return run

    def run(self, exit_on_error: bool = False) -> EvaluationReport:
        """Evaluate all pairs. With ``exit_on_error`` (command line, bundle) a user error ends the process with
        status 2 and a one-line message instead of a traceback."""
        try:
            return self._run()
        except LdctClipError as e:
            if not exit_on_error:
                raise
            log.error("error: %s", e)
            raise SystemExit(2) from None

    def _run(self) -> EvaluationReport:
        _check_settings(self.protocols, self.classical, self.display_windows)  # fail before loading anything
        pairs = pair_cases(self.ldct_dir, self.ndct_dir, pairs_csv=self.pairs_csv)
        model = self.denoising.load_network()
        d = self.denoising
        log.info(
            "%d LDCT/NDCT pair(s) -> %s (device %s, precision %s)", len(pairs), self.output_dir, d.device, d.precision
        )
        header = {
            "checkpoint": d.ckpt_path or "none (untrained)",
            "LDCT": self.pairs_csv or self.ldct_dir,
            "NDCT": self.pairs_csv or self.ndct_dir,
            "network HU window": f"[{d.hu_window[0]:g}, {d.hu_window[1]:g}]",
            "classical": ", ".join(self.classical) or "none",
        }
        report = evaluate_pairs(
            pairs, self.output_dir, denoiser=self._denoiser(model), protocols=self.protocols, classical=self.classical,
            noise_roi=self.noise_roi, nps_size=self.nps_size, display_windows=self.display_windows,
            write_png=self.write_png, write_volumes=self.write_volumes, progress=self.progress, header=header,
        )
        if self.print_summary:
            print(report.markdown, flush=True)
        log.info("evaluation written to %s", self.output_dir)
        return report
