"""The natural-image and sRGB tasks of the paper as bundle workflows: denoise a folder, evaluate on test sets.

Every workflow runs one pass over the ``dataset`` its config declares (a MONAI ``Dataset``: records and the
declared ``preprocessing``), through the declared ``inferer``, then the declared ``postprocessing``:

* :class:`ImageDenoisingWorkflow`: a folder of RGB images (PNG/JPEG/TIFF, :class:`~ldct_clip.rgb.images.ImageFolder`)
  in, denoised 8-bit PNGs out (``configs/natural/inference.json``; the sRGB model runs through it as well).
* :class:`SyntheticNoiseEvaluation`: the paper's synthetic-noise protocol (``configs/natural/evaluate.json``) over
  :class:`SyntheticNoiseSet`: clean test sets (CBSD68, McMaster, Kodak24, Urban100 -- one subfolder each), seeded
  noise of every setting of a noise suite (default :data:`ldct_clip.rgb.noise.NOISE_SUITE`), PSNR/SSIM of the 8-bit
  output.
* :class:`RealNoiseEvaluation`: real-noise test sets of noisy/clean pairs (:class:`RealNoiseTestSets`: SIDD, PolyU, CC;
  ``configs/srgb/evaluate.json``), pairs found by :func:`ldct_clip.rgb.images.find_pairs`.
The datasets are in :mod:`ldct_clip.rgb.datasets`, the tables in :mod:`ldct_clip.rgb.tables`, the training
configs' metric and schedule length in :mod:`ldct_clip.rgb.training` (``configs/natural/train.json`` and
``configs/srgb/train.json`` reuse the CT trainer, :class:`ldct_clip.engine.trainer.DenoisingTrainer`).

Metrics follow the paper's test scripts (:func:`~ldct_clip.rgb.images.psnr_8bit`, :func:`~ldct_clip.rgb.images.ssim_8bit`):
the network output is clipped to [0, 1] and rounded to 8 bits; PSNR and SSIM are computed on the RGB channels
against the 8-bit clean image. The noisy input is fed to the network as float, unclipped (the paper's synthetic
protocol), except for the kinds in ``clip_noisy`` (Poisson by default: the reference clips it).

Evaluations write ``per_image.csv`` (one row per image and setting), ``metrics.csv`` (means per dataset and
setting) and ``metrics.md`` (one table per dataset) into ``output_dir``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ldct_clip.bundle import as_flag
from ldct_clip.handlers.checkpoint_loader import StrictCheckpointLoader
from ldct_clip.errors import InputError, WeightsError, exit_on_user_error, user_error
from ldct_clip.rgb.tables import fmt_level, write_tables
from ldct_clip.rgb.images import (
    LazyItems,
    psnr_8bit,
    ssim_8bit,
    to_uint8,
    write_png,
)
from ldct_clip.engine.inferer import SliceSlidingWindowInferer

__all__ = ["ImageDenoisingWorkflow", "RealNoiseEvaluation", "SyntheticNoiseEvaluation"]

log = logging.getLogger("ldct_clip")

Inferer = Callable[[torch.Tensor, torch.nn.Module], torch.Tensor]


Transform = Callable[[dict], dict]


def _item_name(dataset: Sequence[Any], index: int) -> str:
    """The name of item ``index`` from its record, without loading it (for the report of an item that failed)."""
    records = getattr(dataset, "data", dataset)  # a MONAI Dataset keeps its records as ``data``
    try:
        record = records.records[index] if isinstance(records, LazyItems) else records[index]
    except Exception:  # noqa: BLE001 - only a label for a failure already being reported
        record = None
    return str(record["name"]) if isinstance(record, Mapping) and "name" in record else f"item {index}"


class _RGBWorkflow:
    """What every RGB workflow shares: the weights, the network and one pass over the declared dataset.

    Each item of ``dataset`` (a MONAI ``Dataset`` of records and the preprocessing) is a dictionary holding a
    ``(3, H, W)`` float image in [0, 1] under ``"image"``. The inferer's output goes under ``"pred"``,
    ``postprocessing`` (if any) is applied, and the subclass writes or scores the item (:meth:`_consume`).
    """

    #: a user error on one item is reported and the pass goes on; ``False``: it ends the run (an evaluation
    #: whose tables would silently miss an image)
    keep_going: bool = True

    def __init__(
        self,
        dataset: Sequence[Mapping[str, Any]],
        network: torch.nn.Module | None,
        *,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        ckpt_path: str | os.PathLike | None = None,
        allow_untrained: bool = False,
        device: str | torch.device = "cpu",
        channels_last: bool = True,
        compile: bool = False,
        progress: bool = True,
    ) -> None:
        self.dataset = dataset
        self.network = network
        self.ckpt_path = Path(ckpt_path) if ckpt_path else None
        self.allow_untrained = as_flag(allow_untrained, "allow_untrained")
        self.device = torch.device(device)
        self.channels_last = as_flag(channels_last, "channels_last")
        self.inferer = inferer if inferer is not None else SliceSlidingWindowInferer(
            roi_size=(1024, 1024), sw_batch_size=1, precision="fp32", channels_last=self.channels_last
        )
        self.postprocessing = postprocessing
        self.compile = as_flag(compile, "compile")
        self.progress = progress
        self.failed: list[str] = []

    def load_network(self) -> torch.nn.Module:
        """Load the checkpoint (the authors' ``.pth`` or a ``model.pt``) strictly and prepare the network for
        inference, as the CT bundle's :class:`~ldct_clip.handlers.StrictCheckpointLoader` does (it is the same
        loader). With ``network=None`` the network is built in the shape the checkpoint holds."""
        loader = StrictCheckpointLoader(
            self.ckpt_path, self.allow_untrained, self.channels_last, self.compile,
            how_to_train="give the authors' natural or sRGB .pth, or a model.pt trained with configs/natural/train.json "
            "or configs/srgb/train.json",
        )
        model = loader.load(self.network, self.device)
        channels = getattr(model, "in_channels", 3)
        if channels != 3:
            raise WeightsError(
                f"the network takes {channels}-channel input; RGB images need a 3-channel model (the natural or "
                "sRGB checkpoint, not the CT one)."
            )
        return model

    def denoise(self, image: torch.Tensor | np.ndarray, model: torch.nn.Module) -> torch.Tensor:
        """``(3, H, W)`` float image -> ``(3, H, W)`` float32 network output on the CPU (not clipped)."""
        x = torch.as_tensor(image, dtype=torch.float32)
        if x.ndim != 3 or x.shape[0] != 3:
            raise InputError(f"expected a (3, H, W) RGB image, got shape {tuple(x.shape)}.")
        return self.inferer(x[None].to(self.device), model)[0].float().cpu()

    def run(self, exit_on_error: bool = False) -> Any:
        """Run the workflow. With ``exit_on_error`` (command-line use) a user error ends the process with
        status 2 and a one-line message, no traceback."""
        with exit_on_user_error(exit_on_error):
            result = self._run()
        if exit_on_error and self.failed:
            raise SystemExit(2)
        return result

    def _run(self) -> Any:
        total = len(self.dataset)  # lists the records: a missing folder or an empty one ends the run here
        model = self.load_network()
        self.failed = []
        self._start(total)
        with tqdm(total=total, desc=type(self).__name__, unit="img", file=sys.stderr, disable=not self.progress,
                  leave=False) as bar:
            for index in range(total):
                started = time.perf_counter()
                try:
                    item = dict(self.dataset[index])
                    item["pred"] = self.denoise(item["image"], model)
                    if self.postprocessing is not None:
                        item = self.postprocessing(item)
                    self._consume(item, time.perf_counter() - started)
                except Exception as e:  # noqa: BLE001 - only user errors are handled; the rest is re-raised
                    error = user_error(e)
                    if error is None:
                        raise
                    if not self.keep_going:
                        raise error from None
                    name = _item_name(self.dataset, index)
                    self.failed.append(name)
                    log.error("%s: FAILED: %s", name, error)
                bar.update()
        return self._finish(total)

    def _start(self, total: int) -> None:
        """Before the pass over ``total`` items."""

    def _consume(self, item: dict[str, Any], seconds: float) -> None:
        """Write or score one item (``"pred"``: the network output after postprocessing)."""
        raise NotImplementedError

    def _finish(self, total: int) -> Any:
        """After the pass: the result of :meth:`run`."""
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------------------
# denoise a folder
# ----------------------------------------------------------------------------------------------------------


class ImageDenoisingWorkflow(_RGBWorkflow):
    """Denoise every image of ``dataset`` into an 8-bit PNG ``output_dir/<name>``.

    Args:
        dataset: items ``{"image": (3, H, W) float in [0, 1], "name": relative output name}``: in the config a MONAI
            ``Dataset`` of :class:`~ldct_clip.rgb.images.ImageFolder` records with the declared ``preprocessing``
            (:class:`~ldct_clip.rgb.images.LoadRGBd`). ``ImageFolder`` refuses an ``output_dir`` that would overwrite
            an input.
        output_dir: where the ``<name>`` files go.
        network: the 3-channel denoiser ``ckpt_path`` is loaded into; ``None`` builds it from the checkpoint.
        inferer: runs the network on a ``(1, 3, H, W)`` batch (default: whole images up to 1024 px, fp32).
        postprocessing: dictionary transform applied after inference, the output under ``"pred"``; whatever it
            leaves there is written with :func:`~ldct_clip.rgb.images.write_png` (float in [0, 1] or uint8).
        ckpt_path, allow_untrained, device, channels_last, compile, progress: as
            :class:`~ldct_clip.pipeline.CTDenoisingWorkflow`.

    An image that fails (e.g. a corrupt file) is reported and listed in ``failed``; the others are written.
    :meth:`run` returns the paths written.
    """

    def __init__(
        self,
        dataset: Sequence[Mapping[str, Any]],
        output_dir: str | os.PathLike,
        network: torch.nn.Module | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, network, **kwargs)
        self.output_dir = Path(output_dir).expanduser()
        self.written: list[Path] = []

    def _start(self, total: int) -> None:
        self.written = []
        log.info("%d image(s) -> %s (device %s)", total, self.output_dir, self.device)

    def _consume(self, item: dict[str, Any], seconds: float) -> None:
        target = self.output_dir / item["name"]
        self.written.append(write_png(target, item["pred"]))
        log.info("%s: %.2f s -> %s", item["name"], seconds, target)

    def _finish(self, total: int) -> list[Path]:
        log.info("done: %d of %d image(s) denoised%s", len(self.written), total,
                 f"; failed: {', '.join(self.failed)}" if self.failed else "")
        return list(self.written)


# ----------------------------------------------------------------------------------------------------------
# evaluation data
# ----------------------------------------------------------------------------------------------------------


class _Evaluation(_RGBWorkflow):
    """Score each item's output against its ``"label"`` and write the tables (and, optionally, the images).

    Items: ``{"image": noisy, "label": clean, "dataset", "name"}`` plus the other ``group_keys``.
    """

    group_keys: tuple[str, ...] = ("dataset",)
    title = "PSNR (dB) / SSIM of the 8-bit RGB output"
    keep_going = False

    def __init__(
        self,
        dataset: Sequence[Mapping[str, Any]],
        output_dir: str | os.PathLike,
        network: torch.nn.Module | None,
        *,
        save_images: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, network, **kwargs)
        self.output_dir = Path(output_dir).expanduser()
        self.save_images = as_flag(save_images, "save_images")
        self.rows: list[dict[str, Any]] = []

    def _start(self, total: int) -> None:
        self.rows = []

    def _consume(self, item: dict[str, Any], seconds: float) -> None:
        clean_u8, out = to_uint8(item["label"]), to_uint8(item["pred"])
        settings = {k: item[k] for k in self.group_keys if k != "dataset"}
        self.rows.append({
            "dataset": item["dataset"], "image": item["name"], **settings,
            "psnr_in": psnr_8bit(to_uint8(item["image"]), clean_u8),
            "psnr": psnr_8bit(out, clean_u8),
            "ssim": ssim_8bit(out, clean_u8),
        })
        if self.save_images:
            folder = self.output_dir / "images" / str(item["dataset"])
            if settings:
                folder = folder / "_".join(fmt_level(v) if isinstance(v, float) else str(v) for v in settings.values())
            write_png(folder / f"{item['name']}.png", out)

    def _finish(self, total: int) -> dict[str, Path]:
        paths = write_tables(self.rows, self.output_dir, self.group_keys, title=self.title)
        log.info("metrics: %s", ", ".join(str(p) for p in paths.values()))
        return paths


class SyntheticNoiseEvaluation(_Evaluation):
    """The paper's synthetic-noise evaluation of the natural-image model.

    For every item of ``dataset`` (:class:`SyntheticNoiseSet`: a clean image and one ``(kind, level)`` of the noise
    suite): denoise, clip and round the output to 8 bits, and compute PSNR/SSIM (:func:`~ldct_clip.rgb.images.psnr_8bit`,
    :func:`~ldct_clip.rgb.images.ssim_8bit`) against the 8-bit clean image. ``psnr_in`` is the PSNR of the noisy input
    (clipped, 8-bit) for reference.

    Args:
        dataset: items ``{"image": noisy, "label": clean, "dataset", "name", "noise", "level"}`` (the config: a
            MONAI ``Dataset`` of :class:`SyntheticNoiseSet` with the declared ``preprocessing``).
        output_dir: where ``metrics.csv``, ``metrics.md``, ``per_image.csv`` (and ``images/``) go.
        network: the 3-channel denoiser (``None``: built from the checkpoint).
        save_images: also write the denoised PNGs to ``output_dir/images/<dataset>/<kind>_<level>/``.
        inferer, postprocessing, ckpt_path, allow_untrained, device, channels_last, compile, progress: as
            :class:`ImageDenoisingWorkflow`. A user error on an image ends the evaluation.
    """

    group_keys = ("dataset", "noise", "level")
    title = "Synthetic noise: PSNR (dB) / SSIM of the 8-bit RGB output"


class RealNoiseEvaluation(_Evaluation):
    """Evaluation on real-noise test sets of noisy/clean pairs (the paper's sRGB protocol: SIDD, PolyU, CC).

    Each noisy image of ``dataset`` (:class:`RealNoiseTestSets`; 8-bit, scaled to [0, 1]) is denoised, clipped and
    rounded to 8 bits and compared with its clean reference (PSNR/SSIM on RGB). Images are saved (``save_images``)
    to ``output_dir/images/<dataset>/``.

    Args: as :class:`SyntheticNoiseEvaluation`, items ``{"image": noisy, "label": clean, "dataset", "name"}``.
    """

    title = "Real noise: PSNR (dB) / SSIM of the 8-bit RGB output"


# ----------------------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------------------
