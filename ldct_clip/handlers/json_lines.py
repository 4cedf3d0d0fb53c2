"""The training log: an ignite handler appending training and validation records to a JSON-lines file, and
:func:`read_log` to read them back (what tests and scripts do)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["JSONLinesLogger", "read_log"]


class JSONLinesLogger:
    """Append training and validation records to a JSON-lines file.

    Attached to the trainer (``iteration_level=True``), every ``interval`` iterations it writes
    ``{"kind": "train", "iteration", "epoch", "loss", "lr", "grad_norm", "seconds"}`` where ``loss`` is the mean
    of the iteration losses since the previous record. Attached to an evaluator (``iteration_level=False``), at
    the end of each run it writes ``{"kind": "validation", "epoch", "iteration", <metrics>}`` with
    ``iteration = global_epoch_transform(epoch)``.

    Args:
        filename: the file (its folder is created). An existing file is appended to (resumed runs continue it).
        interval: iterations per training record.
        iteration_level: training (True) or validation (False) records.
        global_epoch_transform: validation only, maps the evaluator's epoch (the trainer's) to an iteration.
    """

    def __init__(
        self,
        filename: str | os.PathLike,
        interval: int = 10,
        iteration_level: bool = True,
        global_epoch_transform: Callable[[int], int] | None = None,
    ) -> None:
        self.filename = Path(filename)
        self.interval = max(1, int(interval))
        self.iteration_level = iteration_level
        self.global_epoch_transform = global_epoch_transform
        self._losses: list[float] = []
        self._t0 = time.monotonic()

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        self.filename.parent.mkdir(parents=True, exist_ok=True)
        if self.iteration_level:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        else:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.filename, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def _iteration_completed(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, list) and output:  # decollated: the loss is replicated into every item
            output = output[0]
        loss = output.get("loss") if isinstance(output, dict) else None
        if loss is not None:
            self._losses.append(float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss))
        if engine.state.iteration % self.interval:
            return
        grad_norm = getattr(engine.state, "grad_norm", None)
        optimizer = getattr(engine, "optimizer", None)
        self._write({
            "kind": "train",
            "iteration": engine.state.iteration,
            "epoch": engine.state.epoch,
            "loss": float(np.mean(self._losses)) if self._losses else None,
            "lr": optimizer.param_groups[0]["lr"] if optimizer is not None else None,
            "grad_norm": None if grad_norm is None else float(grad_norm),
            "seconds": round(time.monotonic() - self._t0, 3),
        })
        self._losses = []

    def _epoch_completed(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        iteration = self.global_epoch_transform(epoch) if self.global_epoch_transform else epoch
        record: dict[str, Any] = {"kind": "validation", "epoch": epoch, "iteration": iteration}
        for k, v in engine.state.metrics.items():
            try:
                record[k] = float(v)
            except (TypeError, ValueError):
                continue
        self._write(record)


def read_log(filename: str | os.PathLike, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of a :class:`JSONLinesLogger` file (only those of ``kind`` if given)."""
    records = [json.loads(line) for line in Path(filename).read_text().splitlines() if line.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]
