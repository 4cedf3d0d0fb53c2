"""Engines of ldct-clip: the evaluator that runs the bundle's inference over cases."""

from .evaluator import CaseEvents, CTDenoisingEvaluator, case_names

__all__ = ["CTDenoisingEvaluator", "CaseEvents", "case_names"]
