"""CT cases as MONAI datasets: the cases under a folder (:class:`CTCaseDataset`) or LDCT/NDCT pairs
(:class:`CTPairDataset`).

Items are ``{"image": <files of the case>, "name": <case name>}`` (pairs add ``"label"``: the reference's
files) before the transform, which loads them (``LoadCTImaged``). A case that cannot be used (a corrupt file,
wrong modality, a path in the way of an output) becomes ``{"name": ..., "error": <message>}`` instead of
stopping the run: the evaluator reports it and goes on (:class:`~ldct_clip.engine.evaluator.CTDenoisingEvaluator`).

A dataset that cannot list its cases at all (missing input, nothing found, output inside the input) is empty
and keeps the error in :attr:`CaseDataset.listing_error`, raised when the run starts, so that building a
bundle config never fails with a traceback for a user's mistake.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from monai.data import Dataset

from ldct_clip.bundle import as_flag
from ldct_clip.errors import InputError, LdctClipError, user_error
from ldct_clip.ct.io.cases import Case, find_cases
from ldct_clip.engine.shards import Shard, resolve_shard, select
from ldct_clip.reporting.warnings_log import warnings_logged_once
from ldct_clip.ct.outputs import CaseOutputs
from ldct_clip.ct.pairs import CasePair, pair_cases

__all__ = ["CTCaseDataset", "CTPairDataset", "CaseDataset"]

log = logging.getLogger("ldct_clip")


def _files(case: Case) -> str | list[str]:
    return [str(p) for p in case.paths] if len(case.paths) > 1 else str(case.paths[0])


class CaseDataset(Dataset):
    """A MONAI ``Dataset`` of CT cases whose items fail one by one (see the module docstring).

    Args:
        data: the items (``{"image": ..., "name": ...}``).
        transform: the preprocessing.
        errors: messages of cases already known to be unreadable, by name.
        outputs: checked for each case before it is read (:meth:`CaseOutputs.check_case`).
        listing_error: why no cases could be listed (raised when the run starts).
    """

    def __init__(self, data: Sequence[dict[str, Any]], transform: Callable | None = None, *,
                 errors: dict[str, str] | None = None, outputs: CaseOutputs | None = None,
                 listing_error: LdctClipError | None = None) -> None:
        super().__init__(list(data), transform)
        self.errors = dict(errors or {})
        self.outputs = outputs
        self.listing_error = listing_error
        self.skipped: list[str] = []  # complete outputs of an earlier run were kept
        self.shard: Shard | None = None
        self.total = len(self.data)

    def _transform(self, index: int) -> dict[str, Any]:
        name = self.data[index]["name"]
        try:
            if name in self.errors:
                raise InputError(self.errors[name])
            if self.outputs is not None:
                self.outputs.check_case(name)
            return super()._transform(index)
        except Exception as exc:
            error = user_error(exc)
            if error is None:
                raise
            return {"name": name, "error": str(error)}


class CTCaseDataset(CaseDataset):
    """The cases :func:`~ldct_clip.ct.io.cases.find_cases` finds under ``dataset_dir``, for denoising.

    Args:
        dataset_dir: a case (DICOM series folder, DICOM file, NIfTI/MHA/NRRD file) or a folder of cases.
        transform: the preprocessing (loading included).
        outputs: where the outputs go: refused when it is the input or inside it; with ``skip_complete``, the
            cases whose outputs are complete are left out (listed in :attr:`skipped`).
        shard: ``"i/n"``: only shard ``i`` of ``n`` (0-based, round-robin over the sorted cases); default: the
            process's rank under ``torchrun``, else all cases (:mod:`ldct_clip.engine.shards`).
        skip_complete: leave out cases whose complete outputs exist (a rerun redoes only the incomplete ones).
    """

    def __init__(self, dataset_dir: str | os.PathLike, transform: Callable | None = None, *,
                 outputs: CaseOutputs | None = None, shard: str | Sequence[int] | None = None,
                 skip_complete: bool | str = False) -> None:
        try:
            if outputs is not None:
                outputs.check_folder(dataset_dir)
            with warnings_logged_once(str(dataset_dir)):
                cases = find_cases(dataset_dir)
            resolved = resolve_shard(shard)
        except LdctClipError as exc:
            super().__init__([], transform, listing_error=exc)
            return
        total = len(cases)
        cases = select(cases, resolved)
        skipped = []
        if as_flag(skip_complete, "skip_complete") and outputs is not None:
            skipped = [c.name for c in cases if outputs.is_complete(c)]
            cases = [c for c in cases if c.name not in skipped]
        super().__init__([{"image": _files(c), "name": c.name} for c in cases], transform,
                         errors={c.name: c.error for c in cases if c.error}, outputs=outputs)
        self.skipped, self.shard, self.total = skipped, resolved, total
        for name in skipped:
            log.info("%s: skipped: complete outputs of an earlier run exist", name)


class CTPairDataset(CaseDataset):
    """LDCT cases (``"image"``) with their NDCT references (``"label"``), from :func:`~ldct_clip.ct.pairs.pair_cases`.

    Args:
        ldct_dir, ndct_dir: folders of low-dose and normal-dose cases matched by name.
        transform: the preprocessing (it loads both keys).
        pairs_csv: CSV of pairs (columns ``ldct``, ``ndct``, optional ``name``) instead of the two folders.
    """

    def __init__(self, ldct_dir: str | os.PathLike | None, ndct_dir: str | os.PathLike | None,
                 transform: Callable | None = None, *, pairs_csv: str | os.PathLike | None = None) -> None:
        try:
            pairs: list[CasePair] = pair_cases(ldct_dir, ndct_dir, pairs_csv=pairs_csv or None)
        except LdctClipError as exc:
            super().__init__([], transform, listing_error=exc)
            return
        errors = {p.name: " ".join(c.error for c in (p.ldct, p.ndct) if c.error) for p in pairs}
        super().__init__([{"image": _files(p.ldct), "label": _files(p.ndct), "name": p.name} for p in pairs],
                         transform, errors={k: v for k, v in errors.items() if v})
        self.pairs = pairs
