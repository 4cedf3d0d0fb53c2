"""Errors that reach users.

Anything raised as :class:`LdctClipError` is a problem with the user's input or set-up (a corrupt
file, a missing weight, a wrong modality).  Entry points print its message without a traceback; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["LdctClipError", "InputError", "WeightsError"]


class LdctClipError(Exception):
    """A user-facing error: the message says what is wrong and what to do about it."""


class InputError(LdctClipError, ValueError):
    """The input data (file, folder, array) cannot be used as given."""


class WeightsError(LdctClipError):
    """Weights are missing, corrupt, or do not fit the network."""
