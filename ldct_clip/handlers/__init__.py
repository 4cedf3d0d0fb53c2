"""Ignite handlers of the bundle's evaluator: loading the weights, the per-case log and summary, the evaluation."""

from ldct_clip.handlers.case_summary import CaseResult, CaseSummary
from ldct_clip.handlers.checkpoint_loader import StrictCheckpointLoader
from ldct_clip.handlers.evaluation_report import EvaluationHandler

__all__ = ["CaseResult", "CaseSummary", "EvaluationHandler", "StrictCheckpointLoader"]
