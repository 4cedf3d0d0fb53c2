"""CT cases as MONAI datasets: the cases under a folder (:class:`CTCaseDataset`) or LDCT/NDCT pairs
(:class:`CTPairDataset`).

Items are ``{"image": <files of the case>, "name": <case name>}`` (pairs add ``"label"``: the reference's
files) before the transform, which loads them (``LoadCTImaged``). Both are
:class:`~ldct_clip.engine.dataset.CaseDataset` instances: a case that cannot be used (a corrupt file, wrong modality, a
path in the way of an output) becomes ``{"name": ..., "error": <message>}`` and the run goes on; a folder whose
cases cannot be listed keeps the error in ``listing_error`` for the run's start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from ldct_clip.bundle import as_flag
from ldct_clip.errors import LdctClipError
from ldct_clip.ct.io.cases import Case, find_cases
from ldct_clip.engine.dataset import CaseDataset
from ldct_clip.engine.shards import resolve_shard, select
from ldct_clip.reporting.warnings_log import source_notes_silenced
from ldct_clip.ct.outputs import CaseOutputs
from ldct_clip.ct.pairs import CasePair, pair_cases

__all__ = ["CTCaseDataset", "CTPairDataset"]

log = logging.getLogger("ldct_clip")


def _files(case: Case) -> str | list[str]:
    return [str(p) for p in case.paths] if len(case.paths) > 1 else str(case.paths[0])


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
        self.outputs = outputs
        try:
            if outputs is not None:
                outputs.check_folder(dataset_dir)
            with source_notes_silenced():  # the reader logs the notes of each case it reads
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
                         errors={c.name: c.error for c in cases if c.error})
        self.skipped, self.shard, self.total = skipped, resolved, total
        for name in skipped:
            log.info("%s: skipped: complete outputs of an earlier run exist", name)

    def check(self, name: str) -> None:
        """Refuse a case whose outputs cannot be written (:meth:`CaseOutputs.check_case`) before it is read."""
        if self.outputs is not None:
            self.outputs.check_case(name)


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
