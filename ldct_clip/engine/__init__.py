"""Engines of ldct-clip: the evaluator every bundle config runs and its datasets, the trainer, the slice inferer,
precision, and tying torchrun workers to their launcher."""

from ldct_clip.engine.dataset import CaseDataset, LazyItems
from ldct_clip.engine.evaluator import CaseEvaluator, CaseEvents, case_names
from ldct_clip.engine.inferer import SliceSlidingWindowInferer
from ldct_clip.engine.launcher import die_with_launcher

__all__ = ["CaseDataset", "CaseEvaluator", "CaseEvents", "LazyItems", "SliceSlidingWindowInferer", "case_names",
           "die_with_launcher"]
