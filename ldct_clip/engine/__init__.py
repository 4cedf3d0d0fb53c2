"""Engines of ldct-clip: the evaluator the bundle's inference runs, the trainer, the slice inferer, precision."""

from ldct_clip.engine.evaluator import CaseEvents, CTDenoisingEvaluator, case_names
from ldct_clip.engine.inferer import SliceSlidingWindowInferer

__all__ = ["CTDenoisingEvaluator", "CaseEvents", "SliceSlidingWindowInferer", "case_names"]
