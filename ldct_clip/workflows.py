"""The bundle's CT workflows from Python: ``inference.json`` (denoise cases) and ``evaluate.json`` (score the
network on LDCT/NDCT pairs), with overrides, run in-process.

The command line (``ldct-clip denoise``, ``ldct-clip evaluate``) and the PACS door call these;
``python -m monai.bundle run`` runs the same configs itself.
"""

from __future__ import annotations

import os
from typing import Any

from ldct_clip.bundle import load_config, run_config
from ldct_clip.evaluation.scoring import EvaluationReport
from ldct_clip.errors import InputError
from ldct_clip.handlers.case_summary import CaseResult, CaseSummary
from ldct_clip.handlers.evaluation_report import EvaluationHandler

__all__ = ["denoise_cases", "evaluate_cases"]


def denoise_cases(dataset_dir: str | os.PathLike, output_dir: str | os.PathLike, *, workflow: str = "inference",
                  bundle: str | os.PathLike | None = None, **overrides: Any) -> list[CaseResult]:
    """Denoise every case under ``dataset_dir`` into ``output_dir`` with the bundle's inference pipeline.

    Args:
        dataset_dir, output_dir: as the config's ``dataset_dir`` and ``output_dir``.
        workflow: ``"inference"`` or ``"multi_gpu_inference"`` (see :data:`ldct_clip.bundle.CONFIGS`).
        bundle: another bundle folder (default: the project's ``monai_bundle``).
        overrides: config ids and values (``ckpt_path``, ``precision``, ``"network_def#width"``, ...).

    Returns:
        One :class:`~ldct_clip.handlers.CaseResult` per case (failed cases have ``ok=False`` and a message).

    Raises:
        LdctClipError: what stops the whole run (no cases, the output inside the input, no weights).
    """
    parser = load_config(workflow, {"dataset_dir": str(dataset_dir), "output_dir": str(output_dir), **overrides},
                         bundle=bundle)
    run_config(parser)
    return next(h for h in parser.get_parsed_content("handlers") if isinstance(h, CaseSummary)).results


def evaluate_cases(ldct_dir: str | os.PathLike | None, ndct_dir: str | os.PathLike | None,
                   output_dir: str | os.PathLike, *, pairs_csv: str | os.PathLike | None = None,
                   bundle: str | os.PathLike | None = None, **overrides: Any) -> EvaluationReport:
    """Denoise the LDCT cases with the bundle's inference pipeline and score them against their NDCT references
    (``evaluate.json`` merged over ``inference.json``).

    Args:
        ldct_dir, ndct_dir: folders of cases matched by name (or ``pairs_csv``, columns ``ldct,ndct[,name]``).
        output_dir: where tables and figures go.
        bundle: another bundle folder (default: the project's ``monai_bundle``).
        overrides: config ids and values (``ckpt_path``, ``protocols``, ``classical``, ``write_png``, ...).

    Raises:
        LdctClipError: bad pairs or settings, no weights, a case that could not be read.
    """
    parser = load_config("evaluate", {"ldct_dir": str(ldct_dir or ""), "ndct_dir": str(ndct_dir or ""),
                                      "pairs_csv": str(pairs_csv) if pairs_csv else None,
                                      "output_dir": str(output_dir), **overrides}, bundle=bundle)
    evaluator = run_config(parser)
    if evaluator.failures:
        name, message = next(iter(evaluator.failures.items()))
        raise InputError(f"{name}: {message}")
    report = next(h for h in parser.get_parsed_content("handlers") if isinstance(h, EvaluationHandler)).report
    if report is None:
        raise InputError("no LDCT/NDCT pairs were scored.")
    return report
