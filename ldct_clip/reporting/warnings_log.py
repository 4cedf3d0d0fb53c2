"""Python warnings (pydicom, numpy, the readers) as log lines, each distinct note once."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["warnings_logged_once"]

log = logging.getLogger("ldct_clip")


@contextmanager
def warnings_logged_once(where: str) -> Iterator[list[str]]:
    """Turn the Python warnings raised inside into one log line per distinct note (``"<where>: <note>"``),
    instead of a warning with its source line beside a log line.

    Yields the list of notes: the caller may add its own, and after the block it holds each distinct note once,
    in order. The notes are logged even if the block raises.
    """
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield notes
        finally:
            unique = list(dict.fromkeys([*notes, *(str(w.message) for w in caught)]))
            notes[:] = unique
            for note in unique:
                log.warning("%s: %s", where, note)
