"""The residual target (CorrDiff-style): diffusion on sit - the prediction of a regression run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr

from sitsr_core import checkpoint, diffusion, downscale, features
from sitsr_core.config import apply_overrides, profile
from sitsr_core.dataset import open_dataset, split_days
from sitsr_core.errors import SitsrConfigError, SitsrInputError
from sitsr_core.train import read_days, train

RESIDUAL = ["data.target=residual"]


def _day_fields(data_path, split="val"):
    ds = open_dataset(data_path)
    day = split_days(ds, split)[0]
    snap = ds.sel(time=day)
    fields = {k: snap[k].values.astype(np.float32) for k in ("sit_lr", "sic_lr", "divergence_lr", "shear_lr")}
    return fields, ds["mask"].values.astype(bool), snap["sit"].values.astype(np.float32), str(day.date())


def test_the_run_folder_holds_its_base_and_the_residual_statistics(residual_run, regression_run, tiny_dataset):
    assert (residual_run / checkpoint.BASE / checkpoint.CHECKPOINT).exists()
    assert checkpoint.read_config(residual_run / checkpoint.BASE) == checkpoint.read_config(regression_run)
    copied = torch.load(residual_run / checkpoint.BASE / checkpoint.CHECKPOINT, weights_only=False)
    assert set(copied) == {"step", "ema", "config"}  # EMA weights only: no optimiser state
    stats = checkpoint.read_norm_stats(residual_run)
    run = checkpoint.load_run(residual_run)
    raw = read_days(open_dataset(tiny_dataset), "train", run.cfg, base_model=run.base)
    # statistics of sit - base on the training days, sit read straight from the store, numpy's mean and std
    store = open_dataset(tiny_dataset)
    train_days = np.asarray(store["split"].values).astype(str) == "train"
    ocean = np.asarray(store["mask"].values).astype(bool)
    residual = (np.asarray(store["sit"].values, np.float32)[train_days] - raw["base"])[:, ocean].astype(np.float64)
    residual = residual[np.isfinite(residual)]
    assert stats["residual"]["mean"] == pytest.approx(residual.mean(), rel=1e-6, abs=1e-9)
    assert stats["residual"]["std"] == pytest.approx(residual.std(), rel=1e-6)
    assert stats["residual"]["std"] < stats["sit"]["std"]


def test_the_base_field_is_the_regression_prediction(residual_run, regression_run, tiny_dataset):
    fields, mask, sit, date = _day_fields(tiny_dataset)
    run = checkpoint.load_run(residual_run)
    reg = checkpoint.load_run(regression_run)
    base = downscale.base_field(run.cfg, fields, mask, run.base)
    alone = downscale.ensemble_metres(reg, fields, mask, members=1, steps=1, tile=reg.cfg.sample.tile,
                                      overlap=reg.cfg.sample.overlap, tile_batch=1)[0]
    np.testing.assert_array_equal(base, alone)
    stacked = downscale.base_field(run.cfg, {k: np.stack([v, v]) for k, v in fields.items()}, mask, run.base)
    np.testing.assert_array_equal(stacked, np.stack([base, base]))  # (T, H, W) in one call
    # sit -> normalised residual -> metres is the identity on ocean cells
    y = run.model.target(sit, base, mask)
    np.testing.assert_allclose(run.model.to_metres(y, base)[mask], sit[mask], atol=1e-5)


def test_targets_are_relative_to_their_base_fields():
    sit_lr = np.full((2, 3), 1.5, np.float32)
    fields = {"sit_lr": sit_lr}
    for target, expected in (("anomaly", sit_lr), ("full", np.zeros_like(sit_lr))):
        cfg = apply_overrides(profile("smoke"), [f"data.target={target}"])
        np.testing.assert_array_equal(downscale.base_field(cfg, fields, np.ones((2, 3), bool)), expected)
    with pytest.raises(SitsrConfigError, match="base"):
        downscale.base_field(apply_overrides(profile("smoke"), RESIDUAL), fields, np.ones((2, 3), bool))
    with pytest.raises(SitsrConfigError, match="'residual'"):
        diffusion.target_stats(apply_overrides(profile("smoke"), RESIDUAL), {"sit": {"mean": 0, "std": 1}})
    with pytest.raises(SitsrConfigError, match="diffusion runs"):
        apply_overrides(profile("smoke"), RESIDUAL + ["train.objective=regression"])


def test_downscale_writes_a_residual_ensemble(residual_run, tiny_dataset, tmp_path):
    fields, mask, sit, date = _day_fields(tiny_dataset)
    path = downscale.downscale(residual_run, tiny_dataset, date, members=3, steps=3, out_path=tmp_path / "r.nc",
                               progress=False)
    with xr.open_dataset(path) as f:
        assert f.attrs["target"] == "residual"
        ens = f["sit_ai"].values
    assert ens.shape == (3,) + mask.shape and (ens >= 0).all() and np.isfinite(ens).all()
    assert np.ptp(ens[:, mask], axis=0).max() > 0  # members differ


def test_only_a_regression_run_can_be_a_base(smoke_run, tiny_dataset):
    fields, mask, _, _ = _day_fields(tiny_dataset)
    run = checkpoint.load_run(smoke_run)
    with pytest.raises(SitsrInputError, match="regression run"):
        downscale.deterministic_metres(run, fields, mask)


def test_bad_base_runs_are_refused(smoke_run, regression_run, residual_run, tiny_dataset, other_dataset, tmp_path):
    cfg = apply_overrides(profile("smoke"), RESIDUAL)
    with pytest.raises(SitsrConfigError, match="needs --base-run"):
        train(cfg, tiny_dataset, tmp_path / "a", progress=False)
    with pytest.raises(SitsrConfigError, match="not a regression run"):
        train(cfg, tiny_dataset, tmp_path / "b", progress=False, base_run=smoke_run)
    with pytest.raises(SitsrConfigError, match="was trained on"):
        train(cfg, other_dataset, tmp_path / "c", progress=False, base_run=regression_run)
    with pytest.raises(SitsrConfigError, match="is for data.target=residual"):
        train(profile("smoke"), tiny_dataset, tmp_path / "d", progress=False, base_run=regression_run)
    with pytest.raises(SitsrInputError, match="without its base run"):
        broken = tmp_path / "broken"
        broken.mkdir()
        for name in (checkpoint.CONFIG, checkpoint.NORM_STATS, checkpoint.CHECKPOINT):
            (broken / name).write_bytes((residual_run / name).read_bytes())
        checkpoint.load_run(broken)
    assert not any((tmp_path / n).exists() for n in "abcd")  # refused before anything is written


def test_resume_keeps_the_base_and_refuses_another(regression_run, tiny_dataset, tmp_path):
    cfg = apply_overrides(profile("smoke"), RESIDUAL + ["train.steps=3"])
    run = train(cfg, tiny_dataset, tmp_path / "r", progress=False, base_run=regression_run)
    longer = apply_overrides(cfg, ["train.steps=6"])
    train(longer, tiny_dataset, run, resume=True, progress=False)  # the copy in base/ is used
    assert int(checkpoint.load_checkpoint(run / checkpoint.CHECKPOINT)["step"]) == 6
    other = train(apply_overrides(profile("smoke"), ["train.objective=regression", "train.seed=5"]), tiny_dataset,
                  tmp_path / "other", progress=False)
    with pytest.raises(SitsrConfigError, match="another base run"):
        train(apply_overrides(cfg, ["train.steps=9"]), tiny_dataset, run, resume=True, progress=False, base_run=other)


def test_a_residual_run_needs_the_features_of_its_base(residual_run, regression_run, tiny_dataset, tmp_path):
    # a residual run on sit and sic over a four-feature regression reads all four
    sitsic = train(apply_overrides(profile("smoke"), RESIDUAL + ["data.features=sit_lr,sic_lr"]), tiny_dataset,
                   tmp_path / "sitsic", progress=False, base_run=regression_run)
    assert checkpoint.run_features(sitsic) == ("sit_lr", "sic_lr", "divergence_lr", "shear_lr")
    assert checkpoint.load_run(sitsic).features == checkpoint.run_features(sitsic)
    with pytest.raises(SitsrInputError, match="gives no divergence_lr, shear_lr"):
        features.check_run_features(sitsic, ["sit_lr", "sic_lr"], "TOPAZ4")


def test_cli_trains_a_residual_run(regression_run, tiny_dataset, tmp_path):
    run = tmp_path / "cli"
    args = [sys.executable, "-m", "sitsr_core.cli", "train", "--data", str(tiny_dataset), "--run", str(run),
            "--profile", "smoke", "--set", "data.target=residual", "--no-progress"]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--base-run" in r.stderr
    r = subprocess.run(args + ["--base-run", str(regression_run)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((run / checkpoint.CONFIG).read_text())["data"]["target"] == "residual"


def test_base_conditioning_gives_the_network_the_regression_prediction(regression_run, tiny_dataset, tmp_path):
    with pytest.raises(SitsrConfigError, match="base_conditioning is for data.target=residual"):
        apply_overrides(profile("smoke"), ["data.base_conditioning=true"])
    cfg = apply_overrides(profile("smoke"), RESIDUAL + ["data.base_conditioning=true"])
    run = train(cfg, tiny_dataset, tmp_path / "conditioned", progress=False, base_run=regression_run)
    loaded = checkpoint.load_run(run)
    model, cfg = loaded.model, loaded.cfg
    fields, mask, _, _ = _day_fields(tiny_dataset)
    base = downscale.base_field(cfg, fields, mask, loaded.base)
    ctx = model.context({**fields, "base": base}, mask)
    assert ctx.shape == (len(cfg.data.features) + 2,) + mask.shape  # features, base, mask
    sit = model.stats["sit"]
    np.testing.assert_allclose(ctx[-2][mask], ((base - sit["mean"]) / sit["std"])[mask], rtol=1e-5, atol=1e-6)
    ens = downscale.ensemble_metres(loaded, fields, mask, members=2, steps=2, tile=cfg.sample.tile,
                                    overlap=cfg.sample.overlap, tile_batch=2)
    assert ens.shape == (2,) + mask.shape and np.isfinite(ens).all()
