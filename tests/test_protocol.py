"""The evaluation protocol: the test split is read only by the final evaluation, gaps cover the decorrelation time.

Issue 14: every choice (defaults, sweep ranking, deconvolution regularisation) is made on validation days;
the test days are handed out only by :func:`sitsr_core.dataset.split_days` with ``purpose=FINAL_TABLE``,
which only :func:`sitsr_core.evaluate.evaluate_run` passes. The code walk below fails if anything else in
the library or the notebooks asks for the test split.
"""

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sitsr_core import dataset, metrics
from sitsr_core.errors import SitsrInputError

ROOT = Path(__file__).resolve().parents[1]

#: (file, enclosing function) where the literal "test" may appear; "*" = anywhere in the file.
#: dataset.py defines the splits; evaluate_run is the final table; cli's --split default feeds it;
#: the sweep's retrained variants copy the split windows of the base dataset (no test day is read).
ALLOWED = {("sitsr_core/dataset.py", "*"), ("sitsr_core/evaluate.py", "evaluate_run"),
           ("sitsr_core/cli.py", "build_parser"), ("sitsr_core/sweep.py", "train_variant")}
FINAL_READER = ("sitsr_core/evaluate.py", "evaluate_run")


def code_sources():
    """(relative name, Python source) of every library module and every notebook's code cells."""
    for p in sorted((ROOT / "sitsr_core").rglob("*.py")):
        yield str(p.relative_to(ROOT)), p.read_text()
    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(p.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        yield str(p.relative_to(ROOT)), "\n".join(
            line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))


def test_split_violations(name: str, source: str) -> list[str]:
    """Places in ``source`` that ask for the test split outside the final evaluation.

    Flags a ``"test"`` literal (other than a dict key) outside :data:`ALLOWED`, a ``purpose=``
    argument or a use of ``FINAL_TABLE`` outside :data:`FINAL_READER` (and dataset.py).
    """
    tree = ast.parse(source)
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def function_of(node):
        while node in parent:
            node = parent[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return node.name
        return None

    found = []
    for node in ast.walk(tree):
        where = (name, function_of(node))
        if isinstance(node, ast.Constant) and node.value == "test":
            dict_key = isinstance(parent.get(node), ast.Dict) and node in parent[node].keys
            if not dict_key and where not in ALLOWED and (name, "*") not in ALLOWED:
                found.append(f"{name}:{node.lineno} uses the 'test' split in {where[1]}")
        if isinstance(node, ast.keyword) and node.arg == "purpose" and where != FINAL_READER:
            found.append(f"{name}:{node.value.lineno} passes purpose= in {where[1]}")
        if (isinstance(node, (ast.Name, ast.Attribute)) and getattr(node, "id", getattr(node, "attr", None))
                == "FINAL_TABLE" and where != FINAL_READER and name != "sitsr_core/dataset.py"):
            found.append(f"{name}:{node.lineno} uses FINAL_TABLE in {where[1]}")
    return found


test_split_violations.__test__ = False  # a helper, not a test


def test_nothing_but_the_final_evaluation_asks_for_the_test_split():
    found = [v for name, src in code_sources() for v in test_split_violations(name, src)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("snippet", [
    'days = split_days(ds, "test")',
    'sweep_days = pick_days(split_days(ds, "test"), 1)',
    'reg = choose_regularisation(ds, split="test")',
    'idx = labels == "test"',
    'days = split_days(ds, "test", purpose=FINAL_TABLE)',
    'def rank(ds):\n    return split_days(ds, split, purpose=dataset.FINAL_TABLE)',
])
def test_the_code_walk_catches_a_request_for_the_test_split(snippet):
    assert test_split_violations("sitsr_core/sweep.py", snippet)
    assert test_split_violations("notebooks/05_sensitivity.ipynb", snippet)


def test_the_code_walk_accepts_the_final_evaluation_and_validation_days():
    final = 'def evaluate_run(ds, split="test"):\n    return split_days(ds, split, purpose=FINAL_TABLE)'
    assert not test_split_violations("sitsr_core/evaluate.py", final)
    assert not test_split_violations("sitsr_core/sweep.py", 'days = split_days(ds, "val")\ncolours = {"test": "r"}')


def test_split_days_hands_out_test_days_only_for_the_final_table(tiny_dataset):
    ds = dataset.open_dataset(tiny_dataset)
    with pytest.raises(SitsrInputError, match="final evaluation"):
        dataset.split_days(ds, "test")
    with pytest.raises(SitsrInputError, match="final evaluation"):
        dataset.split_days(ds, "test", purpose="ranking")
    test = dataset.split_days(ds, "test", purpose=dataset.FINAL_TABLE)
    labels = np.asarray(ds["split"].values).astype(str)
    assert list(test) == list(pd.DatetimeIndex(ds["time"].values[labels == "test"])) and len(test) > 0
    assert len(dataset.split_days(ds, "val")) > 0


def test_default_gap_covers_the_decorrelation_of_an_ar1_fine_scale_field():
    """A fine-scale field decorrelating like the synthetic winter's (0.8 at one day) is below 0.11 after the gap."""
    phi = 0.8
    gap = dataset.SplitSpec().gap_days
    rng = np.random.default_rng(0)
    f = np.empty((gap + 2, 64, 64))
    f[0] = rng.normal(size=f.shape[1:])
    for t in range(1, len(f)):
        f[t] = phi * f[t - 1] + np.sqrt(1 - phi**2) * rng.normal(size=f.shape[1:])
    r = metrics.lag_correlation(f, lags=(1, gap + 1))
    assert r[1] == pytest.approx(phi, abs=0.03)
    assert r[gap + 1] < 0.11  # the nearest training day shares little of an evaluation day's fine scales
