"""Where the MONAI bundle lives, for configs that need a default ``bundle_root``."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError

__all__ = ["as_flag", "bundle_root", "case_dicts"]


def bundle_root() -> str:
    """The ``monai_bundle`` folder beside the installed package (a source checkout or editable install).

    Tools that copy the bundle elsewhere (MONAI Label, ``monai.bundle download``) pass ``--bundle_root``.
    """
    return str(Path(__file__).resolve().parent.parent / "monai_bundle")


def case_dicts(dataset_dir: str) -> list[dict[str, str]]:
    """``[{"image": path, "name": case}]`` for MONAI ``Dataset``/``LoadImaged`` (a DICOM series as its folder).

    A missing folder gives an empty list, so parsing a config never fails on a path it does not use.
    """
    from .io.cases import find_cases

    if not Path(dataset_dir).exists():
        return []
    return [{"image": str(case.source), "name": case.name} for case in find_cases(dataset_dir)]


def as_flag(value: bool | str, name: str) -> bool:
    """A boolean option that may arrive as text from the command line (fire passes ``--x false`` as 'false')."""
    if isinstance(value, str):
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise InputError(f"{name} must be true or false, got {value!r}")
    return bool(value)
