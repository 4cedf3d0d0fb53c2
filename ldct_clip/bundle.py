"""The MONAI bundle as a library: its configs, read with overrides, and run.

Every door of ldct-clip runs the bundle's components: ``python -m monai.bundle run`` reads
the bundle's ``configs/inference.json`` itself; ``ldct-clip denoise``, ``ldct-clip pacs denoise`` and
``ldct-clip evaluate`` turn their options into config overrides and run the same config through
:func:`run_config`; the MONAI Label app builds its task from the same ``inference.json``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.utils import str2bool

from ldct_clip.errors import InputError

__all__ = ["CONFIGS", "as_flag", "bundle_root", "config_files", "load_config", "run_config"]

#: The bundle's workflows and the config files each merges, in order (later files override earlier ones).
CONFIGS: dict[str, tuple[str, ...]] = {
    "inference": ("inference.json",),
    "multi_gpu_inference": ("inference.json", "multi_gpu_inference.json"),
    "evaluate": ("inference.json", "evaluate.json"),
}


def bundle_root() -> str:
    """The MONAI bundle that ships inside the package (``ldct_clip/monai_bundle``; ``ldct-clip bundle-path``).

    The bundle's configs do not point back here: their ``bundle_root`` is ``"."``, the zoo's convention, so a copy
    of the folder placed anywhere is run from its own folder or with ``--bundle_root``. The doors of this package
    run the configs with ``bundle_root`` set to the folder they read them from (:func:`load_config`).
    """
    return str(Path(__file__).resolve().parent / "monai_bundle")


def config_files(workflow: str = "inference", bundle: str | os.PathLike | None = None) -> list[str]:
    """The config files of ``workflow`` (a key of :data:`CONFIGS`) in the bundle folder ``bundle``."""
    if workflow not in CONFIGS:
        raise ValueError(f"unknown bundle workflow {workflow!r}; one of {sorted(CONFIGS)}")
    folder = Path(bundle or bundle_root()) / "configs"
    return [str(folder / name) for name in CONFIGS[workflow]]


def load_config(workflow: str = "inference", overrides: Mapping[str, Any] | None = None,
                bundle: str | os.PathLike | None = None) -> Any:
    """A ``monai.bundle.ConfigParser`` of ``workflow`` with ``overrides`` applied, as ``monai.bundle run
    --config_file ... --<id> <value>`` builds it (ids may be nested: ``"network_def#width"``)."""
    from monai.bundle import ConfigParser

    folder = Path(bundle or bundle_root())
    parser = ConfigParser()
    parser.read_config(config_files(workflow, folder))
    parser.read_meta(str(folder / "configs" / "metadata.json"))
    parser["bundle_root"] = str(folder)
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


def run_config(parser: Any) -> Any:
    """Run a parsed bundle config like ``monai.bundle run`` does (``initialize``, the evaluator, ``finalize``),
    except that errors raise (:class:`~ldct_clip.errors.LdctClipError` for a user's problem) instead of ending
    the process. Returns the evaluator (its ``failures`` name the cases that failed)."""
    from ldct_clip.errors import user_error

    try:
        parser.get_parsed_content("initialize")
        evaluator = parser.get_parsed_content("evaluator")
    except Exception as exc:  # MONAI wraps what a component raises while it is built
        error = user_error(exc)
        if error is None:
            raise
        raise error from None
    try:
        evaluator.run()
    finally:
        if "finalize" in parser:
            parser.get_parsed_content("finalize")
    return evaluator


def as_flag(value: bool | str, name: str) -> bool:
    """A boolean option that may arrive as text from the command line (fire passes ``--x false`` as 'false').

    MONAI's :func:`~monai.utils.str2bool` reads it; what it refuses becomes a user error that names the option
    (a ``ValueError`` would end the run with a traceback).
    """
    try:
        return str2bool(value)
    except ValueError:
        raise InputError(f"{name} must be true or false, got {value!r}") from None
