"""The package's import structure: no module imports another that imports it back (at module level or inside
a function), and no private name (``_x``) is imported from another vidprop module."""

from __future__ import annotations

import ast
from pathlib import Path

import vidprop

PACKAGE = Path(vidprop.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(tree: ast.Module, known: set[str]) -> list[tuple[str, str]]:
    """(imported vidprop module, imported name or "") of every import statement anywhere in ``tree``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("vidprop"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.append((sub, "") if sub in known else (node.module, alias.name))
        elif isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name.startswith("vidprop")]
    return out


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    mods = _modules()
    known = set(mods)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for name, tree in mods.items():
        for target, imported in _imports(tree, known):
            if target in known and target != name and not name.startswith(target + "."):
                # importing a package runs its __init__, which the package's own modules may do freely
                if not target.startswith(name + ".") and mods[target] is not None:
                    edges[name].add(target)
            if imported.startswith("_") and not imported.startswith("__") and target != name:
                private.append((name, target, imported))
    return edges, private


def _two_cycles(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of plain modules (not packages' ``__init__``) that import each other."""
    packages = {m for m in edges if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").exists()}
    return sorted((a, b) for a in edges for b in edges[a]
                  if a < b and a in edges.get(b, ()) and a not in packages and b not in packages)


def test_no_two_modules_import_each_other():
    edges, _ = _graph()
    assert _two_cycles(edges) == []


def test_no_private_name_is_imported_from_another_module():
    _, private = _graph()
    assert private == []


def test_the_checks_see_a_cycle_and_a_private_import(tmp_path):
    """The walk itself: a function-level import back and a private name are found."""
    a = ast.parse("import os\ndef f():\n    from vidprop.x.b import _g\n")
    b = ast.parse("from vidprop.x.a import h\n")
    known = {"vidprop.x.a", "vidprop.x.b"}
    assert _imports(a, known) == [("vidprop.x.b", "_g")]
    assert _imports(b, known) == [("vidprop.x.a", "h")]
    assert _two_cycles({"vidprop.x.a": {"vidprop.x.b"}, "vidprop.x.b": {"vidprop.x.a"}}) == [("vidprop.x.a", "vidprop.x.b")]
