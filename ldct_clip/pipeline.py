"""Denoise a folder of CT cases: the bundle's evaluator and ``ldct-clip denoise`` are this one class.

Case on disk -> :func:`~ldct_clip.io.cases.find_cases` -> :func:`~ldct_clip.io.readers.read_case` (HU +
geometry + source headers) -> :func:`~ldct_clip.inference.denoise_volume` -> NIfTI (input affine), derived
DICOM series (DICOM input) and a PNG preview. A case that fails with a user error is reported and skipped;
the others go on.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoints import load_checkpoint, load_weights
from .errors import InputError, LdctClipError, WeightsError
from .inference import denoise_volume
from .io.cases import Case, find_cases
from .io.readers import read_case
from .io.writers import write_derived_series, write_nifti
from .precision import prepare_model, resolve_precision
from .visualize import SOFT_TISSUE, save_panels
from .weights import weights_label

__all__ = ["CTDenoisingWorkflow", "CaseResult"]

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
    ) -> None:
        self.dataset_dir = Path(dataset_dir)
        self.output_dir = Path(output_dir)
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
                "`--ckpt_path PATH`, or train one with monai_bundle/configs/train.json."
            )
        return prepare_model(self.network, self.device, channels_last=self.channels_last, compile=self.compile)

    # -- one case -----------------------------------------------------------------------------------------

    def denoise_case(self, case: Case, model: torch.nn.Module) -> CaseResult:
        start = time.perf_counter()
        volume = read_case(case)
        for note in volume.warnings:
            log.warning("%s: %s", case.name, note)
        n = volume.hu.shape[-1]
        with tqdm(total=n, desc=case.name, unit="slice", file=sys.stderr, disable=not self.progress, leave=False) as bar:
            denoised = denoise_volume(
                volume.hu, model, roi_size=self.roi_size, overlap=self.overlap, sw_batch_size=self.sw_batch_size,
                hu_window=self.hu_window, device=self.device, precision=self.precision,
                channels_last=self.channels_last, progress=lambda done, total: bar.update(done - bar.n),
            )
        outputs: list[Path] = []
        try:
            outputs.append(write_nifti(denoised, volume.affine, self.output_dir / f"{case.name}.nii.gz", inputs=[volume.source]))
            if self.write_dicom and volume.dicom_headers:
                files = write_derived_series(
                    denoised, volume.dicom_headers, self.output_dir / f"{case.name}_dicom",
                    series_description_suffix=self.series_description_suffix, inputs=[volume.source], overwrite=True,
                )
                outputs.append(files[0].parent)
            if self.write_png:
                outputs.append(self._preview(volume.hu, denoised, self.output_dir / f"{case.name}.png"))
        except BaseException:
            _remove(outputs)  # a failed case leaves nothing half-done behind
            raise
        seconds = time.perf_counter() - start
        return CaseResult(case.name, True, n, seconds, outputs)

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

    def _run(self) -> list[CaseResult]:
        cases = find_cases(self.dataset_dir)
        model = self.load_network()
        log.info(
            "%d case(s) from %s -> %s (device %s, precision %s)",
            len(cases), self.dataset_dir, self.output_dir, self.device, self.precision,
        )
        results = []
        for case in cases:
            try:
                result = self.denoise_case(case, model)
                log.info(
                    "%s: %d slices in %.1f s (%.2f slices/s) -> %s",
                    result.name, result.slices, result.seconds, result.slices / max(result.seconds, 1e-9),
                    ", ".join(str(p) for p in result.outputs),
                )
            except LdctClipError as e:
                result = CaseResult(case.name, False, message=str(e))
                log.error("%s: FAILED: %s", case.name, e)
            results.append(result)
        done = sum(r.ok for r in results)
        log.info("done: %d of %d case(s) denoised%s", done, len(results),
                 "" if done == len(results) else f"; failed: {', '.join(r.name for r in results if not r.ok)}")
        return results


def as_flag(value: bool | str, name: str) -> bool:
    """A boolean option that may arrive as text from the command line (fire passes ``--x false`` as 'false')."""
    if isinstance(value, str):
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise InputError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def _remove(paths: Sequence[Path]) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
