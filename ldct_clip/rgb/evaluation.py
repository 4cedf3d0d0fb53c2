"""The RGB evaluations' scores, as an ignite handler of the bundle's evaluator: PSNR/SSIM of each 8-bit output
against its clean reference, then the tables (``configs/natural/evaluate.json``, ``configs/srgb/evaluate.json``).

Metrics follow the paper's test scripts (:func:`~ldct_clip.metrics.rgb.psnr_8bit`,
:func:`~ldct_clip.metrics.rgb.ssim_8bit`): the network output is clipped to [0, 1] and rounded to 8 bits; PSNR and
SSIM are computed on the RGB channels against the 8-bit clean image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Events

from ldct_clip.bundle import as_flag
from ldct_clip.metrics.rgb import psnr_8bit, ssim_8bit, to_uint8
from ldct_clip.rgb.io import write_png
from ldct_clip.rgb.tables import fmt_level, write_tables

__all__ = ["RGBEvaluationHandler"]

log = logging.getLogger("ldct_clip")


class RGBEvaluationHandler:
    """Score every image the evaluator denoised and write ``per_image.csv``, ``metrics.csv`` and ``metrics.md``
    (:func:`~ldct_clip.rgb.tables.write_tables`) into ``output_dir`` when the run completes.

    Each item holds the noisy input (``image_key``, ``(3, H, W)`` float), the network output (``pred_key``, float,
    not clipped, or 8-bit) and the clean reference (``label_key``, 8-bit levels scaled to [0, 1]), plus
    ``"dataset"``, ``"name"`` and the other ``group_keys``. A row per item: ``psnr_in`` (the noisy input, clipped and
    rounded to 8 bits), ``psnr`` and ``ssim`` of the 8-bit output.

    Args:
        output_dir: where the tables (and ``images/``) go.
        group_keys: the keys the means are taken over, ``"dataset"`` first (synthetic noise: also ``"noise"``,
            ``"level"``).
        title: the heading of ``metrics.md``.
        save_images: also write the 8-bit outputs to ``output_dir/images/<dataset>/[<kind>_<level>/]<name>.png``.
    """

    def __init__(self, output_dir: str | os.PathLike, group_keys: Sequence[str] = ("dataset",),
                 title: str = "PSNR (dB) / SSIM of the 8-bit RGB output", save_images: bool | str = False,
                 image_key: str = "image", pred_key: str = "pred", label_key: str = "label") -> None:
        self.output_dir = Path(output_dir).expanduser()
        self.group_keys = tuple(group_keys)
        self.title = title
        self.save_images = as_flag(save_images, "save_images")
        self.keys = (image_key, pred_key, label_key)
        self.rows: list[dict[str, Any]] = []
        self.paths: dict[str, Path] = {}

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.image_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine: Any) -> None:
        self.rows, self.paths = [], {}

    def image_completed(self, engine: Any) -> None:
        if not engine.state.output:
            return  # a failed image: the evaluator reported it
        for batch, output in zip(engine.state.batch, engine.state.output):
            self.score({**batch, **output})

    def score(self, item: dict[str, Any]) -> None:
        """Add the row of one item (and write its image, with ``save_images``)."""
        image_key, pred_key, label_key = self.keys
        clean_u8, out = to_uint8(item[label_key]), to_uint8(item[pred_key])
        settings = {k: item[k] for k in self.group_keys if k != "dataset"}
        self.rows.append({
            "dataset": item["dataset"], "image": item["name"], **settings,
            "psnr_in": psnr_8bit(to_uint8(item[image_key]), clean_u8),
            "psnr": psnr_8bit(out, clean_u8),
            "ssim": ssim_8bit(out, clean_u8),
        })
        if self.save_images:
            folder = self.output_dir / "images" / str(item["dataset"])
            if settings:
                folder = folder / "_".join(fmt_level(v) if isinstance(v, float) else str(v) for v in settings.values())
            write_png(folder / f"{item['name']}.png", out)

    def completed(self, engine: Any) -> None:
        self.paths = write_tables(self.rows, self.output_dir, self.group_keys, title=self.title)
        log.info("metrics: %s", ", ".join(str(p) for p in self.paths.values()))
