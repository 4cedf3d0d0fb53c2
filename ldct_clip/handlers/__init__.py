"""Ignite handlers: of the bundle's evaluator (loading the weights strictly, the per-case log and summary, the
CT evaluation's scores and reports) and of the trainer (the JSON-lines training log)."""

from ldct_clip.handlers.case_summary import CaseResult, CaseSummary
from ldct_clip.handlers.checkpoint_loader import StrictCheckpointLoader
from ldct_clip.handlers.evaluation_report import EvaluationHandler
from ldct_clip.handlers.json_lines import JSONLinesLogger, read_log

__all__ = ["CaseResult", "CaseSummary", "EvaluationHandler", "JSONLinesLogger", "StrictCheckpointLoader", "read_log"]
