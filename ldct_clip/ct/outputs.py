"""Where a case's outputs go, and how they replace an earlier run's: staged, then swapped in all together.

A case named ``c`` owns ``c.nii.gz``, ``c_dicom/`` (DICOM input) and ``c.png`` in the output folder. Writers put
them in a hidden staging folder (``.c.staging/``, skipped by case discovery); once every one is written,
:meth:`CaseOutputs.commit` swaps them in with :func:`~ldct_clip.atomic.replace_together`, so afterwards the
case has exactly this run's outputs, and a case that fails keeps the earlier run's untouched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ldct_clip.bundle import as_flag
from ldct_clip.errors import InputError
from ldct_clip.atomic import remove_path, replace_together
from ldct_clip.ct.io.cases import Case
from ldct_clip.ct.io.output_paths import check_output_path, ensure_dir

__all__ = ["OUTPUT_KINDS", "CaseOutputs"]

OUTPUT_KINDS = ("nifti", "dicom", "png")


def _is_output_kind(path: Path, kind: str) -> bool:
    """Whether ``path`` has the type an output of ``kind`` has: a folder for the DICOM series, a file otherwise."""
    if path.is_symlink():
        return False  # never follow a link out of the output folder to replace or delete what it points at
    return path.is_dir() if kind == "dicom" else path.is_file()


class CaseOutputs:
    """The outputs a run writes for each case.

    Args:
        output_dir: the output folder; never the input or inside it.
        write_dicom: a derived DICOM series for DICOM input.
        write_png: a PNG preview of the middle slice.

    As an ignite handler (``attach``) it discards a case's staged outputs when the case fails
    (:attr:`~ldct_clip.engine.evaluator.CaseEvents.CASE_FAILED`), and a stale staging folder of an interrupted
    earlier run when a case starts.
    """

    def __init__(self, output_dir: str | os.PathLike, write_dicom: bool | str = True, write_png: bool | str = True) -> None:
        if not str(output_dir).strip():
            raise InputError("the output path is empty; give a folder explicitly.")
        self.output_dir = Path(output_dir)
        self.write_dicom = as_flag(write_dicom, "write_dicom")
        self.write_png = as_flag(write_png, "write_png")

    # -- naming -------------------------------------------------------------------------------------------------

    def paths(self, name: str) -> dict[str, Path]:
        """Every path a case named ``name`` may own in the output folder, by kind."""
        return {
            "nifti": self.output_dir / f"{name}.nii.gz",
            "dicom": self.output_dir / f"{name}_dicom",
            "png": self.output_dir / f"{name}.png",
        }

    def wanted(self, kind: str) -> list[str]:
        """The output kinds this run writes for a case of ``kind`` (``"dicom"``, ``"nifti"``, ``"image"``)."""
        return ["nifti"] + (["dicom"] if self.write_dicom and kind == "dicom" else []) + (["png"] if self.write_png else [])

    def staging(self, name: str) -> Path:
        return self.output_dir / f".{name}.staging"

    def stage(self, name: str, kind: str) -> Path:
        """Where a writer puts the ``kind`` output of case ``name`` until :meth:`commit`."""
        folder = self.staging(name)
        ensure_dir(self.output_dir)  # says which folder cannot be made, and why
        ensure_dir(folder)
        return folder / self.paths(name)[kind].name

    # -- checks -------------------------------------------------------------------------------------------------

    def check_folder(self, dataset_dir: str | os.PathLike) -> None:
        """Refuse an output folder that is the input or lies inside it (symlinks and ``..`` resolved)."""
        if not str(dataset_dir).strip():
            raise InputError("the input path is empty; give a folder or file explicitly.")
        inp = Path(os.path.realpath(dataset_dir))
        out = Path(os.path.realpath(self.output_dir))
        if out == inp or inp in out.parents:
            raise InputError(
                f"output {self.output_dir} is {'the input' if out == inp else 'inside the input'} {dataset_dir} "
                f"(resolved: {out} and {inp}); results must not be written into the input. Choose an output folder "
                "outside it."
            )
        if os.path.lexists(out) and not out.is_dir():
            raise InputError(f"output {self.output_dir} exists and is not a folder; choose a folder path.")

    def check_case(self, name: str) -> None:
        """Refuse, before any work, a case where something that is not an earlier output sits where an output goes."""
        for kind, path in self.paths(name).items():
            if os.path.lexists(path) and not _is_output_kind(path, kind):
                what = "a link" if path.is_symlink() else "a file" if kind == "dicom" else "a folder"
                raise InputError(
                    f"{path} is {what}, not an earlier output of this case; move it away or choose another output folder."
                )

    def is_complete(self, case: Case) -> bool:
        """Whether every output this run would write for ``case`` exists (outputs are swapped in together, so a
        case interrupted while written lacks some of them)."""
        finals = self.paths(case.name)
        return all(_is_output_kind(finals[kind], kind) for kind in self.wanted(case.kind))

    # -- commit / discard ---------------------------------------------------------------------------------------

    def commit(self, name: str, inputs: list[Path]) -> list[Path]:
        """Swap the staged outputs of ``name`` in, remove its earlier outputs this run does not write (e.g.
        ``<case>_dicom/`` of a run before ``--no-dicom``); all or nothing. Returns the final paths."""
        finals = self.paths(name)
        folder = self.staging(name)
        staged = [(folder / final.name, final) for final in finals.values() if (folder / final.name).exists()]
        written = {final for _, final in staged}
        obsolete = [p for kind, p in finals.items() if p not in written and _is_output_kind(p, kind)]
        try:
            for p in [*written, *obsolete]:
                check_output_path(p, inputs, replacing=True)
            replace_together(staged, obsolete)
        finally:
            self.discard(name)
        return [final for _, final in staged]

    def discard(self, name: str) -> None:
        """Remove what was staged for ``name`` (nothing half-written is left behind)."""
        remove_path(self.staging(name))

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        from ldct_clip.engine.evaluator import CaseEvents, case_names

        def discard(engine: Any) -> None:
            for name in case_names(engine.state.batch):
                self.discard(name)

        engine.add_event_handler(Events.ITERATION_STARTED, discard)
        engine.add_event_handler(CaseEvents.CASE_FAILED, discard)
