"""The package's layers as docs/architecture.md draws them: a layer imports only from the layers below it,
no file is over 500 lines and no function over 100 lines unless its file's opening comment says why."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vidprop

PACKAGE = Path(vidprop.__file__).resolve().parent

#: Top-level part of the package -> its layer (docs/architecture.md).
LAYERS = {
    "errors": 0, "progress": 0,
    "config": 1, "io": 1, "propagation": 1,
    "features": 2,
    "tasks": 3, "engine": 3, "engine_core": 3, "ray_pool": 3,
    "eval": 4, "batch": 4, "annotate": 4, "view": 4,
    "bench": 5, "cli": 5,
    "__main__": 6, "__init__": 6,
}
#: Imports allowed inside one layer (importer part -> imported parts).
SIDEWAYS = {
    "io": {"config"},
    "propagation": {"config"},
    "engine": {"engine_core", "ray_pool"},
    "ray_pool": {"engine_core"},
    "annotate": {"view"},  # the labelling page is served by the review page's server and guard
}
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 100


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.suffix == ".py" else rel.stem


def _imported_parts(tree: ast.Module) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out |= {n.split(".")[1] for n in names if n.startswith("vidprop.")}
    return out


def _files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer_violations(files: list[Path]) -> list[str]:
    bad = []
    for path in files:
        part = _part(path)
        for target in sorted(_imported_parts(ast.parse(path.read_text())) - {part}):
            below = LAYERS[target] < LAYERS[part]
            if not below and target not in SIDEWAYS.get(part, set()):
                bad.append(f"{path.relative_to(PACKAGE.parent)} ({part}, layer {LAYERS[part]}) imports {target} "
                           f"(layer {LAYERS[target]})")
    return bad


def _says_why(text: str) -> bool:
    """The file's opening docstring says why it is longer than the rule (it names the rule)."""
    doc = ast.get_docstring(ast.parse(text)) or ""
    return "over 500 lines" in doc or "over 100 lines" in doc


def size_violations(files: list[Path]) -> list[str]:
    bad = []
    for path in files:
        text = path.read_text()
        if _says_why(text):
            continue
        lines = text.count("\n") + (not text.endswith("\n"))
        if lines > MAX_FILE_LINES:
            bad.append(f"{path.relative_to(PACKAGE.parent)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {n} lines")
    return bad


def test_every_part_of_the_package_has_a_layer():
    assert sorted({_part(p) for p in _files()} - set(LAYERS)) == []


def test_a_layer_imports_only_from_the_layers_below():
    assert layer_violations(_files()) == []


def test_no_file_over_500_lines_and_no_function_over_100_unless_the_file_says_why():
    assert size_violations(_files()) == []


def test_the_checks_see_a_layer_crossed_and_a_long_function(tmp_path, monkeypatch):
    """The rules themselves: propagation importing features, io importing tasks, a 101-line function and a
    501-line file are found; a file whose docstring says why is let through."""
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path)
    (tmp_path / "propagation").mkdir()
    (tmp_path / "io").mkdir()
    prop = tmp_path / "propagation" / "x.py"
    prop.write_text("from vidprop.features.base import FeatureExtractor\nfrom vidprop.config import TaskConfig\n")
    io = tmp_path / "io" / "y.py"
    io.write_text("def f():\n    from vidprop.tasks.segment import segment_video\n")
    assert layer_violations([prop, io]) == [
        f"{tmp_path.name}/propagation/x.py (propagation, layer 1) imports features (layer 2)",
        f"{tmp_path.name}/io/y.py (io, layer 1) imports tasks (layer 3)",
    ]
    long_fn = tmp_path / "io" / "z.py"
    long_fn.write_text("def g():\n" + "    x = 1\n" * 100)
    long_file = tmp_path / "io" / "w.py"
    long_file.write_text("x = 1\n" * 501)
    assert size_violations([long_fn, long_file]) == [f"{tmp_path.name}/io/z.py:1 g: 101 lines",
                                                     f"{tmp_path.name}/io/w.py: 501 lines"]
    long_file.write_text('"""Kept whole, over 500 lines: one table."""\n' + "x = 1\n" * 501)
    assert size_violations([long_file]) == []


@pytest.mark.parametrize("part", ["propagation"])
def test_propagation_never_sees_a_backbone_or_a_file(part):
    """The propagator never knows which backbone made its features (docs/architecture.md)."""
    imported = set()
    for path in (PACKAGE / part).rglob("*.py"):
        imported |= _imported_parts(ast.parse(path.read_text()))
    assert imported - {part} <= {"config"}
