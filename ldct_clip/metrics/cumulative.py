"""The image metrics as MONAI cumulative metrics, for ``IgniteMetricHandler`` in a validation evaluator.

Each is a per-image score (``(B, 1)`` per call) collected over a validation run; :meth:`MeanImageMetric.aggregate`
is the mean of all of them. The scores are the functional metrics of this package, never a second copy:

* :class:`CTImageQualityMetric` -- PSNR, SSIM or RMSE of HU images under a named protocol
  (:func:`~ldct_clip.metrics.image_quality.slice_metric`);
* :class:`RGBImageQualityMetric` -- 8-bit PSNR or SSIM of RGB images as the RGB evaluation computes them
  (:func:`~ldct_clip.metrics.rgb.psnr_8bit`, :func:`~ldct_clip.metrics.rgb.ssim_8bit`).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric

from ldct_clip.errors import InputError
from ldct_clip.metrics.image_quality import METRICS, slice_metric
from ldct_clip.metrics.protocols import get_protocol
from ldct_clip.metrics.rgb import psnr_8bit, ssim_8bit, to_uint8

__all__ = ["CTImageQualityMetric", "MeanImageMetric", "RGBImageQualityMetric"]


class MeanImageMetric(CumulativeIterationMetric):
    """A per-image score collected over a validation run; :meth:`aggregate` is the mean of all of them.

    Subclasses implement ``_compute_tensor`` returning ``(B, 1)`` float64 values on ``y_pred``'s device (the
    buffers are all-gathered across DDP ranks).
    """

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor) or data.numel() == 0:
            raise ValueError("no values to aggregate: the validation set gave no batches")
        return data.float().mean()


class CTImageQualityMetric(MeanImageMetric):
    """PSNR (dB), SSIM or RMSE (HU) of HU images under a named protocol of :mod:`ldct_clip.metrics.protocols`.

    The default ``"paper"`` protocol compares HU clipped to [-1024, 3072] with data range 4096 and an 11 x 11
    Gaussian SSIM window: the numbers of the paper's Mayo-2016 table. ``"redcnn"`` and the
    ``"ldct-benchmark-*"`` windows are the other protocols.

    Args:
        metric: ``"psnr"``, ``"ssim"`` or ``"rmse"`` (HU).
        protocol: a protocol name (:data:`ldct_clip.metrics.PROTOCOLS`).

    ``y_pred`` and ``y``: ``(B, 1, X, Y)`` slices or ``(B, 1, X, Y, Z)`` volumes in HU (volumes give the mean
    over their slices). Each call returns ``(B, 1)``; :meth:`aggregate` the mean over everything seen.
    """

    def __init__(self, metric: str = "psnr", protocol: str = "paper") -> None:
        super().__init__()
        if metric not in METRICS:
            raise InputError(f"metric must be 'psnr', 'ssim' or 'rmse', got {metric!r}.")
        self.metric = metric
        self.protocol = get_protocol(protocol)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None or y_pred.shape != y.shape:
            raise ValueError(f"y_pred and y must have the same shape, got {tuple(y_pred.shape)} and "
                             f"{None if y is None else tuple(y.shape)}")
        if y_pred.ndim not in (4, 5) or y_pred.shape[1] != 1:
            raise ValueError(f"expected (B, 1, X, Y[, Z]) HU tensors, got {tuple(y_pred.shape)}")
        pred = y_pred.detach().float().cpu().numpy()
        target = y.detach().float().cpu().numpy()
        values = []
        for b in range(pred.shape[0]):
            p, t = pred[b, 0], target[b, 0]
            if p.ndim == 2:
                p, t = p[..., None], t[..., None]
            values.append(float(np.mean([slice_metric(p[..., k], t[..., k], self.metric, self.protocol)
                                         for k in range(p.shape[-1])])))
        # on the input's device: the buffers are all-gathered across ranks (NCCL needs CUDA tensors)
        return torch.tensor(values, dtype=torch.float64, device=y_pred.device).reshape(-1, 1)


class RGBImageQualityMetric(MeanImageMetric):
    """PSNR (dB) or SSIM of RGB images as the evaluation computes them (8-bit,
    :func:`~ldct_clip.metrics.rgb.psnr_8bit`, :func:`~ldct_clip.metrics.rgb.ssim_8bit`).

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
