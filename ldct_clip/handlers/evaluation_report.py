"""Score each case the evaluator denoised against its reference, and write the evaluation's tables and figures."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ignite.engine import Events

from ldct_clip.bundle import as_flag
from ldct_clip.ct.dataset import CTPairDataset
from ldct_clip.ct.io.monai_reader import affine_from_meta, volume_array
from ldct_clip.evaluation.scoring import DEFAULT_PROTOCOLS, DEFAULT_WINDOWS, EvaluationReport, CaseScorer, check_settings
from ldct_clip.engine.evaluator import case_names

__all__ = ["EvaluationHandler"]

log = logging.getLogger("ldct_clip")


class EvaluationHandler:
    """The evaluation's scores, as an ignite handler of the bundle's evaluator (``evaluate.json``).

    For each case it takes the input (``image_key``: the LDCT in HU), the network's output (``pred_key``, in HU,
    after the inference postprocessing) and the reference (``label_key``), and scores them with
    :class:`~ldct_clip.evaluation.scoring.CaseScorer` (classical baselines, metrics under each protocol, noise SD,
    figures); at the end it writes the tables and prints the markdown summary.

    Attach it before the checkpoint loader, so that bad settings are refused before the weights are loaded.

    Args:
        output_dir: where tables and figures go.
        dataset: the pairs (their sources are never written into).
        header: ``key: value`` lines for the top of ``summary.md`` (checkpoint, HU window).
        protocols, classical, noise_roi, nps_size, display_windows, write_png, write_volumes, progress: see
            :func:`~ldct_clip.evaluation.scoring.evaluate_pairs`.
        print_summary: print the markdown summary to stdout at the end.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        dataset: CTPairDataset,
        *,
        header: Mapping[str, Any] | None = None,
        protocols: Sequence[str] = DEFAULT_PROTOCOLS,
        classical: Sequence[str] | None = ("nlm",),
        noise_roi: Sequence[int] | None = None,
        nps_size: int | None = None,
        display_windows: Sequence[Sequence[float]] = DEFAULT_WINDOWS,
        write_png: bool | str = True,
        write_volumes: bool | str = False,
        progress: bool | str = True,
        print_summary: bool | str = True,
        image_key: str = "image_hu",
        pred_key: str = "pred",
        label_key: str = "label",
    ) -> None:
        self.output_dir = output_dir
        self.dataset = dataset
        self.header = dict(header or {})
        self.settings = {
            "protocols": list(protocols), "classical": list(classical or []),
            "noise_roi": list(noise_roi) if noise_roi else None, "nps_size": nps_size,
            "display_windows": display_windows,
            # flags may arrive as text from a bundle command line (`--write_png false`)
            "write_png": as_flag(write_png, "write_png"), "write_volumes": as_flag(write_volumes, "write_volumes"),
            "progress": as_flag(progress, "progress"),
        }
        self.print_summary = as_flag(print_summary, "print_summary")
        self.keys = (image_key, pred_key, label_key)
        self.scorer: CaseScorer | None = None
        self.report: EvaluationReport | None = None
        self._start = 0.0

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_STARTED, self.case_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.case_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine: Any) -> None:
        check_settings(self.settings["protocols"], self.settings["classical"], self.settings["display_windows"])
        sources = [c.source for p in getattr(self.dataset, "pairs", []) for c in (p.ldct, p.ndct)]
        self.scorer = CaseScorer(self.output_dir, sources=sources, **self.settings, header=self.header)
        log.info("%d LDCT/NDCT pair(s) -> %s (device %s)", len(self.dataset), self.output_dir, engine.state.device)

    def case_started(self, engine: Any) -> None:
        self._start = time.perf_counter()

    def case_completed(self, engine: Any) -> None:
        if not engine.state.output or self.scorer is None:
            return  # a failed case: the evaluator reported it
        seconds = time.perf_counter() - self._start
        image_key, pred_key, label_key = self.keys
        for name, batch, output in zip(case_names(engine.state.batch), engine.state.batch, engine.state.output):
            item = {**batch, **output}
            self.scorer.add(name, volume_array(item[image_key]), volume_array(item[label_key]),
                            affine_from_meta(item[image_key].meta), denoised=volume_array(item[pred_key]),
                            network_seconds=seconds, ndct_affine=affine_from_meta(item[label_key].meta))

    def completed(self, engine: Any) -> None:
        if self.scorer is None or not self.scorer.cases:
            return
        self.report = self.scorer.finish()
        if self.print_summary:
            print(self.report.markdown, flush=True)
        log.info("evaluation written to %s", self.output_dir)
