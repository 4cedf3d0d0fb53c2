"""Tables and figures of task-based image quality: ``lcd.csv``/``lcd.md`` of one LCD measurement, and the
whole simulated study of :func:`ldct_clip.evaluation.iq_study.run_iq_study` (CSV, markdown, PNG plots and a panel)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ldct_clip.metrics.detectability import LCD_COLUMNS
from ldct_clip.reporting.figures import draw_line_plot, save_grid, save_panels
from ldct_clip.reporting.tables import write_csv, write_text

__all__ = ["lcd_markdown", "write_iq_report", "write_lcd_report"]

LOW_CONTRAST_WINDOW = (0.0, 100.0)  # (centre, width) HU: the CCT189 inserts are 3-14 HU


def _f(v: Any, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def lcd_markdown(rows: Sequence[Mapping[str, Any]], extra: Sequence[str] = ()) -> str:
    """A markdown table of LCD rows: d' and AUC as mean +- SD over readers, with the 95% bootstrap interval."""
    head = [*extra, "insert", "observer", "d' mean ± SD (95% CI)", "AUC mean ± SD (95% CI)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r[k]) if not isinstance(r[k], float) else f"{r[k]:g}" for k in extra]
        cells += [f"{r['insert_diameter_mm']:g} mm / {r['insert_hu']:+g} HU", str(r["observer"]),
                  f"{_f(r['dprime_mean'])} ± {_f(r['dprime_sd'])} ({_f(r['dprime_ci95_low'])}–{_f(r['dprime_ci95_high'])})",
                  f"{_f(r['auc_mean'], 3)} ± {_f(r['auc_sd'], 3)} ({_f(r['auc_ci95_low'], 3)}–{_f(r['auc_ci95_high'], 3)})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_lcd_report(rows: Sequence[Mapping[str, Any]], out_dir: str | Path, header: Mapping[str, Any]) -> list[Path]:
    """``lcd.csv`` (:data:`~ldct_clip.metrics.detectability.LCD_COLUMNS`) and ``lcd.md`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = "# Low-contrast detectability\n\n" + "".join(f"- {k}: {v}\n" for k, v in header.items()) + "\n"
    return [write_csv(out / "lcd.csv", rows, LCD_COLUMNS), write_text(out / "lcd.md", text + lcd_markdown(rows))]


def _dose_label(d: float) -> str:
    return f"{100 * d:g}%"


def _dprime_plots(study: Any) -> list:
    s = study.settings
    images = []
    for obs in s.observers:
        for insert in sorted({(r["insert_diameter_mm"], r["insert_hu"]) for r in study.lcd}):
            curves, errors = {}, {}
            for method in study.methods:
                rows = sorted((r for r in study.lcd if r["method"] == method and r["observer"] == obs
                               and (r["insert_diameter_mm"], r["insert_hu"]) == insert), key=lambda r: r["dose"])
                x = np.array([100 * r["dose"] for r in rows])
                curves[method] = (x, np.array([r["dprime_mean"] for r in rows]))
                errors[method] = (np.array([r["dprime_ci95_low"] for r in rows]),
                                  np.array([r["dprime_ci95_high"] for r in rows]))
                if np.isnan(errors[method][0]).all():  # no bootstrap: the SD over readers
                    m, sd = curves[method][1], np.array([r["dprime_sd"] for r in rows])
                    errors[method] = (m - sd, m + sd)
            images.append(draw_line_plot(curves, errors=errors, title=f"{obs}: {insert[0]:g} mm, {insert[1]:+g} HU "
                                         "(bars: 95% CI)", xlabel="dose (%)", ylabel="d'", log_y=False, size=(520, 360)))
    return images


def _curve_rows(curves: Mapping[tuple, tuple[np.ndarray, np.ndarray]], keys: Sequence[str], value: str) -> list[dict]:
    rows = []
    for key, (f, y) in curves.items():
        rows += [{**dict(zip(keys, key)), "f": float(a), value: float(b)} for a, b in zip(f, y)]
    return rows


def write_iq_report(study: Any, out_dir: str | Path, header: Mapping[str, Any]) -> list[Path]:
    """Write the study's tables and figures into ``out_dir``:

    ``lcd.csv`` (method, dose, then :data:`LCD_COLUMNS`), ``nps.csv`` (noise SD, peak and mean frequency),
    ``nps_curves.csv``, ``ttf.csv`` (f50, f10 per insert), ``ttf_curves.csv``, ``summary.md``, and the PNGs
    ``dprime_vs_dose.png``, ``nps.png``, ``ttf.png`` (at the lowest dose and at full dose) and ``panel.png``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = study.settings
    files = [
        write_csv(out / "lcd.csv", study.lcd, ("method", "dose", *LCD_COLUMNS)),
        write_csv(out / "nps.csv", study.nps, ("method", "dose", "noise_hu", "peak_frequency", "mean_frequency")),
        write_csv(out / "nps_curves.csv", _curve_rows(study.nps_curves, ("method", "dose"), "nps"),
                  ("method", "dose", "f", "nps")),
        write_csv(out / "ttf.csv", study.ttf, ("method", "dose", "insert_hu", "contrast_hu", "f50", "f10")),
        write_csv(out / "ttf_curves.csv", _curve_rows(study.ttf_curves, ("method", "dose", "insert_hu"), "ttf"),
                  ("method", "dose", "insert_hu", "f", "ttf")),
    ]
    files.append(save_grid(out / "dprime_vs_dose.png", _dprime_plots(study), columns=2))
    nps_plots = [draw_line_plot({m: study.nps_curves[(m, float(d))] for m in study.methods},
                                title=f"radial NPS at {_dose_label(d)} dose", xlabel="f (1/mm)",
                                ylabel="NPS (HU^2 mm^2)", size=(520, 360)) for d in s.doses]
    files.append(save_grid(out / "nps.png", nps_plots, columns=2))
    ttf_plots = []
    for d in sorted({min(s.doses), max(s.doses)}):
        for hu in sorted({r["insert_hu"] for r in study.ttf}):
            ttf_plots.append(draw_line_plot({m: study.ttf_curves[(m, float(d), hu)] for m in study.methods},
                                            title=f"TTF {hu:+g} HU insert, {_dose_label(d)} dose", xlabel="f (1/mm)",
                                            ylabel="TTF", log_y=False, size=(420, 300)))
    files.append(save_grid(out / "ttf.png", ttf_plots, columns=len({r["insert_hu"] for r in study.ttf})))
    panel_dose = float(sorted(s.doses)[1] if len(s.doses) > 1 else s.doses[0])
    from ldct_clip.simulation.iq_phantoms import make_cct189

    truth = ("noise-free", make_cct189(s.size, s.pixel_size_mm), LOW_CONTRAST_WINDOW)
    files.append(save_panels(out / "panel.png", [truth] + [(f"{m} {_dose_label(panel_dose)}",
                                                            study.examples[(m, panel_dose)], LOW_CONTRAST_WINDOW)
                                                           for m in study.methods]))
    files.append(write_text(out / "summary.md", summary_markdown(study, header)))
    return files


def summary_markdown(study: Any, header: Mapping[str, Any]) -> str:
    s = study.settings
    parts = ["# Task-based image quality (simulated CCT189 and TTF/NPS phantoms)\n"]
    parts += [f"- {k}: {v}" for k, v in header.items()]
    parts += [f"- note: {n}" for n in study.notes]
    parts.append(f"- doses: {', '.join(_dose_label(d) for d in s.doses)}; {s.realisations} signal-present and "
                 f"{s.realisations} signal-absent images per dose, {s.ttf_realisations} TTF-phantom images; "
                 f"{s.readers} readers (train/test splits 50/50), {s.bootstrap} bootstrap resamplings for the 95% CI")
    parts.append("- wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in study.seconds.items()))
    parts.append("\n## Low-contrast detectability (d' against dose)\n")
    parts.append(lcd_markdown(sorted(study.lcd, key=lambda r: (r["observer"], r["insert_diameter_mm"], r["dose"],
                                                              study.methods.index(r["method"]))),
                              extra=("dose", "method")))
    parts.append("\n## Noise (NPS of the signal-absent images, central ROI)\n")
    parts.append("| dose | method | noise SD (HU) | peak f (1/mm) | mean f (1/mm) |\n|---|---|---|---|---|")
    parts += [f"| {_dose_label(r['dose'])} | {r['method']} | {r['noise_hu']:.1f} | {r['peak_frequency']:.3f} | "
              f"{r['mean_frequency']:.3f} |" for r in study.nps]
    parts.append("\n## Resolution (TTF f50 / f10 in 1/mm, per insert)\n")
    inserts = sorted({r["insert_hu"] for r in study.ttf})
    parts.append("| dose | method | " + " | ".join(f"{hu:+g} HU" for hu in inserts) + " |")
    parts.append("|---|---|" + "---|" * len(inserts))
    for d in s.doses:
        for m in study.methods:
            cells = [next(f"{_f(r['f50'], 3)} / {_f(r['f10'], 3)}" for r in study.ttf
                          if r["method"] == m and r["dose"] == float(d) and r["insert_hu"] == hu) for hu in inserts]
            parts.append(f"| {_dose_label(d)} | {m} | " + " | ".join(cells) + " |")
    return "\n".join(parts) + "\n"
