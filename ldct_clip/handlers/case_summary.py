"""One log line per case (a CT series, an RGB image), a summary at the end and, for a sharded cohort, one merged
``denoise_summary.csv``."""

from __future__ import annotations

import csv
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ignite.engine import Events

from ldct_clip.ct.outputs import CaseOutputs
from ldct_clip.engine.dataset import CaseDataset
from ldct_clip.engine.evaluator import CaseEvents, case_names
from ldct_clip.atomic import atomic_path
from ldct_clip.engine.shards import distributed_shard, gather

__all__ = ["CaseResult", "CaseSummary"]

log = logging.getLogger("ldct_clip")

_COLUMNS = ("case", "status", "shard", "slices", "seconds", "outputs", "message")


@dataclass
class CaseResult:
    """What happened to one case."""

    name: str
    ok: bool
    slices: int = 0  # of a volume; 0 for a 2D image
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    message: str = ""
    skipped: bool = False  # complete outputs of an earlier run were kept (``skip_complete``)
    shard: int = 0


class CaseSummary:
    """Collect a :class:`CaseResult` per case (:attr:`results`), log each, and summarise the run.

    A sharded run (``torchrun``, or an explicit ``shard``) also writes ``denoise_summary.csv`` in the output
    folder: under ``torchrun`` rank 0 merges every rank's results into it (so every rank must reach
    ``COMPLETED``, which :class:`~ldct_clip.engine.evaluator.CaseEvaluator` ensures); an explicit shard
    writes ``denoise_summary_shard-i-of-n.csv``.

    Each case's outputs are what the postprocessing listed under ``"outputs"``; a volume's (``(C, X, Y, Z)``)
    line also gives its slices and slices per second.

    Args:
        dataset: the run's cases (its shard and the cases it skipped as complete).
        outputs: where the outputs and the summary go: the CT ``CaseOutputs`` or the output folder.
        unit: what a case is, in the messages (``"case"``, ``"image"``).
    """

    def __init__(self, dataset: CaseDataset, outputs: CaseOutputs | str | os.PathLike, unit: str = "case") -> None:
        self.dataset = dataset
        self.output_dir = Path(outputs.output_dir if isinstance(outputs, CaseOutputs) else outputs)
        self.unit = unit
        self.results: list[CaseResult] = []
        self._start = 0.0

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_STARTED, self.case_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.case_completed)
        engine.add_event_handler(CaseEvents.CASE_FAILED, self.case_failed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    @property
    def _index(self) -> int:
        return self.dataset.shard[0] if self.dataset.shard else 0

    def started(self, engine: Any) -> None:
        self.results = [CaseResult(name, True, skipped=True, shard=self._index) for name in self.dataset.skipped]
        shard = self.dataset.shard
        log.info("%d %s(s)%s -> %s (device %s)", len(self.dataset), self.unit,
                 f" (shard {shard[0]}/{shard[1]} of {self.dataset.total})" if shard else "", self.output_dir,
                 engine.state.device)

    def case_started(self, engine: Any) -> None:
        self._start = time.perf_counter()

    def case_failed(self, engine: Any) -> None:
        for name in case_names(engine.state.batch):
            self.results.append(CaseResult(name, False, message=engine.failures.get(name, ""), shard=self._index))

    def case_completed(self, engine: Any) -> None:
        if not engine.state.output:  # a failed case: reported by case_failed
            return
        seconds = time.perf_counter() - self._start
        for name, item in zip(case_names(engine.state.batch), engine.state.output):
            slices = int(item["pred"].shape[-1]) if item["pred"].ndim == 4 else 0
            outputs = [Path(p) for p in item.get("outputs", [])]
            self.results.append(CaseResult(name, True, slices, seconds, outputs, shard=self._index))
            written = ", ".join(str(p) for p in outputs)
            if slices:
                log.info("%s: %d slices in %.1f s (%.2f slices/s) -> %s", name, slices, seconds,
                         slices / max(seconds, 1e-9), written)
            else:
                log.info("%s: %.2f s -> %s", name, seconds, written)

    def completed(self, engine: Any) -> None:
        shard = self.dataset.shard
        _log_summary(self.results, "done" if shard is None else f"shard {shard[0]}/{shard[1]} done", self.unit)
        if shard is not None:
            self._write_csv(shard)

    def _write_csv(self, shard: tuple[int, int]) -> None:
        merged = [r for rank_results in gather(self.results) for r in rank_results]
        if distributed_shard() is not None:  # torchrun: rank 0 speaks for all
            if shard[0] != 0:
                return
            _log_summary(merged, f"all {shard[1]} shards done", self.unit)
            path = self.output_dir / "denoise_summary.csv"
        else:
            path = self.output_dir / f"denoise_summary_shard-{shard[0]}-of-{shard[1]}.csv"
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(_COLUMNS)
            for r in sorted(merged, key=lambda r: r.name):
                status = "skipped" if r.skipped else "denoised" if r.ok else "failed"
                writer.writerow([r.name, status, r.shard, r.slices, f"{r.seconds:.2f}",
                                 ";".join(str(p) for p in r.outputs), r.message])
        log.info("summary: %s", path)


def _log_summary(results: list[CaseResult], what: str, unit: str) -> None:
    done = sum(r.ok for r in results)
    skipped = sum(r.skipped for r in results)
    log.info("%s: %d of %d %s(s) denoised%s%s", what, done, len(results), unit,
             f" ({skipped} skipped: complete outputs existed)" if skipped else "",
             "" if done == len(results) else "; FAILED (earlier outputs, if any, kept as they were): "
             + ", ".join(r.name for r in results if not r.ok))
