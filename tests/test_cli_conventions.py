"""The command behaves like an installed Python tool: ``python -m sitsr_core``, ``--version``, log levels."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

import sitsr_core
from sitsr_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_has_one_source(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"sitsr {sitsr_core.__version__}"
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is 3.11+; the project supports 3.10)
    assert 'dynamic = ["version"]' in pyproject and 'version = {attr = "sitsr_core.__version__"}' in pyproject
    assert not [line for line in pyproject.splitlines() if line.startswith("version = \"")]


def test_python_dash_m_is_the_command():
    res = subprocess.run([sys.executable, "-m", "sitsr_core", "--version"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"sitsr {sitsr_core.__version__}", res.stderr


@pytest.mark.parametrize("flag, shown", [([], True), (["--quiet"], False), (["-v"], True)])
def test_log_level_flags(tmp_path, capsys, flag, shown):
    """``sitsr synth`` reports what it wrote as an info message: shown by default and with -v, not with --quiet."""
    code = main([*flag, "synth", "--region", "small", "--start", "2021-01-01", "--end", "2021-01-02", "--out",
                 str(tmp_path / "m")])
    assert code == 0
    err = capsys.readouterr().err
    assert ("wrote 1 moorings files" in err) is shown, err
    level = logging.getLogger("sitsr").level
    assert level == {(): logging.INFO, ("--quiet",): logging.WARNING, ("-v",): logging.DEBUG}[tuple(flag)]


def test_notebooks_outside_a_checkout_say_so(tmp_path, capsys, monkeypatch):
    """Installed without its notebooks/ folder, ``sitsr notebooks`` says it needs a checkout (one line, exit 2)."""
    from sitsr_core import runbook

    monkeypatch.setattr(runbook, "NOTEBOOK_DIR", tmp_path / "site-packages" / "notebooks")
    assert main(["notebooks", "--set", "smoke", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a checkout of the project" in err, err
    assert "run it from a git clone" in err and not (tmp_path / "out").exists()
