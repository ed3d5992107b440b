"""Training: patches, augmentation, run folder, exact resume, and a 2-process gloo run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from statecmp import assert_same_states

from sitsr_core import checkpoint, loader
from sitsr_core import train as trainmod
from sitsr_core.config import Config, apply_overrides, profile
from sitsr_core.dataset import open_dataset
from sitsr_core.errors import SitsrConfigError, SitsrInputError

ROOT = Path(__file__).resolve().parents[1]


def test_patch_sampler_respects_land_fraction():
    rng = np.random.default_rng(0)
    mask = rng.uniform(size=(20, 23)) > 0.4
    mask[:, :8] = False
    s = trainmod.PatchSampler(3, mask, 6, 0.3)
    for r in range(15):  # brute force land fractions
        for c in range(18):
            assert np.isclose(s.land_fraction[r, c], 1 - mask[r:r + 6, c:c + 6].mean())
    draws = s.draw(np.random.default_rng(1), 500)
    assert draws[:, 0].max() < 3 and set(np.unique(draws[:, 3])) == set(range(8))
    for _, r, c, _ in draws:
        assert 1 - mask[r:r + 6, c:c + 6].mean() <= 0.3 + 1e-12
    assert np.isclose(s.ocean_cells(draws[:4]), sum(mask[r:r + 6, c:c + 6].sum() for _, r, c, _ in draws[:4]))
    with pytest.raises(SitsrInputError):
        trainmod.PatchSampler(1, np.zeros((10, 10), bool), 4, 0.5)


def test_dihedral_gives_the_eight_symmetries():
    a = np.arange(12.0).reshape(1, 3, 4)
    outs = [loader.dihedral(a, k) for k in range(8)]
    assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8
    for o in outs:
        assert sorted(o.ravel()) == sorted(a.ravel())


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    """A 6-step smoke run and the same run interrupted after 3 steps then resumed."""
    base = tmp_path_factory.mktemp("train")
    cfg = profile("smoke")
    full = trainmod.train(cfg, tiny_dataset, base / "full", progress=False)
    part = trainmod.train(apply_overrides(cfg, ["train.steps=3"]), tiny_dataset, base / "resumed", progress=False)
    trainmod.train(cfg, tiny_dataset, part, resume=True, progress=False)
    return full, part


def test_run_folder_contents(runs, tiny_dataset):
    full, _ = runs
    assert sorted(p.name for p in full.iterdir()) == ["checkpoint.pt", "config.json", "metrics.csv", "norm_stats.json",
                                                      "provenance.json"]  # no temporary file
    prov = json.loads((full / "provenance.json").read_text())
    assert prov["dataset"]["path"] == str(Path(tiny_dataset).resolve())
    assert prov["dataset"]["identity"]["kernel_km"] == "120"
    (session,) = prov["sessions"]
    assert session["from_step"] == 0 and session["config_hash"] == profile("smoke").hash()
    assert {"sitsr_version", "python_version", "torch_version", "numpy_version", "xarray_version", "git_commit",
            "git_dirty"} <= set(session)
    assert Config.from_dict(json.loads((full / "config.json").read_text())) == profile("smoke")
    stats = json.loads((full / "norm_stats.json").read_text())
    assert set(stats) >= {"sit", "sit_lr", "anomaly"}
    with open(full / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == checkpoint.METRIC_COLUMNS
    assert [int(r["step"]) for r in rows] == [2, 3, 4, 6]
    val = [r for r in rows if r["val_loss"]]
    assert [int(r["step"]) for r in val] == [3, 6]
    # the interpolation's RMSE on the first validation day (smoke: train.val_days=1), computed here from the store;
    # the model's (6 steps: far from trained, ~10 m) is finite, not the interpolation's, and changes as it trains
    store = open_dataset(tiny_dataset)
    day = np.flatnonzero(np.asarray(store["split"].values).astype(str) == "val")[0]
    ocean = np.asarray(store["mask"].values).astype(bool)
    truth = np.nan_to_num(store["sit"].values[day])[ocean].astype(np.float64)
    interp = np.nan_to_num(store["sit_interp"].values[day])[ocean].astype(np.float64)
    for r in val:
        assert float(r["val_rmse_interp"]) == pytest.approx(np.sqrt(np.mean((interp - truth) ** 2)), rel=1e-5)
        assert np.isfinite(float(r["val_rmse"])) and float(r["val_rmse"]) != float(r["val_rmse_interp"])
    assert float(val[0]["val_rmse"]) != float(val[1]["val_rmse"])
    assert all(float(r["loss"]) > 0 and float(r["samples_per_s"]) > 0 for r in rows if r["loss"])
    state = checkpoint.load_checkpoint(full / "checkpoint.pt")
    assert state["step"] == 6 and {"model", "ema", "optimizer", "rng"} <= set(state)


def test_resume_is_exact(runs):
    full, part = runs
    a, b = checkpoint.load_checkpoint(full / "checkpoint.pt"), checkpoint.load_checkpoint(part / "checkpoint.pt")
    assert a["step"] == b["step"] == 6
    assert_same_states(a, b)
    # the EMA differs from the live weights (it is really tracked)
    assert any(not torch.equal(a["model"][k], a["ema"][k]) for k in a["model"])
    ma, mb = checkpoint.read_metrics(full / "metrics.csv"), checkpoint.read_metrics(part / "metrics.csv")
    assert [r["step"] for r in ma] == [r["step"] for r in mb]
    # the 3-step run legitimately logged its last step, so only rows 2 and 6 average the same steps
    assert [r["loss"] for r in ma if r["step"] in (2, 6)] == [r["loss"] for r in mb if r["step"] in (2, 6)]


def test_refuses_to_clobber_or_resume_a_different_config(runs, tiny_dataset):
    full, _ = runs
    with pytest.raises(SitsrInputError, match="resume"):
        trainmod.train(profile("smoke"), tiny_dataset, full, progress=False)
    with pytest.raises(SitsrConfigError, match="train.lr"):
        trainmod.train(apply_overrides(profile("smoke"), ["train.lr=0.5"]), tiny_dataset, full, resume=True,
                       progress=False)
    with pytest.raises(SitsrInputError, match="nothing to resume"):
        trainmod.train(profile("smoke"), tiny_dataset, full.parent / "none", resume=True, progress=False)


def test_resumed_run_records_each_session(runs):
    _, part = runs
    sessions = json.loads((part / "provenance.json").read_text())["sessions"]
    assert [s["from_step"] for s in sessions] == [0, 3]
    assert sessions[0]["config_hash"] == apply_overrides(profile("smoke"), ["train.steps=3"]).hash()
    assert sessions[1]["config_hash"] == profile("smoke").hash()


def test_two_process_gloo_matches_single_process(runs, tiny_dataset, tmp_path):
    full, _ = runs
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sitsr_core.train", "--data", str(tiny_dataset), "--run-dir", str(run), "--profile", "smoke",
           "--set", "train.val_every=100", "--no-progress", "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = checkpoint.load_checkpoint(full / "checkpoint.pt"), checkpoint.load_checkpoint(run / "checkpoint.pt")
    assert b["step"] == 6
    diffs = [(a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"]]
    scale = max(a["model"][k].abs().max().item() for k in a["model"])
    # same global batch: the two runs differ only by floating-point summation order
    assert max(diffs) < 1e-3 * scale, max(diffs)
    ma, mb = checkpoint.read_metrics(full / "metrics.csv"), checkpoint.read_metrics(run / "metrics.csv")
    la = [r["loss"] for r in ma if r["loss"] is not None]
    lb = [r["loss"] for r in mb if r["loss"] is not None]
    np.testing.assert_allclose(la, lb, rtol=1e-4)
