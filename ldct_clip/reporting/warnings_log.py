"""Python warnings (pydicom, numpy, the readers) as log lines, each distinct note once, in words a user can act on."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["plain_note", "source_notes_silenced", "warnings_logged_once"]

log = logging.getLogger("ldct_clip")

# pydicom's value checks: "Invalid value for VR UI: '1.2.'. Please see <url> for allowed values for each VR."
# and "The value length (36) exceeds the maximum length of 16 allowed for VR SH."
_INVALID_VALUE = re.compile(r"Invalid value for VR (\w+): (.*?)\. Please see <[^>]*> for allowed values for each VR\.?$")
_TOO_LONG = re.compile(r"The value length \((\d+)\) exceeds the maximum length of (\d+) allowed for VR (\w+)\.?$")
_DICOM_FIX = ("the DICOM header breaks the standard (a truncated file or a faulty exporter); the value is kept "
              "as it is, re-export the series if the result looks wrong")


def plain_note(note: str) -> str:
    """A warning's text as a user reads it: pydicom's value-check messages say what is wrong and what to do,
    without the link to the standard's VR table; other notes are returned unchanged."""
    if m := _INVALID_VALUE.match(note):
        return f"a DICOM {m[1]} element holds the invalid value {m[2]}: {_DICOM_FIX}"
    if m := _TOO_LONG.match(note):
        return f"a DICOM {m[3]} element is {m[1]} characters long (at most {m[2]} allowed): {_DICOM_FIX}"
    return note


@contextmanager
def _pydicom_log_quiet() -> Iterator[None]:
    # pydicom both warns and logs each value check; the warning is the one kept (as a note), not the log line
    logger = logging.getLogger("pydicom")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


@contextmanager
def warnings_logged_once(where: str) -> Iterator[list[str]]:
    """Turn the Python warnings raised inside into one log line per distinct note (``"<where>: <note>"``),
    instead of a warning with its source line beside a log line.

    Yields the list of notes: the caller may add its own, and after the block it holds each distinct note once,
    in order. The notes are logged even if the block raises.
    """
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught, _pydicom_log_quiet():
        warnings.simplefilter("always")
        try:
            yield notes
        finally:
            unique = list(dict.fromkeys(plain_note(n) for n in [*notes, *(str(w.message) for w in caught)]))
            notes[:] = unique
            for note in unique:
                log.warning("%s: %s", where, note)


@contextmanager
def source_notes_silenced() -> Iterator[None]:
    """Drop the warnings about a case's source files raised inside: for the steps that see the same files as the
    CT reader (finding the cases, copying the source headers into the derived series), whose notes the reader
    already logs once per case."""
    with warnings.catch_warnings(), _pydicom_log_quiet():
        warnings.simplefilter("ignore")
        yield
