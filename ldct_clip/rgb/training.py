"""Pieces of the RGB training configs: the validation metric as the evaluation computes it, and the length of
the cosine part of the paper's learning-rate schedule."""

from __future__ import annotations

import logging

import torch

from ldct_clip.errors import InputError
from ldct_clip.rgb.io import to_uint8
from ldct_clip.rgb.metrics import psnr_8bit, ssim_8bit
from ldct_clip.engine.trainer import MeanImageMetric

__all__ = ["RGBImageQualityMetric", "cosine_iterations"]

log = logging.getLogger("ldct_clip")


class RGBImageQualityMetric(MeanImageMetric):
    """PSNR (dB) or SSIM of RGB images as the evaluation computes them (8-bit, :func:`~ldct_clip.rgb.metrics.psnr_8bit`,
    :func:`~ldct_clip.rgb.metrics.ssim_8bit`), for ``IgniteMetricHandler`` in a validation evaluator.

    ``y_pred`` (the network output) and ``y`` (the clean image): ``(B, C, H, W)`` in [0, 1]; both are clipped and
    rounded to 8 bits. Each call returns ``(B, 1)``; :meth:`aggregate` the mean over everything seen.
    """

    def __init__(self, metric: str = "psnr") -> None:
        super().__init__()
        if metric not in ("psnr", "ssim"):
            raise InputError(f"metric must be 'psnr' or 'ssim', got {metric!r}.")
        self.metric = metric

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None or y_pred.shape != y.shape or y_pred.ndim != 4:
            raise ValueError(f"y_pred and y must be (B, C, H, W) of one shape, got {tuple(y_pred.shape)} and "
                             f"{None if y is None else tuple(y.shape)}")
        fn = psnr_8bit if self.metric == "psnr" else ssim_8bit
        values = [fn(to_uint8(p), to_uint8(t)) for p, t in zip(y_pred.detach().float().cpu(), y.detach().float().cpu())]
        return torch.tensor(values, dtype=torch.float64, device=y_pred.device).reshape(-1, 1)


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
