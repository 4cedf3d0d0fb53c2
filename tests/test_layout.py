"""The package's layers: every import inside ``ldct_clip`` points down (or stays in its own layer), and the public
names users import stay where they are."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ldct_clip"

#: Lowest first.  A module may import from its own layer and the layers below, never from a layer above.
LAYERS: list[tuple[str, ...]] = [
    ("ldct_clip.errors", "ldct_clip.atomic"),
    ("ldct_clip.reporting",),
    ("ldct_clip.metrics",),
    ("ldct_clip.weights", "ldct_clip.networks", "ldct_clip.checkpoints"),
    ("ldct_clip.ct.hu", "ldct_clip.ct.io"),
    ("ldct_clip.simulation",),
    ("ldct_clip.bundle", "ldct_clip.engine"),
    ("ldct_clip.ct",),
    ("ldct_clip.transforms", "ldct_clip.inference"),
    ("ldct_clip.evaluation",),
    ("ldct_clip.handlers",),
    ("ldct_clip.rgb",),
    ("ldct_clip.workflows", "ldct_clip.pacs", "ldct_clip.commands", "ldct_clip.cli", "ldct_clip.__main__",
     "ldct_clip"),
]


def layer_of(module: str) -> int:
    """The layer of the longest prefix in :data:`LAYERS` that names ``module`` or a package above it."""
    best, found = -1, None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    if found is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layout.py: add it to LAYERS")
    return found


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every ``ldct_clip`` module ``path`` imports, at the top or inside functions (``from x import y`` counts
    ``x.y`` when ``y`` is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ldct_clip"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ldct_clip"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() or (
                    PACKAGE.parent / sub.replace(".", "/")).is_dir()
                found.add(sub if is_module else node.module)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_imports_point_down(path):
    here = module_name(path)
    upward = sorted(m for m in imports_of(path) if m != "ldct_clip" and layer_of(m) > layer_of(here))
    assert not upward, f"{here} (layer {layer_of(here)}) imports from higher layers: {upward}"


def test_the_layer_check_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ldct_clip.workflows import denoise_cases\n")
    assert "ldct_clip.workflows" in imports_of(bad)
    assert layer_of("ldct_clip.workflows") > layer_of("ldct_clip.evaluation.scoring")


@pytest.mark.parametrize("module, name", [
    ("ldct_clip.networks", "CLIPDenoiser"),
    ("ldct_clip.checkpoints", "load_checkpoint"),
    ("ldct_clip.inference", "denoise_volume"),
])
def test_public_names_stay_importable(module, name):
    assert callable(getattr(importlib.import_module(module), name))
