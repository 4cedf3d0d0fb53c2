"""Denoise a folder of CT cases: the bundle's evaluator and ``ldct-clip denoise`` are this one class.

Case on disk -> :func:`~ldct_clip.io.cases.find_cases` -> :func:`~ldct_clip.io.readers.read_case` (HU +
geometry + source headers) -> :func:`~ldct_clip.inference.denoise_volume` -> NIfTI (input affine), derived
DICOM series (DICOM input) and a PNG preview. A case that fails with a user error is reported and skipped;
the others go on, and the run ends with exit status 2 (both doors). A DICOM series with one unreadable slice
(truncated, corrupt) is refused as a whole, never denoised with that slice missing. The output folder must
not be the input or inside it (symlinks and ``..`` resolved).

Cohorts: under ``torchrun`` (``multi_gpu_inference.json``) or with ``shard="i/n"`` each process denoises its own
round-robin share of the cases (:mod:`ldct_clip.shards`), so each case is written by exactly one process; with
``skip_complete`` a rerun skips the cases whose complete outputs exist and redoes the rest. A sharded run writes
``denoise_summary.csv`` (one row per case, all ranks merged by rank 0; ``denoise_summary_shard-i-of-n.csv`` for
an explicit shard).
"""

from __future__ import annotations

import csv
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .bundle import as_flag
from .checkpoints import load_checkpoint, load_weights
from .errors import InputError, LdctClipError, WeightsError
from .inference import denoise_volume
from .io.atomic import atomic_path, remove_path, replace_together, temp_name
from .io.cases import Case, find_cases
from .io.readers import read_case
from .io.writers import check_output_path, write_derived_series, write_nifti
from .precision import prepare_model, resolve_precision
from .shards import Shard, distributed_shard, gather, resolve_shard, select
from .visualize import SOFT_TISSUE, save_panels
from .weights import weights_label

__all__ = ["CTDenoisingWorkflow", "CaseResult", "as_flag"]

log = logging.getLogger("ldct_clip")


@dataclass
class CaseResult:
    """What happened to one case."""

    name: str
    ok: bool
    slices: int = 0
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    skipped: bool = False  # complete outputs of an earlier run were kept (``skip_complete``)
    shard: int = 0


class CTDenoisingWorkflow:
    """Denoise every case found under ``dataset_dir`` into ``output_dir``.

    Args:
        dataset_dir: a case (DICOM series folder, DICOM file, NIfTI/MHA/NRRD file) or a folder of cases.
        output_dir: where ``<case>.nii.gz``, ``<case>_dicom/`` and ``<case>.png`` go; never inside an input.
        network: the denoiser (e.g. ``CLIPDenoiser``) that ``ckpt_path`` is loaded into; ``None`` builds one
            shaped after the checkpoint.
        ckpt_path: checkpoint to load (this project's ``model.pt`` or the authors' ``.pth``).
        allow_untrained: run without ``ckpt_path`` (random decoder), saying so loudly; for demos and tests.
        device, precision, channels_last, compile: how the network runs (see :mod:`ldct_clip.precision`).
        roi_size, overlap, sw_batch_size, hu_min, hu_max: see :func:`~ldct_clip.inference.denoise_volume`.
        write_dicom: also write a derived DICOM series for DICOM input.
        write_png: write a PNG of the middle slice: input, denoised and their difference.
        series_description_suffix: appended to the derived series' SeriesDescription.
        progress: show a progress bar per case.
        checkpoint_option: how the door the user came through spells ``ckpt_path`` in messages (the bundle's
            ``--ckpt_path``, the CLI's ``--checkpoint``).
        shard: ``"i/n"``: denoise only shard ``i`` of ``n`` (0-based, round-robin over the sorted cases); default:
            the process's rank under ``torchrun``, else all cases.
        skip_complete: skip a case whose complete outputs (NIfTI, and the DICOM series and PNG this run would
            write) already exist; a case with missing outputs is redone.

    Outputs of a case are written under hidden temporary names and swapped in together once all are complete:
    afterwards the case has exactly this run's outputs (a stale ``<case>_dicom/`` or ``<case>.png`` of an
    earlier run is removed), and a case that fails keeps the earlier run's outputs untouched.
    """

    def __init__(
        self,
        dataset_dir: str | os.PathLike,
        output_dir: str | os.PathLike,
        network: torch.nn.Module | None,
        *,
        ckpt_path: str | os.PathLike | None = None,
        allow_untrained: bool = False,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        channels_last: bool = True,
        compile: bool = False,
        roi_size: Sequence[int] = (512, 512),
        overlap: float = 0.25,
        sw_batch_size: int | None = None,
        hu_min: float = -1024.0,
        hu_max: float = 3072.0,
        write_dicom: bool = True,
        write_png: bool = True,
        series_description_suffix: str = " [ldct-clip]",
        progress: bool = True,
        checkpoint_option: str = "--ckpt_path",
        shard: str | Sequence[int] | None = None,
        skip_complete: bool = False,
    ) -> None:
        for what, value in (("input", dataset_dir), ("output", output_dir)):
            if not str(value).strip():
                raise InputError(f"the {what} path is empty; give a folder or file explicitly.")
        self.dataset_dir = Path(dataset_dir)
        self.output_dir = Path(output_dir)
        self.checkpoint_option = checkpoint_option
        self.network = network
        self.ckpt_path = Path(ckpt_path) if ckpt_path else None
        self.allow_untrained = as_flag(allow_untrained, "allow_untrained")
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        self.channels_last = as_flag(channels_last, "channels_last")
        self.compile = as_flag(compile, "compile")
        self.roi_size = tuple(roi_size)
        self.overlap = overlap
        self.sw_batch_size = sw_batch_size
        self.hu_window = (float(hu_min), float(hu_max))
        self.write_dicom = as_flag(write_dicom, "write_dicom")
        self.write_png = as_flag(write_png, "write_png")
        self.series_description_suffix = series_description_suffix
        self.progress = progress
        self.shard = shard
        self.skip_complete = as_flag(skip_complete, "skip_complete")

    # -- set-up -----------------------------------------------------------------------------------------

    def load_network(self) -> torch.nn.Module:
        """Load the checkpoint into the network and prepare it for inference."""
        if self.ckpt_path is not None and self.ckpt_path.is_file():
            if self.network is None:
                self.network = load_checkpoint(self.ckpt_path)
            else:
                load_weights(self.network, self.ckpt_path)
            label = weights_label(self.ckpt_path)
            log.info("weights: %s%s", self.ckpt_path, f" ({label})" if label else "")
        elif self.allow_untrained and self.network is not None:
            log.warning(
                "WARNING: running with UNTRAINED weights (no checkpoint%s). The output is NOT a denoised image; "
                "it only shows that the pipeline runs. Get weights with `ldct-clip weights` or train with "
                "monai_bundle/configs/train.json.",
                f" at {self.ckpt_path}" if self.ckpt_path else "",
            )
        else:
            where = self.ckpt_path or "(none given)"
            raise WeightsError(
                f"no checkpoint at {where}. Put the trained weights there (see `ldct-clip weights`), pass "
                f"`{self.checkpoint_option} PATH`, or train one with monai_bundle/configs/train.json."
            )
        return prepare_model(self.network, self.device, channels_last=self.channels_last, compile=self.compile)

    # -- one case -----------------------------------------------------------------------------------------

    def denoise_case(self, case: Case, model: torch.nn.Module) -> CaseResult:
        """Read, denoise and write one case; its outputs replace the previous ones only once all are written."""
        start = time.perf_counter()
        finals = self._outputs(case.name)
        self._check_outputs(finals)
        with _warnings_logged_once(case.name) as notes:
            volume = read_case(case)
            notes.extend(volume.warnings)
        n = volume.hu.shape[-1]
        with tqdm(total=n, desc=case.name, unit="slice", file=sys.stderr, disable=not self.progress, leave=False) as bar:
            denoised = denoise_volume(
                volume.hu, model, roi_size=self.roi_size, overlap=self.overlap, sw_batch_size=self.sw_batch_size,
                hu_window=self.hu_window, device=self.device, precision=self.precision,
                channels_last=self.channels_last, progress=lambda done, total: bar.update(done - bar.n),
            )
        staged: list[tuple[Path, Path]] = []  # (temporary, final)
        try:
            tmp = temp_name(finals["nifti"])
            staged.append((tmp, finals["nifti"]))
            write_nifti(denoised, volume.affine, tmp, inputs=[volume.source])
            if self.write_dicom and volume.dicom_headers:
                tmp = temp_name(finals["dicom"])
                staged.append((tmp, finals["dicom"]))
                write_derived_series(
                    denoised, volume.dicom_headers, tmp,
                    series_description_suffix=self.series_description_suffix, inputs=[volume.source],
                )
            if self.write_png:
                tmp = temp_name(finals["png"])
                staged.append((tmp, finals["png"]))
                self._preview(volume.hu, denoised, tmp)
            written = {final for _, final in staged}
            # earlier outputs of this case that this run does not produce (e.g. <case>_dicom/ before --no-dicom)
            obsolete = [p for key, p in finals.items() if p not in written and _is_output_kind(p, key)]
            for p in [*written, *obsolete]:
                check_output_path(p, [volume.source], replacing=True)
            replace_together(staged, obsolete)
        except BaseException:
            for tmp, _ in staged:
                remove_path(tmp)  # a failed case leaves nothing half-done behind, and the earlier result as it was
            raise
        seconds = time.perf_counter() - start
        return CaseResult(case.name, True, n, seconds, [final for _, final in staged], warnings=notes)

    def _outputs(self, name: str) -> dict[str, Path]:
        """Every path a case named ``name`` may own in the output folder."""
        return {
            "nifti": self.output_dir / f"{name}.nii.gz",
            "dicom": self.output_dir / f"{name}_dicom",
            "png": self.output_dir / f"{name}.png",
        }

    def is_complete(self, case: Case) -> bool:
        """Whether every output this run would write for ``case`` exists (outputs are swapped in together, so a
        case interrupted while written lacks some of them)."""
        finals = self._outputs(case.name)
        wanted = ["nifti"] + (["dicom"] if self.write_dicom and case.kind == "dicom" else [])
        wanted += ["png"] if self.write_png else []
        return all(_is_output_kind(finals[key], key) for key in wanted)

    @staticmethod
    def _check_outputs(finals: dict[str, Path]) -> None:
        """Refuse before any work when something that is not an earlier output sits where an output goes."""
        for key, path in finals.items():
            if os.path.lexists(path) and not _is_output_kind(path, key):
                what = "a link" if path.is_symlink() else "a file" if key == "dicom" else "a folder"
                raise InputError(
                    f"{path} is {what}, not an earlier output of this case; move it away or choose another output folder."
                )

    @staticmethod
    def _preview(noisy: np.ndarray, denoised: np.ndarray, path: Path) -> Path:
        k = noisy.shape[-1] // 2
        before, after = noisy[..., k].astype(np.float32), denoised[..., k]
        return save_panels(
            path,
            [("input", before, SOFT_TISSUE), ("denoised", after, SOFT_TISSUE), ("input - denoised", before - after, (0.0, 200.0))],
        )

    # -- all cases ------------------------------------------------------------------------------------------

    def run(self, exit_on_error: bool = False) -> list[CaseResult]:
        """Denoise all cases; returns one :class:`CaseResult` per case.

        With ``exit_on_error`` (command-line use), a user error that stops the whole run (no cases, no
        weights) and any failed case end the process with status 2 and a one-line message, no traceback.
        """
        try:
            results = self._run()
        except LdctClipError as e:
            if not exit_on_error:
                raise
            log.error("error: %s", e)
            raise SystemExit(2) from None
        failed = [r for r in results if not r.ok]
        if failed and exit_on_error:
            raise SystemExit(2)
        return results

    def _check_paths(self) -> None:
        """Refuse an output folder that is the input or lies inside it (symlinks and ``..`` resolved)."""
        inp = Path(os.path.realpath(self.dataset_dir))
        out = Path(os.path.realpath(self.output_dir))
        if out == inp or inp in out.parents:
            raise InputError(
                f"output {self.output_dir} is {'the input' if out == inp else 'inside the input'} {self.dataset_dir} "
                f"(resolved: {out} and {inp}); results must not be written into the input. Choose an output folder "
                "outside it."
            )
        if os.path.lexists(out) and not out.is_dir():
            raise InputError(f"output {self.output_dir} exists and is not a folder; choose a folder path.")

    def _run(self) -> list[CaseResult]:
        self._check_paths()
        with _warnings_logged_once(str(self.dataset_dir)):
            cases = find_cases(self.dataset_dir)
        shard = resolve_shard(self.shard)
        index = shard[0] if shard else 0
        total = len(cases)
        cases = select(cases, shard)
        model = self.load_network()
        log.info(
            "%d case(s)%s from %s -> %s (device %s, precision %s)",
            len(cases), f" (shard {shard[0]}/{shard[1]} of {total})" if shard else "", self.dataset_dir,
            self.output_dir, self.device, self.precision,
        )
        results = []
        for case in cases:
            if self.skip_complete and self.is_complete(case):
                log.info("%s: skipped: complete outputs of an earlier run exist", case.name)
                results.append(CaseResult(case.name, True, skipped=True, shard=index))
                continue
            try:
                # e.g. pydicom's complaints about odd values while the derived series is written
                with _warnings_logged_once(case.name):
                    result = self.denoise_case(case, model)
                log.info(
                    "%s: %d slices in %.1f s (%.2f slices/s) -> %s",
                    result.name, result.slices, result.seconds, result.slices / max(result.seconds, 1e-9),
                    ", ".join(str(p) for p in result.outputs),
                )
            except LdctClipError as e:
                result = CaseResult(case.name, False, message=str(e))
                log.error("%s: FAILED: %s", case.name, e)
            result.shard = index
            results.append(result)
        _log_summary(results, "done" if shard is None else f"shard {shard[0]}/{shard[1]} done")
        if shard is not None:
            self._write_summary(results, shard)
        return results

    def _write_summary(self, results: list[CaseResult], shard: Shard) -> None:
        """One CSV for the run: rank 0 merges every rank's results (an explicit shard writes its own)."""
        merged = [r for rank_results in gather(results) for r in rank_results]
        if distributed_shard() is not None:  # torchrun: rank 0 speaks for all
            if shard[0] != 0:
                return
            _log_summary(merged, f"all {shard[1]} shards done")
            path = self.output_dir / "denoise_summary.csv"
        else:
            path = self.output_dir / f"denoise_summary_shard-{shard[0]}-of-{shard[1]}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = ("case", "status", "shard", "slices", "seconds", "outputs", "message")
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for r in sorted(merged, key=lambda r: r.name):
                status = "skipped" if r.skipped else "denoised" if r.ok else "failed"
                writer.writerow([r.name, status, r.shard, r.slices, f"{r.seconds:.2f}",
                                 ";".join(str(p) for p in r.outputs), r.message])
        log.info("summary: %s", path)


def _log_summary(results: Sequence[CaseResult], what: str) -> None:
    done = sum(r.ok for r in results)
    skipped = sum(r.skipped for r in results)
    log.info("%s: %d of %d case(s) denoised%s%s", what, done, len(results),
             f" ({skipped} skipped: complete outputs existed)" if skipped else "",
             "" if done == len(results) else "; FAILED (earlier outputs, if any, kept as they were): "
             + ", ".join(r.name for r in results if not r.ok))


@contextmanager
def _warnings_logged_once(where: str) -> Iterator[list[str]]:
    """Turn the Python warnings raised inside (pydicom, numpy, the readers) into one log line per distinct note,
    instead of a warning with its source line beside a log line. Yields the list of notes: the caller may add its
    own, and after the block it holds each distinct note once, in order. The notes are logged even if the block
    raises."""
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


def _is_output_kind(path: Path, key: str) -> bool:
    """Whether ``path`` has the type an output ``key`` has: a folder for the DICOM series, a file otherwise."""
    if path.is_symlink():
        return False  # never follow a link out of the output folder to replace or delete what it points at
    return path.is_dir() if key == "dicom" else path.is_file()
