"""Engines of ldct-clip: the evaluator every bundle config runs and the datasets it iterates, the trainer and its
batch mixup, the slice inferer, the network's precision, sharding a cohort over processes, and the life of a
torchrun worker (tied to its launcher, ended without interpreter teardown)."""

from ldct_clip.engine.dataset import CaseDataset, LazyItems
from ldct_clip.engine.evaluator import CaseEvaluator, CaseEvents, case_names
from ldct_clip.engine.inferer import SliceSlidingWindowInferer
from ldct_clip.engine.launcher import die_with_launcher, exit_worker

__all__ = ["CaseDataset", "CaseEvaluator", "CaseEvents", "LazyItems", "SliceSlidingWindowInferer", "case_names",
           "die_with_launcher", "exit_worker"]
