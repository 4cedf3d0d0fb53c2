"""Ignite handlers of the bundle's evaluator: loading the weights, and the per-case log and summary."""

from .case_summary import CaseResult, CaseSummary
from .checkpoint_loader import StrictCheckpointLoader

__all__ = ["CaseResult", "CaseSummary", "StrictCheckpointLoader"]
