"""Ignite handlers of the bundle's evaluator: loading the weights, the per-case log and summary, the evaluation."""

from .case_summary import CaseResult, CaseSummary
from .checkpoint_loader import StrictCheckpointLoader
from .evaluation_report import PairedEvaluationReport

__all__ = ["CaseResult", "CaseSummary", "PairedEvaluationReport", "StrictCheckpointLoader"]
