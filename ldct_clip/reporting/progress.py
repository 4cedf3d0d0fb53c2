"""Slice progress for long steps: a tqdm bar, a caller's callback, or nothing, usable as ``step(done, total)``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ldct_clip.errors import InputError

__all__ = ["SliceProgress", "slice_progress"]


SliceProgress = Callable[[int, int], None]


class _NullStep:
    def __enter__(self) -> SliceProgress:
        return lambda done, total: None

    def __exit__(self, *exc: Any) -> None:
        return None


class _BarStep:
    """A tqdm bar (stderr) for ``total`` slices, usable as ``progress(done, total)``."""

    def __init__(self, label: str, total: int, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=f"{desc} {label}", unit="slice", file=sys.stderr, leave=False)

    def __enter__(self) -> SliceProgress:
        return lambda done, total: self.bar.update(done - self.bar.n)

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()


class _CallbackStep:
    def __init__(self, fn: Callable[[str, int, int], None], label: str) -> None:
        self.fn, self.label = fn, label

    def __enter__(self) -> SliceProgress:
        return lambda done, total: self.fn(self.label, done, total)

    def __exit__(self, *exc: Any) -> None:
        return None


def slice_progress(progress: Any, label: str, total: int, desc: str) -> Any:
    if progress is True:
        return _BarStep(label, total, desc)
    if callable(progress):
        return _CallbackStep(progress, label)
    if progress in (None, False):
        return _NullStep()
    raise InputError(f"progress must be True, None or a callable(name, done, total), got {type(progress).__name__}.")
