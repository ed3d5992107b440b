"""Execute every numbered notebook with the `smoke` parameter set (papermill), on inputs built by the CLI.

The executed copies land in ``build/smoke/executed``, where the book test (marker ``book``) picks them up.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from papermill.parameterize import parameterize_notebook

from sitsr_core import runbook

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "build" / "smoke"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def sitsr(*args):
    r = subprocess.run([sys.executable, "-m", "sitsr_core.cli", *args], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="session")
def smoke_inputs():
    """The smoke pipeline, built through the `sitsr` CLI as `make book` does at full size.

    moorings (small region, 30 days) -> dataset -> regression, then diffusion on its residual, anomaly, sit+sic and
    full-field runs (smoke profile) -> ensembles of the test days in ``outputs/`` and their scores in
    ``metrics_test.json`` -> the quick sensitivity sweep in ``sweep/sweep.csv``.
    """
    SMOKE.mkdir(parents=True, exist_ok=True)
    data = SMOKE / "data" / "small.zarr"
    runs = SMOKE / "runs"
    sitsr("synth", "--region", "small", "--start", "2020-11-20", "--end", "2020-12-19", "--out",
          str(SMOKE / "moorings"), "--overwrite")
    (SMOKE / "data").mkdir(exist_ok=True)
    sitsr("dataset", "--moorings", str(SMOKE / "moorings" / "Moorings_*.nc"), "--out", str(data),
          "--val", "2020-12-01:2020-12-03", "--test", "2020-12-15:2020-12-19", "--gap-days", "2", "--overwrite")
    variants = {"regression": ["--set", "train.objective=regression"],
                "diffusion": ["--set", "data.target=residual", "--set", "data.base_conditioning=true",
                              "--base-run", str(runs / "regression")],
                "anomaly": [],
                "sit_sic": ["--set", "data.features=sit_lr,sic_lr"],  # the variant for products without deformation
                "full_target": ["--set", "data.target=full"]}
    for name, extra in variants.items():
        if (runs / name).exists():
            shutil.rmtree(runs / name)
        sitsr("train", "--data", str(data), "--run", str(runs / name), "--profile", "smoke", "--no-progress", *extra)
    if (SMOKE / "outputs").exists():
        shutil.rmtree(SMOKE / "outputs")
    sitsr("evaluate", "--run", str(runs / "diffusion"), "--regression-run", str(runs / "regression"),
          "--data", str(data), "--split", "test", "--members", "4", "--steps", "4", "--max-days", "2",
          "--outputs", str(SMOKE / "outputs"), "--out", str(SMOKE / "metrics_test.json"), "--no-progress")
    sitsr("sweep", "--run", str(runs / "diffusion"), "--data", str(data), "--anomaly-run", str(runs / "anomaly"),
          "--full-target-run", str(runs / "full_target"),
          "--sitsic-run", str(runs / "sit_sic"), "--moorings", str(SMOKE / "moorings" / "Moorings_*.nc"),
          "--members", "3", "--steps", "4", "--window", "64", "--out", str(SMOKE / "sweep" / "sweep.csv"),
          "--overwrite")
    return SMOKE


def test_every_notebook_has_the_cookbook_structure():
    for name in NOTEBOOKS:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        for section in ("## Overview", "## Prerequisites", "## Summary"):
            assert section in text, f"{name}: missing {section}"
        assert nb.cells[0].source.startswith("# "), f"{name}: first cell must be the title"
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{name}: needs exactly one cell tagged 'parameters'"
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: committed with outputs"


def test_the_reader_sees_one_parameters_cell(tmp_path):
    """papermill injects its ``# Parameters`` cell after the default one; the default one is then removed."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title", metadata={"tags": []}),
        nbformat.v4.new_code_cell("members = 3  # default", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(members)", metadata={"tags": []})])
    nb.metadata.update(nbformat.from_dict({"papermill": {}, "kernelspec": {"name": "python3", "language": "python",
                                                                           "display_name": "Python 3"}}))
    path = tmp_path / "nb.ipynb"
    nbformat.write(parameterize_notebook(copy.deepcopy(nb), {"members": 30}), path)
    assert runbook.show_one_parameters_cell(path)
    cells = nbformat.read(path, as_version=4).cells
    shown = [c for c in cells if "remove-cell" not in c.metadata.get("tags", [])]
    assert [c.source for c in shown if c.cell_type == "code"] == [
        next(c.source for c in cells if "injected-parameters" in c.metadata.get("tags", [])), "print(members)"]
    assert "members = 30" in shown[1].source
    # a notebook papermill did not parameterise keeps its default cell
    nbformat.write(nb, path)
    assert not runbook.show_one_parameters_cell(path)
    assert nbformat.read(path, as_version=4).cells[1].metadata.tags == ["parameters"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_with_smoke_parameters(name, smoke_inputs):
    (path,) = runbook.execute([name], smoke_inputs / "executed", "smoke", progress=False)
    nb = nbformat.read(path, as_version=4)
    tagged = [c.metadata.get("tags", []) for c in nb.cells]
    assert ["parameters", "remove-cell"] in tagged and sum("remove-cell" not in t and "injected-parameters" in t
                                                            for t in tagged) == 1, f"{name}: parameters cells"
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 1, f"{name}: executed without any figure"
