"""Errors that reach users.

Anything raised as :class:`LdctClipError` is a problem with the user's input or set-up (a corrupt
file, a missing weight, a wrong modality).  Entry points print its message without a traceback; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LdctClipError", "InputError", "WeightsError", "exit_on_user_error", "user_error"]

log = logging.getLogger("ldct_clip")


class LdctClipError(Exception):
    """A user-facing error: the message says what is wrong and what to do about it."""


class InputError(LdctClipError, ValueError):
    """The input data (file, folder, array) cannot be used as given."""


class WeightsError(LdctClipError):
    """Weights are missing, corrupt, or do not fit the network."""


def user_error(exc: BaseException) -> LdctClipError | None:
    """The :class:`LdctClipError` behind ``exc``, if any: MONAI wraps what a transform or a config component
    raises (``RuntimeError("applying transform ...")``), keeping the original as the cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, LdctClipError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def exit_on_user_error(enabled: bool = True) -> Iterator[None]:
    """Inside, a user error (:func:`user_error` finds one behind the exception) is raised as itself, without
    MONAI's wrapping; with ``enabled`` (command-line use) it is logged as one line instead and the process ends
    with status 2, no traceback. Any other exception is a bug and propagates with its traceback."""
    try:
        yield
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        if not enabled:
            raise error from None
        log.error("error: %s", error)
        raise SystemExit(2) from None
