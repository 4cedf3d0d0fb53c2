"""The datasets the evaluator runs over, in either domain: items that fail one by one, records listed lazily.

:class:`CaseDataset` is a MONAI ``Dataset`` whose items (a CT case, an RGB image) are ``{"name": ..., ...}``
records before the transform. An item that cannot be used (a corrupt file, wrong modality, a path in the way of
an output) becomes ``{"name": ..., "error": <message>}`` instead of stopping the run: the evaluator reports it
and goes on (:class:`~ldct_clip.engine.evaluator.CaseEvaluator`).

A dataset that cannot list its items at all (missing input, nothing found, output inside the input) is empty
and keeps the error in :attr:`CaseDataset.listing_error`, raised when the run starts, so that building a
bundle config never fails with a traceback for a user's mistake.

:class:`LazyItems` is a sequence of items whose records (names and paths: cheap) are listed on first use and
whose loading (:meth:`LazyItems._load`: reading files, adding noise) happens per item, so that inside a
:class:`CaseDataset` a failed load is that item's failure, reported under its name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from monai.data import Dataset

from ldct_clip.engine.shards import Shard
from ldct_clip.errors import InputError, LdctClipError, user_error

__all__ = ["CaseDataset", "LazyItems"]


class LazyItems(Sequence):
    """A sequence of data items whose records are listed on first use, for a MONAI ``Dataset``.

    Subclasses list the records (:meth:`_list`: dictionaries with a ``"name"``, cheap to make) and load one item
    from its record (:meth:`_load`). Listing raises the subclass's :class:`~ldct_clip.errors.InputError` for bad
    input; :class:`CaseDataset` turns that into its ``listing_error``.
    """

    @cached_property
    def records(self) -> list[dict[str, Any]]:
        """The records, listed once (raises the subclass's ``InputError`` for bad input)."""
        return self._list()

    def _list(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _load(self, record: dict[str, Any]) -> dict[str, Any]:
        return dict(record)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        return self._load(self.records[index])


class CaseDataset(Dataset):
    """A MONAI ``Dataset`` whose items fail one by one (see the module docstring).

    Args:
        data: the items (``{"name": ..., ...}`` records), a sequence or :class:`LazyItems` (listed here, loaded
            per item).
        transform: the preprocessing.
        errors: messages of items already known to be unusable, by name.
        listing_error: why no items could be listed (raised when the run starts).
    """

    def __init__(self, data: Sequence[dict[str, Any]], transform: Callable | None = None, *,
                 errors: dict[str, str] | None = None, listing_error: LdctClipError | None = None) -> None:
        try:
            items = data if isinstance(data, LazyItems) else list(data)
            len(items)  # lists the records of LazyItems
        except LdctClipError as exc:
            items, listing_error = [], exc
        super().__init__(items, transform)
        self.errors = dict(errors or {})
        self.listing_error = listing_error
        self.skipped: list[str] = []  # complete outputs of an earlier run were kept
        self.shard: Shard | None = None  # the share of a sharded cohort
        self.total = len(self.data)

    def name(self, index: int) -> str:
        """The name of item ``index``, from its record (without loading it)."""
        records = self.data.records if isinstance(self.data, LazyItems) else self.data
        return str(records[index]["name"])

    def check(self, name: str) -> None:
        """Refuse item ``name`` before it is loaded (a subclass's check; none here)."""

    def _transform(self, index: int) -> dict[str, Any]:
        name = self.name(index)
        try:
            if name in self.errors:
                raise InputError(self.errors[name])
            self.check(name)
            return super()._transform(index)
        except Exception as exc:
            error = user_error(exc)
            if error is None:
                raise
            return {"name": name, "error": str(error)}
