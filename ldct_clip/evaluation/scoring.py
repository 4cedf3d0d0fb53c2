"""Scoring a denoiser on paired LDCT/NDCT cases under the metric protocols of :mod:`ldct_clip.metrics`.

Per-slice, per-case and summary tables (CSV + markdown), noise SD in a uniform ROI, and the figures of
:mod:`ldct_clip.evaluation.case_figures`. :class:`CaseScorer` takes one case at a time (the bundle's
evaluation handler feeds it the pipeline's output); :func:`evaluate_pairs` runs it over pairs with any
denoising function. Volumes are ``(X, Y, Z)`` in HU.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.ct.io.nifti_writer import write_nifti
from ldct_clip.ct.io.output_paths import check_output_path
from ldct_clip.ct.io.read import read_case
from ldct_clip.metrics import find_uniform_roi, get_protocol, noise_sd, per_slice_metrics
from ldct_clip.evaluation.case_figures import case_figures
from ldct_clip.reporting.progress import SliceProgress, slice_progress
from ldct_clip.reporting.tables import write_csv, write_text
from ldct_clip.evaluation.classical import CLASSICAL_DENOISERS, available_denoisers, estimate_noise_sd
from ldct_clip.ct.pairs import CasePair

__all__ = ["DEFAULT_PROTOCOLS", "DEFAULT_WINDOWS", "METRICS", "EvaluationReport", "CaseScorer", "check_settings",
           "evaluate_pairs"]

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


def check_settings(
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
    try:
        windows = [(float(c), float(w)) for c, w in display_windows]
    except (TypeError, ValueError):
        raise InputError(f"display windows must be [center, width] pairs, got {display_windows!r}.") from None
    if not windows or any(not w > 0 for _, w in windows):
        raise InputError(f"display windows must be [center, width] pairs with width > 0, got {display_windows!r}.")
    return names, windows


class CaseScorer:
    """Score paired cases one at a time, then write the tables (see :func:`evaluate_pairs` for what is computed
    and written).

    Args:
        output_dir: destination folder.
        sources: the input files and folders (outputs must not be written into them).
        network_name: method name of the network's rows (``None``: no network, the baselines only).
        protocols, classical, noise_roi, nps_size, display_windows, write_png, write_volumes, progress, header:
            as :func:`evaluate_pairs`.

    Raises:
        InputError: unknown protocol or denoiser, bad windows (at construction), bad ROI or shapes (``add``).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        *,
        sources: Sequence[Path] = (),
        network_name: str | None = "network",
        protocols: Sequence[str] = DEFAULT_PROTOCOLS,
        classical: Sequence[str] = ("nlm",),
        noise_roi: Sequence[int] | None = None,
        nps_size: int | None = None,
        display_windows: Sequence[Sequence[float]] = DEFAULT_WINDOWS,
        write_png: bool = True,
        write_volumes: bool = False,
        progress: bool = False,
        header: Mapping[str, Any] | None = None,
    ) -> None:
        self.protocols, self.windows = check_settings(protocols, classical, display_windows)
        self.output_dir = Path(output_dir)
        self.sources = list(sources)
        check_output_path(self.output_dir, self.sources)
        self.network_name = network_name
        self.classical, self.notes = available_denoisers(classical)
        self.methods = ["input"] + ([network_name] if network_name else []) + self.classical
        self.noise_roi, self.nps_size = noise_roi, nps_size
        self.write_png, self.write_volumes, self.progress = write_png, write_volumes, progress
        self.header = dict(header or {})
        self.per_slice: list[dict[str, Any]] = []
        self.per_case: list[dict[str, Any]] = []
        self.seconds: dict[str, float] = dict.fromkeys(self.methods, 0.0)
        self.files: dict[str, Path] = {}
        self.cases = 0
        self.bm3d_psd: set[str] = set()

    def add(
        self, name: str, ldct_hu: np.ndarray, ndct_hu: np.ndarray, affine: np.ndarray, *,
        denoised: np.ndarray | None = None, network_seconds: float = 0.0, ndct_affine: np.ndarray | None = None,
        noise_psd: np.ndarray | None = None,
    ) -> None:
        """Score one case: ``ldct_hu`` and ``ndct_hu`` (X, Y, Z) in HU on the grid ``affine`` (4x4, RAS+ mm), and
        the network's ``denoised`` volume (required when the scorer has a network).  ``noise_psd``: the ``(X, Y)``
        PSD of the LDCT noise where it is known (simulated noise, :mod:`ldct_clip.evaluation.noise_psd`), for BM3D;
        otherwise BM3D estimates it from the LDCT volume."""
        if ldct_hu.shape != ndct_hu.shape:
            raise InputError(
                f"{name}: LDCT shape {tuple(ldct_hu.shape)} and NDCT shape {tuple(ndct_hu.shape)} (X, Y, Z) differ; "
                "pairs must be voxel-aligned."
            )
        spacing = tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
        if ndct_affine is not None:
            nd_spacing = tuple(float(v) for v in np.linalg.norm(np.asarray(ndct_affine)[:3, :3], axis=0))
            if not np.allclose(spacing, nd_spacing, rtol=1e-3):
                log.warning("%s: LDCT spacing %s mm differs from NDCT spacing %s mm", name, spacing, nd_spacing)
        ref = np.asarray(ndct_hu, dtype=np.float32)
        nz = ref.shape[2]
        images: dict[str, np.ndarray] = {"input": np.asarray(ldct_hu, dtype=np.float32)}
        case_seconds: dict[str, float] = {"input": 0.0}
        if self.network_name:
            if denoised is None:
                raise ValueError(f"{name}: the scorer has a network ({self.network_name}) but no denoised volume came")
            images[self.network_name] = np.asarray(denoised, dtype=np.float32)
            case_seconds[self.network_name] = network_seconds
        if "bm3d" in self.classical:
            self.bm3d_psd.add("given (simulated noise)" if noise_psd is not None else "estimated from each LDCT volume")
        for method in self.classical:
            start = time.perf_counter()
            with slice_progress(self.progress or None, name, nz, method) as step:
                images[method] = CLASSICAL_DENOISERS[method](
                    images["input"], **_noise_model(method, images["input"], noise_psd), progress=step)
            case_seconds[method] = time.perf_counter() - start
        for method, t in case_seconds.items():
            self.seconds[method] += t

        # One noise ROI per case, chosen on the reference so every method is measured in the same place.
        if self.noise_roi is not None:
            roi, roi_source = _check_roi(self.noise_roi, ref.shape, name), "given"
        else:
            try:
                roi, roi_source = find_uniform_roi(ref)[:2], "auto"
            except InputError as e:
                roi, roi_source = None, "none"
                log.warning("%s: no noise SD: %s", name, e)
        ref_sd = float(noise_sd(ref, roi + (slice(None),))) if roi else math.nan

        for method in self.methods:
            img = images[method]
            scores = {p: per_slice_metrics(img, ref, p) for p in self.protocols}
            slice_sd = [float(noise_sd(img[:, :, k], roi)) if roi else math.nan for k in range(nz)]
            for k in range(nz):
                row: dict[str, Any] = {"case": name, "slice": k, "method": method}
                row.update({f"{m}_{p}": float(scores[p][m][k]) for p in self.protocols for m in METRICS})
                row["noise_sd_hu"] = slice_sd[k]
                self.per_slice.append(row)
            row = {"case": name, "method": method, "n_slices": nz}
            row.update({f"{m}_{p}": float(np.mean(scores[p][m])) for p in self.protocols for m in METRICS})
            row["noise_sd_hu"] = float(noise_sd(img, roi + (slice(None),))) if roi else math.nan
            row["reference_noise_sd_hu"] = ref_sd
            row["noise_roi"] = _roi_text(roi)
            row["roi_source"] = roi_source
            row["seconds"] = case_seconds[method]
            self.per_case.append(row)

        if self.write_volumes:
            for method in self.methods[1:]:
                path = self.output_dir / "volumes" / f"{name}_{method}.nii.gz"
                self.files[path.name] = write_nifti(images[method], affine, path, inputs=self.sources)
        if self.write_png:
            self.files.update(case_figures(name, images, ref, roi, self.nps_size, spacing[:2], self.windows,
                                           self.output_dir / "figures"))
        first = self.protocols[0]
        log.info("%s: %d slices; %s", name, nz, "; ".join(
            f"{r['method']} PSNR {r[f'psnr_{first}']:.2f} dB ({first})" for r in self.per_case[-len(self.methods):]))
        self.cases += 1

    def finish(self) -> EvaluationReport:
        """Write ``per_slice.csv``, ``per_case.csv``, ``summary.csv`` and ``summary.md``; return the report."""
        if not self.cases:
            raise InputError("no LDCT/NDCT pairs were scored.")
        metric_cols = _metric_columns(self.protocols)
        summary = _summarise(self.per_slice, self.per_case, self.methods, metric_cols, self.seconds)
        header = dict(self.header)
        if self.bm3d_psd:
            header["BM3D noise PSD"] = ", ".join(sorted(self.bm3d_psd))
        if self.notes:
            header["note"] = "; ".join(self.notes)
        markdown = _markdown(summary, self.protocols, self.cases, header)
        out, files = self.output_dir, dict(self.files)
        out.mkdir(parents=True, exist_ok=True)
        files["per_slice"] = write_csv(
            out / "per_slice.csv", self.per_slice, ["case", "slice", "method", *metric_cols, "noise_sd_hu"]
        )
        files["per_case"] = write_csv(
            out / "per_case.csv", self.per_case,
            ["case", "method", "n_slices", *metric_cols, "noise_sd_hu", "reference_noise_sd_hu", "noise_roi",
             "roi_source", "seconds"],
        )
        files["summary_csv"] = write_csv(
            out / "summary.csv", summary,
            ["method", "n_cases", "n_slices", *[c for col in metric_cols for c in (col, f"{col}_sd")], "noise_sd_hu",
             "seconds_per_slice"],
        )
        files["summary_md"] = write_text(out / "summary.md", markdown)
        return EvaluationReport(self.per_slice, self.per_case, summary, markdown, files)


def evaluate_pairs(
    pairs: Sequence[CasePair],
    output_dir: str | os.PathLike,
    *,
    denoiser: Callable[[np.ndarray, SliceProgress | None], np.ndarray] | None = None,
    network_name: str = "network",
    progress: bool = False,
    **settings: Any,
) -> EvaluationReport:
    """Denoise and score paired cases; write CSV tables, a markdown summary and PNG figures.

    For each pair the LDCT volume is scored as it is (``input``), after the network (``network_name``, when a
    ``denoiser`` is given) and after each classical denoiser, against the NDCT reference.  The classical
    denoisers see only the LDCT: NLM its noise SD estimated from the volume, BM3D its noise PSD estimated from
    the volume (:func:`~ldct_clip.evaluation.noise_psd.estimate_noise_psd`; ``CaseScorer.add`` takes a known one).
    BM3D is skipped, with a note in ``summary.md``, where the ``bm3d`` package is not installed.

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
        progress: progress bars (slices) on stderr.
        settings: the :class:`CaseScorer` settings: ``protocols`` (names from :data:`~ldct_clip.metrics.PROTOCOLS`),
            ``classical`` (names from :data:`CLASSICAL_DENOISERS`), ``noise_roi``, ``nps_size``,
            ``display_windows``, ``write_png``, ``write_volumes`` (see above), ``header`` (extra ``key: value``
            lines for the top of ``summary.md``).

    Returns:
        An :class:`EvaluationReport`.

    Raises:
        InputError: unknown protocol or denoiser, bad ROI or windows, LDCT/NDCT shapes that differ, unreadable
            cases, output inside an input.
    """
    scorer = CaseScorer(
        output_dir, sources=[c.source for p in pairs for c in (p.ldct, p.ndct)],
        network_name=network_name if denoiser is not None else None, progress=progress, **settings,
    )
    if not pairs:
        raise InputError("no LDCT/NDCT pairs to evaluate.")
    for pair in pairs:
        ld, nd = read_case(pair.ldct), read_case(pair.ndct)
        for vol in (ld, nd):
            for note in vol.warnings:
                log.warning("%s: %s", vol.name, note)
        denoised, seconds = None, 0.0
        if denoiser is not None and ld.shape == nd.shape:
            start = time.perf_counter()
            with slice_progress(progress or None, pair.name, ld.shape[2], network_name) as step:
                denoised = denoiser(ld.hu, step)
            seconds = time.perf_counter() - start
        scorer.add(pair.name, ld.hu, nd.hu, ld.affine, denoised=denoised, network_seconds=seconds,
                   ndct_affine=nd.affine)
    return scorer.finish()


def _noise_model(method: str, ldct_hu: np.ndarray, noise_psd: np.ndarray | None) -> dict[str, Any]:
    """The noise description each classical denoiser is given: NLM the SD estimated from the LDCT volume,
    BM3D a PSD (the known one, else its own estimate from the volume: FBP noise is correlated)."""
    if method == "bm3d":
        return {"noise_psd": noise_psd}
    return {"sigma_hu": estimate_noise_sd(ldct_hu)}


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
