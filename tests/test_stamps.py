"""tools/stamps.py: the Makefile's content stamps (a run reruns when its config or code changes, not a docstring)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import stamps  # tools/ (pytest's pythonpath, pyproject.toml)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A tiny ``sitsr_core`` in a temporary root: ``a`` imports ``b`` (relative), ``c`` stands alone."""
    pkg = tmp_path / "sitsr_core"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""Package."""\n')
    (pkg / "a.py").write_text('"""Module a."""\nfrom . import b\n\n\ndef f(x):\n    """Double."""\n'
                              '    return 2 * b.g(x)\n')
    (pkg / "b.py").write_text('"""Module b."""\nimport math\n\n\nclass K:\n    """A class."""\n\n\ndef g(x):\n'
                              '    return math.floor(x)  # floor\n')
    (pkg / "c.py").write_text("def h():\n    return 3\n")
    monkeypatch.setattr(stamps, "ROOT", tmp_path)
    return pkg


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_code_hash_ignores_docstrings_and_comments_not_code(package):
    before = stamps.code_hash(["sitsr_core.a"])
    _edit(package / "b.py", '"""A class."""', '"""A class, documented at length."""')
    _edit(package / "b.py", "# floor", "# rounds towards minus infinity")
    _edit(package / "a.py", '"""Double."""', '"""Twice x."""\n    # a comment')
    assert stamps.code_hash(["sitsr_core.a"]) == before
    _edit(package / "c.py", "return 3", "return 4")  # not imported by a
    assert stamps.code_hash(["sitsr_core.a"]) == before
    _edit(package / "b.py", "math.floor(x)", "math.ceil(x)")  # imported by a: its code changed
    assert stamps.code_hash(["sitsr_core.a"]) != before


def test_internal_imports_resolve_relative_and_absolute_forms(package):
    tree = ast.parse("from . import a\nfrom .b import g\nimport sitsr_core.c\nimport numpy\nfrom os import path\n")
    assert stamps.internal_imports("sitsr_core.a", tree) == {"sitsr_core", "sitsr_core.a", "sitsr_core.b",
                                                              "sitsr_core.c"}


def test_run_stamps_follow_the_resolved_config(tmp_path):
    base = stamps.stamp_text("run:r=smoke")[1]
    assert stamps.stamp_text("run:r=smoke train.steps=6")[1] == base  # the smoke profile's own value
    changed = stamps.stamp_text("run:r=smoke train.steps=7")[1]
    assert changed.splitlines()[0] != base.splitlines()[0] and changed.splitlines()[1] == base.splitlines()[1]
    with pytest.raises(stamps.SitsrInputError):
        stamps.stamp_text("run:r=")


def test_stamps_are_rewritten_only_when_their_content_changes(tmp_path):
    path = tmp_path / "x.config"
    assert stamps.write_text_if_changed(path, "config 1\n")
    os.utime(path, (1, 1))
    assert not stamps.write_text_if_changed(path, "config 1\n") and path.stat().st_mtime == 1  # make sees no change
    assert stamps.write_text_if_changed(path, "config 2\n") and path.stat().st_mtime > 1
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "stamps.py"), str(tmp_path), "run:x=nosuchprofile"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nosuchprofile" in r.stderr


def test_skipped_modules_are_not_followed(package):
    """Run stamps do not follow metadata, readers and the observation operator (RUN_SKIP): editing a skipped
    module changes nothing, editing a followed one does."""
    before = stamps.code_hash(["sitsr_core.a"], skip=("sitsr_core.b",))
    _edit(package / "b.py", "math.floor(x)", "math.ceil(x)")
    assert stamps.code_hash(["sitsr_core.a"], skip=("sitsr_core.b",)) == before
    assert stamps.code_hash(["sitsr_core.a"]) != stamps.code_hash(["sitsr_core.a"], skip=("sitsr_core.b",))


def test_training_runs_do_not_hash_the_readers_or_the_version():
    """The real package: what `sitsr_core.train` imports minus RUN_SKIP still holds the model code."""
    seen = set()
    todo = ["sitsr_core.train"]
    while todo:
        m = todo.pop()
        if m in seen or stamps.skipped(m, stamps.RUN_SKIP):
            continue
        seen.add(m)
        todo += stamps.internal_imports(m, ast.parse(stamps.module_path(m).read_text()))
    assert {"sitsr_core.networks", "sitsr_core.diffusion", "sitsr_core.sampling", "sitsr_core.loader",
            "sitsr_core.config", "sitsr_core.checkpoint"} <= seen
    assert not {m for m in seen if m.startswith(("sitsr_core.readers", "sitsr_core.regrid"))}
    assert "sitsr_core" not in seen and "sitsr_core.provenance" not in seen
