"""The documented in-memory API: a CT volume in HU in, the denoised volume in whole HU out (``denoise_volume``).

``denoise_volume`` runs the components of the bundle's ``inference.json`` (read with
:func:`~ldct_clip.bundle.load_config`), on an array instead of files: its ``preprocessing`` without the loader
(HU -> [0, 1]), its ``inferer`` (:class:`~ldct_clip.engine.inferer.SliceSlidingWindowInferer`: the 2D network
over 2D sliding windows with gaussian blending) and its ``postprocessing`` without the transforms that write
case files (:data:`~ldct_clip.transforms.CASE_WRITERS`): [0, 1] -> HU, the voxels outside the window kept, a share
of the removed noise given back (``noise_retention``, at most ``noise_retention_max_sd`` HU of it), rounded to
whole HU. An edit of the config (a component, a default) is what runs here too. Only the input and the output
volume are held in memory: the steps work on ``sw_batch_size`` slices at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged

from ldct_clip.bundle import load_config
from ldct_clip.ct.hu import window_from
from ldct_clip.engine.inferer import MIN_SIDE, SliceSlidingWindowInferer, check_volume
from ldct_clip.errors import InputError
from ldct_clip.transforms import CASE_WRITERS, KeepOutsideWindowd
from ldct_clip.transforms.retain_noise import check_fraction, check_max_sd

__all__ = ["MIN_SIDE", "SliceSlidingWindowInferer", "denoise_volume"]

ProgressFn = Callable[[int, int], None]


def denoise_volume(
    volume_hu: np.ndarray | torch.Tensor,
    model: Callable[..., torch.Tensor],
    *,
    roi_size: Sequence[int] | None = None,
    overlap: float | None = None,
    sw_batch_size: int | None = None,
    hu_window: Sequence[float] | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    channels_last: bool | None = None,
    keep_outside_window: bool = True,
    noise_retention: float | None = None,
    noise_retention_max_sd: float | None = None,
    progress: ProgressFn | None = None,
    workflow: str = "inference",
    bundle: str | os.PathLike | None = None,
) -> np.ndarray:
    """Denoise a CT volume given in HU with the bundle config's own components.

    Args:
        volume_hu: ``(X, Y, Z)`` volume (axial slices along the last axis) or one ``(X, Y)`` slice, in HU,
            any real dtype (int16 stays int16 in memory: slices are converted as they are processed).
        model: the network (``CLIPDenoiser`` or any module mapping ``(N, 1, X, Y)`` in [0, 1] to the same); it
            replaces the config's network and checkpoint loader.
        roi_size, overlap, sw_batch_size: 2D sliding-window parameters (see :class:`SliceSlidingWindowInferer`);
            ``None``: the config's (``sw_batch_size``: :func:`~ldct_clip.engine.precision.default_sw_batch_size`
            of the device).
        hu_window: ``(hu_min, hu_max)`` mapped to [0, 1] for the network; ``None``: the config's (the paper's
            -1024, 3072).
        device: where the network runs (default: the model's device, else CPU).
        precision: ``"fp32"`` (default, for reproducible numbers), ``"bf16"``, ``"fp16"`` or ``"auto"`` (the
            config's default, which ``ldct-clip denoise`` uses).
        channels_last: ``None``: the config's (True).
        keep_outside_window: voxels whose input lies outside ``hu_window`` (scanner padding such as -3024,
            dense metal) keep their input value instead of the clipped network output (the config's
            ``KeepOutsideWindowd``; False leaves it out).
        noise_retention: share of the removed residual given back (:class:`~ldct_clip.transforms.RetainNoise`);
            ``None``: the config's (``noise_retention``); 0 gives the network's output as it is.
        noise_retention_max_sd: at most this robust SD (HU) of the removed residual is given back in a slice (the
            share is lowered where the removed noise is stronger); ``None``: the config's
            (``noise_retention_max_sd``); ``float("inf")``: no cap.
        progress: called as ``progress(slices_done, slices_total)``.
        workflow: the bundle workflow whose components run (:data:`~ldct_clip.bundle.CONFIGS`): ``"inference"``
            rounds to whole HU as the written cases are; ``"evaluate"`` gives the unrounded HU it scores.
        bundle: another bundle folder (default: the installed one).

    Returns:
        float32 numpy array of the input's shape, in HU (whole HU for ``"inference"``).
    """
    check_volume(volume_hu)
    if device is None:
        params = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
        device = params.device if params is not None else torch.device("cpu")
    device = torch.device(device)
    overrides: dict[str, Any] = {"device": device, "precision": precision, "progress": False, "image_keys": ["image"]}
    if hu_window is not None:
        overrides["hu_min"], overrides["hu_max"] = window_from(hu_window)
    if noise_retention is not None:  # refused here with its own message, not wrapped by the config parser
        noise_retention = check_fraction(noise_retention)
    if noise_retention_max_sd is not None:
        noise_retention_max_sd = check_max_sd(noise_retention_max_sd)
    for key, value in (("roi_size", roi_size), ("overlap", overlap), ("sw_batch_size", sw_batch_size),
                       ("channels_last", channels_last), ("noise_retention", noise_retention),
                       ("noise_retention_max_sd", noise_retention_max_sd)):
        if value is not None:
            overrides[key] = list(value) if key == "roi_size" else value
    pre, inferer, post = _components(load_config(workflow, overrides, bundle=bundle), keep_outside_window)

    squeeze = volume_hu.ndim == 2
    vol = volume_hu[..., None] if squeeze else volume_hu
    total = vol.shape[-1]
    out = np.empty(vol.shape, dtype=np.float32)
    for k0 in range(0, total, inferer.sw_batch_size):
        k1 = min(k0 + inferer.sw_batch_size, total)
        chunk = torch.as_tensor(np.asarray(vol[..., k0:k1]) if not isinstance(vol, torch.Tensor) else vol[..., k0:k1])
        hu = chunk.to(device=device, dtype=torch.float32)
        if not torch.isfinite(hu).all():  # before the window clips an infinity into range
            raise InputError(f"the volume has NaN or infinite values in slices {k0}-{k1 - 1}; fix or mask them first")
        # what the config's loader gives: an (X, Y, n) image with no channel axis
        data = pre({"image": MetaTensor(hu, meta={"original_channel_dim": "no_channel"})})
        data["pred"] = inferer(data["image"][None], model)[0]
        out[..., k0:k1] = torch.as_tensor(post(data)["pred"])[0].cpu().numpy()
        if progress is not None:
            progress(k1, total)
    return out[..., 0] if squeeze else out


def _components(parser: Any, keep_outside_window: bool) -> tuple[Compose, SliceSlidingWindowInferer, Compose]:
    """The config's preprocessing without its loader, its inferer, and its postprocessing without the case
    writers (and without ``KeepOutsideWindowd`` when ``keep_outside_window`` is False)."""
    pre = [t for t in parser.get_parsed_content("preprocessing").transforms if not isinstance(t, LoadImaged)]
    drop = CASE_WRITERS if keep_outside_window else (*CASE_WRITERS, KeepOutsideWindowd)
    post = [t for t in _flat(parser.get_parsed_content("postprocessing")) if not isinstance(t, drop)]
    return Compose(pre), parser.get_parsed_content("inferer"), Compose(post)


def _flat(transform: Any) -> list[Any]:
    """The transforms of a ``Compose``, nested ones (``@denoised_hu``) opened up."""
    if isinstance(transform, Compose):
        return [t for inner in transform.transforms for t in _flat(inner)]
    return [transform]
