"""The sensitivity sweep: presets, window choice, spectral error, ranking, and a resumable run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sitsr_core import sweep
from sitsr_core.errors import SitsrInputError


def test_presets_have_one_base_and_unique_variants():
    quick, full = sweep.preset("quick"), sweep.preset("full")
    for variants in (quick, full):
        names = [v.name for v in variants]
        assert len(names) == len(set(names))
        assert names.count("base") == 1
    assert all(v.run != "trained" for v in quick)
    trained = {v.axis for v in full if v.run == "trained"}
    assert {"target (retrained)", "input feature dropped (retrained)", "gamma range (signal rates)",
            "filter kernel (km, retrained)", "model width"} <= trained
    with pytest.raises(SitsrInputError, match="quick.*full"):
        sweep.preset("huge")


def test_pick_window_prefers_ocean():
    mask = np.ones((100, 100), bool)
    mask[:50, :50] = False  # land in the top-left quadrant
    r, c = sweep.pick_window(mask, 40)
    assert mask[r:r + 40, c:c + 40].all()
    assert sweep.pick_window(mask, 200) == (0, 0)


def test_spectral_error_in_decades():
    k = 1.0 / np.array([400.0, 200.0, 100.0, 50.0, 10.0, 5.0])
    truth = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    spec = {"k_per_km": k, "truth": truth, "members": truth * 10.0}
    assert sweep.spectral_error(spec) == pytest.approx(1.0)  # only 200, 100, 50 and 10 km are in 8..240 km
    spec["members"] = np.where(1.0 / k > 240, 1e6, truth)  # outside the range: ignored
    assert sweep.spectral_error(spec) == pytest.approx(0.0)


def _frame():
    rows = [("base", "default", "base", 0.20, 0.40, 0.9),
            ("DDIM steps", "5", "DDIM steps=5", 0.30, 0.50, 0.7),
            ("DDIM steps", "50", "DDIM steps=50", 0.19, 0.39, 0.95),
            ("ensemble size", "2", "ensemble size=2", 0.21, 0.45, 0.8)]
    frame = pd.DataFrame(rows, columns=["axis", "value", "variant", "crps", "rmse_mean", "spread_skill"])
    for m in ("rmse_member", "spectral_error", "large_scale_rmse", "heat_flux_error_pct"):
        frame[m] = 1.0
    return frame


def test_rank_orders_axes_by_crps_change():
    table = sweep.rank(_frame())
    assert list(table.index) == ["DDIM steps", "ensemble size"]
    steps = table.loc["DDIM steps"]
    assert steps["crps_pct"] == pytest.approx(50.0)
    assert steps["worst_value"] == "5"
    assert steps["rmse_mean_pct"] == pytest.approx(25.0)
    # |1 - 0.7| - |1 - 0.9| = 0.2, in % of the base ratio 0.9
    assert steps["spread_skill_pct"] == pytest.approx(100 * 0.2 / 0.9)
    with pytest.raises(SitsrInputError, match="one base row"):
        sweep.rank(_frame().iloc[1:])


def test_run_sweep_scores_and_resumes(smoke_run, tiny_dataset, tmp_path, monkeypatch):
    out = tmp_path / "sweep.csv"
    kw = dict(members=3, days=1, window=32, steps=3)
    subset = [v for v in sweep.preset("quick") if v.name in ("base", "DDIM steps=5", "ensemble size=2",
                                                                 "input feature imputed=sic")]
    monkeypatch.setattr(sweep, "preset", lambda name: subset)
    frame = sweep.run_sweep({"diffusion": smoke_run}, tiny_dataset, out, progress=False, **kw)
    assert list(frame["variant"]) == [v.name for v in subset]
    assert set(sweep.METRICS) <= set(frame.columns)
    assert frame.loc[frame["variant"] == "ensemble size=2", "scored_members"].item() == 2
    assert (frame[list(sweep.METRICS)].notna()).all().all()
    assert (tmp_path / "sweep_spectra.json").exists()
    rows = frame.set_index("variant")
    # closed-form bounds on every row: |mean of errors| <= mean of |errors| (Minkowski), and the fair CRPS is at
    # most the members' mean absolute error, itself at most their RMSE
    assert (rows["rmse_mean"] <= rows["rmse_member"] + 1e-6).all()
    assert (rows["crps"] <= rows["rmse_member"] + 1e-6).all()
    # the same ensemble, scored on fewer members: CRPS changes, the RMSE of the mean of 2 members differs from 3
    assert rows.loc["ensemble size=2", "crps"] != rows.loc["base", "crps"]
    assert rows.loc["ensemble size=2", "rmse_mean"] != rows.loc["base", "rmse_mean"]

    calls = []
    monkeypatch.setattr(sweep, "score_variant", lambda *a, **k: calls.append(a) or {})
    again = sweep.run_sweep({"diffusion": smoke_run}, tiny_dataset, out, progress=False, **kw)
    assert calls == []  # every row was there with the same settings: nothing recomputed
    pd.testing.assert_frame_equal(again, frame)


def test_run_sweep_refuses_bad_settings(smoke_run, tiny_dataset, tmp_path):
    with pytest.raises(SitsrInputError, match="members >= 2"):
        sweep.run_sweep({"diffusion": smoke_run}, tiny_dataset, tmp_path / "s.csv", members=1)
    with pytest.raises(SitsrInputError, match="base run"):
        sweep.run_sweep({}, tiny_dataset, tmp_path / "s.csv")


def test_trained_variants_keep_the_budget_and_the_splits(smoke_run, tiny_dataset, tiny_moorings, tmp_path):
    from sitsr_core.checkpoint import read_config
    from sitsr_core.dataset import open_dataset

    base = read_config(smoke_run)
    width = sweep.Variant("model width", "4,8", run="trained", train=("model.widths=4,8",))
    run, data = sweep.train_variant(width, smoke_run, tiny_dataset, tmp_path, progress=False)
    cfg = read_config(run)
    assert cfg.model.widths == (4, 8) and cfg.train.steps == base.train.steps and data == tiny_dataset

    kernel = sweep.Variant("filter kernel (km, retrained)", "60", run="trained", kernel_km=60.0)
    with pytest.raises(SitsrInputError, match="moorings"):
        sweep.train_variant(kernel, smoke_run, tiny_dataset, tmp_path, progress=False)
    run, data = sweep.train_variant(kernel, smoke_run, tiny_dataset, tmp_path,
                                    moorings=str(tiny_moorings / "Moorings_*.nc"),
                                    progress=False)
    new, old = open_dataset(data), open_dataset(tiny_dataset)
    assert float(new.attrs["kernel_km"]) == 60.0
    assert list(new["time"].values) == list(old["time"].values)
    assert list(new["split"].values) == list(old["split"].values)  # the same days in every split
    mtime = (run / "checkpoint.pt").stat().st_mtime
    sweep.train_variant(kernel, smoke_run, tiny_dataset, tmp_path, moorings=str(tiny_moorings / "Moorings_*.nc"),
                        progress=False)
    assert (run / "checkpoint.pt").stat().st_mtime == mtime  # trained once, reused


def test_residual_variants_retrain_the_regression_only_when_its_inputs_change(residual_run, tiny_dataset, tmp_path):
    import torch

    from sitsr_core.checkpoint import BASE, read_config

    gamma = sweep.Variant("gamma range (signal rates)", "0.9-0.1", run="trained",
                          train=("diffusion.max_signal_rate=0.9", "diffusion.min_signal_rate=0.1"))
    run, _ = sweep.train_variant(gamma, residual_run, tiny_dataset, tmp_path, progress=False)
    assert read_config(run).diffusion.min_signal_rate == 0.1
    assert not (tmp_path / "gamma-range--signal-rates--0-9-0-1-regression").exists()  # the base's regression reused
    same = [torch.load(p / BASE / "checkpoint.pt", weights_only=False)["ema"] for p in (run, residual_run)]
    assert all(torch.equal(same[0][k], same[1][k]) for k in same[0])

    drop = sweep.Variant("input feature dropped (retrained)", "shear", run="trained",
                         train=("data.features=sit_lr,sic_lr,divergence_lr",))
    run, _ = sweep.train_variant(drop, residual_run, tiny_dataset, tmp_path, progress=False)
    regression = read_config(run / BASE)  # a regression trained without shear: the feature reaches neither network
    assert regression.train.objective == "regression" and "shear_lr" not in regression.data.features
    assert read_config(run).data.target == "residual" and "shear_lr" not in read_config(run).data.features


def test_rank_measures_a_variant_against_its_reference():
    frame = _frame()
    extra = pd.DataFrame([("target", "anomaly", "target=anomaly", 0.30, 0.50, 0.9, "base"),
                          ("input features (retrained)", "sit+sic", "input features (retrained)=sit+sic",
                           0.33, 0.50, 0.9, "target=anomaly")],
                         columns=["axis", "value", "variant", "crps", "rmse_mean", "spread_skill", "reference"])
    frame = pd.concat([frame.assign(reference="base"), extra], ignore_index=True).fillna(1.0)
    table = sweep.rank(frame)
    assert table.loc["target", "crps_pct"] == pytest.approx(50.0)  # against the base (0.20)
    assert table.loc["input features (retrained)", "crps_pct"] == pytest.approx(10.0)  # against the anomaly run (0.30)
    assert table.loc["input features (retrained)", "reference"] == "target=anomaly"
    # a reference that was not scored falls back to the base
    table = sweep.rank(frame[frame["variant"] != "target=anomaly"])
    assert table.loc["input features (retrained)", "crps_pct"] == pytest.approx(65.0)


def test_sweep_scores_the_heat_flux_against_the_4km_concentration(smoke_run, tiny_dataset, monkeypatch):
    """The truth's heat flux uses the store's 4 km ``sic`` (not the product's ``sic_lr``), as in sitsr evaluate."""
    import xarray as xr

    from sitsr_core import evaluate
    from sitsr_core.checkpoint import load_run

    ds = xr.open_zarr(tiny_dataset)
    day = pd.DatetimeIndex(ds["time"].values)[list(ds["split"].values).index("val")]
    inputs = sweep._Inputs(tiny_dataset, pd.DatetimeIndex([day]), (0, 0, 32))
    seen = {}
    monkeypatch.setattr(evaluate, "score", lambda data, **kw: seen.update(data) or {})
    sweep.score_variant(sweep.preset("quick")[0], load_run(smoke_run), inputs, members=2, steps=2)
    np.testing.assert_array_equal(seen["sic_hr"][0], ds["sic"].sel(time=day).values[:32, :32])
    assert not np.array_equal(seen["sic_hr"], seen["sic"])
