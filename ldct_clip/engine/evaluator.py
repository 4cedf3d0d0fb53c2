"""The evaluator ``monai.bundle run`` executes, for every config (CT, natural images, sRGB): MONAI's
``SupervisedEvaluator`` over cases -- a CT series, an RGB image --, one case a batch.

What it adds to ``SupervisedEvaluator`` is what a cohort of real data needs:

* a case that fails with a user error (unreadable input, refused by the reader, a write that cannot be done)
  fires :attr:`CaseEvents.CASE_FAILED`, is recorded in :attr:`CaseEvaluator.failures` and the run goes
  on with the next case (handlers discard its staged outputs and report it); an evaluation whose tables must not
  silently miss a case (``keep_going=False``) ends the run with that error instead;
* ``run(exit_on_error=True)`` ends the process with status 2 and one line per problem, no traceback, when the
  dataset could not be listed, a handler refused to start (no weights) or any case failed;
* a process whose share of a sharded cohort is empty still fires ``STARTED`` and ``COMPLETED``, so that it
  takes part in the merged summary (MONAI skips the run of an empty loader).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ignite.engine import EventEnum, Events
from monai.engines import SupervisedEvaluator

from ldct_clip.bundle import as_flag
from ldct_clip.errors import InputError, exit_on_user_error, user_error

__all__ = ["CaseEvaluator", "CaseEvents", "case_names"]

log = logging.getLogger("ldct_clip")


class CaseEvents(EventEnum):
    """Events of :class:`CaseEvaluator`; ``engine.state.batch`` holds the case's batch when they fire."""

    CASE_FAILED = "case_failed"


def case_names(batch: Any) -> list[str]:
    """The case names of a collated batch (``batch["name"]``), or of a list of decollated items."""
    if isinstance(batch, dict):
        names = batch.get("name", [])
        return [str(n) for n in ([names] if isinstance(names, str) else names)]
    if isinstance(batch, Sequence):
        return [n for item in batch for n in case_names(item)]
    return []


class CaseEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` whose cases fail one at a time (see the module docstring).

    Takes ``SupervisedEvaluator``'s arguments, and:

    Args:
        keep_going: a case that fails with a user error is reported and the run goes on (default); ``False``:
            the error ends the run (raised by :meth:`run`, exit status 2 from the command line).

    Batches come from :class:`~ldct_clip.engine.dataset.CaseDataset`: an item that could not be loaded is
    ``{"name": ..., "error": <message>}``.
    """

    def __init__(self, *args: Any, keep_going: bool | str = True, **kwargs: Any) -> None:
        kwargs["event_names"] = [*(kwargs.get("event_names") or []), CaseEvents]
        super().__init__(*args, **kwargs)
        self.keep_going = as_flag(keep_going, "keep_going")
        self.failures: dict[str, str] = {}
        self.add_event_handler(Events.STARTED, lambda engine: engine.failures.clear())

    def _iteration(self, engine: CaseEvaluator, batchdata: dict[str, Any]) -> dict:  # type: ignore[override]
        try:
            errors = batchdata.get("error")
            if errors:
                raise InputError(str(errors[0]))
            return super()._iteration(engine, batchdata)
        except Exception as exc:
            error = user_error(exc)
            if error is None:
                raise
            if not engine.keep_going:
                raise error from None
            for name in case_names(batchdata):
                engine.failures[name] = str(error)
                log.error("%s: FAILED: %s", name, error)
            engine.fire_event(CaseEvents.CASE_FAILED)
            return {}

    def run(self, exit_on_error: bool = False) -> None:  # type: ignore[override]
        """Run over all cases. With ``exit_on_error`` (command line), a user error that stops the whole run and
        any failed case end the process with status 2 and a one-line message, no traceback; without, the first
        raises as :class:`~ldct_clip.errors.LdctClipError` and failures are left in :attr:`failures`."""
        with exit_on_user_error(exit_on_error):
            listing_error = getattr(self.data_loader.dataset, "listing_error", None)
            if listing_error is not None:
                raise listing_error
            if self.state.epoch_length == 0:
                self.fire_event(Events.STARTED)
                self.fire_event(Events.COMPLETED)
            else:
                # ignite (0.5) keeps the generator of a run that raised and would resume it: the next run() would
                # return at once having done nothing. Every run here is a fresh pass over the cases.
                self._internal_run_generator = None
                super().run()
        if self.failures and exit_on_error:
            raise SystemExit(2)
