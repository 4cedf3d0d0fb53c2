"""A piece of the RGB training configs: the length of the cosine part of the paper's learning-rate schedule.

(The configs' validation metric is :class:`ldct_clip.metrics.cumulative.RGBImageQualityMetric`.)"""

from __future__ import annotations

from ldct_clip.errors import InputError

__all__ = ["cosine_iterations"]


def cosine_iterations(iterations: int, constant_iterations: int) -> int:
    """``T_max`` of the cosine part of the paper's natural and sRGB schedule (``configs/natural/train.json``).

    The schedule is torch's ``SequentialLR``: ``ConstantLR`` (factor 1) for the first ``constant_iterations``
    steps, then ``CosineAnnealingLR`` from ``lr`` to ``lr_min`` ending at ``iterations`` (the paper: 92k constant,
    then 208k of cosine to 1e-6, 300k in all; the reference's ``CosineAnnealingRestartCyclicLR`` with periods
    [92000, 208000]). Returns ``iterations - constant_iterations``, at least 1 (a schedule that stays constant to
    the end still needs a valid cosine scheduler).

    Raises:
        InputError: ``constant_iterations`` is negative or beyond ``iterations``.
    """
    if not 0 <= int(constant_iterations) <= int(iterations):
        raise InputError(f"need 0 <= lr_constant_iterations ({constant_iterations}) <= iterations ({iterations}).")
    return max(1, int(iterations) - int(constant_iterations))
