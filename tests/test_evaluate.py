"""`sitsr evaluate` and the CLI path train -> downscale -> evaluate on the smoke profile."""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from sitsr_core import baselines, evaluate, heatflux, metrics
from sitsr_core.config import profile
from sitsr_core.dataset import open_dataset
from sitsr_core.errors import SitsrInputError


def test_evaluate_scores_in_metres_and_reuses_outputs(smoke_run, tiny_dataset, tmp_path):
    out = tmp_path / "metrics.json"
    r = evaluate.evaluate_run(smoke_run, tiny_dataset, "test", members=3, steps=3, outputs=tmp_path / "outs",
                          out=out, progress=False)
    assert json.loads(out.read_text())["skill"] == r["skill"]
    files = sorted((tmp_path / "outs").glob("sit_hrai_*.nc"))
    assert [f.name for f in files] == ["sit_hrai_20201211.nc", "sit_hrai_20201212.nc", "sit_hrai_20201213.nc"]
    # the ensemble-mean RMSE is recomputed independently from the files, in metres
    ds = open_dataset(tiny_dataset)
    mask = ds["mask"].values.astype(bool)
    err = []
    for f in files:
        with xr.open_dataset(f) as o:
            truth = ds["sit"].sel(time=f.stem[-8:]).values
            err.append((o["sit_ai"].mean("member").values - truth)[mask])
    pooled = float(np.sqrt(np.mean(np.concatenate(err) ** 2)))
    assert r["skill"]["scores"]["ensemble"]["rmse"] == pytest.approx(pooled, rel=1e-5)
    interp = ds["sit_interp"].sel(time=["2020-12-11", "2020-12-12", "2020-12-13"]).values
    truth = ds["sit"].sel(time=["2020-12-11", "2020-12-12", "2020-12-13"]).values
    assert r["skill"]["scores"]["interp"]["rmse"] == pytest.approx(
        metrics.rmse(interp, truth, np.broadcast_to(mask, truth.shape)), rel=1e-6)
    assert set(r["bands"]) == {"large", "medium", "fine", "finest"}
    assert len(r["rank_histogram"]["counts"]) == 4
    assert r["provenance"]["split"] == "test" and r["heat_flux"]["truth"]["flux"] > 0
    sic = ds["sic"].sel(time=["2020-12-11", "2020-12-12", "2020-12-13"]).values  # the truth's own 4 km concentration
    assert r["heat_flux_truth_sic"] == "sic (4 km)"
    sel = ds.sel(time=["2020-12-11", "2020-12-12", "2020-12-13"])
    same_cells = mask & np.isfinite(sel["sit_lr"].values) & np.isfinite(sel["sic_lr"].values) & np.isfinite(interp)
    assert r["heat_flux"]["truth"]["flux"] == pytest.approx(
        heatflux.domain_mean_flux(truth, sic, mask=same_cells)["flux"], rel=1e-5)
    # every baseline row, per-day scores, intervals over days and paired differences
    skill = r["skill"]
    assert set(skill["scores"]) == {"ensemble", "member", "lr", "interp", "deconvolution"}
    assert len(skill["per_day"]["ensemble"]["rmse"]) == 3
    for fc in ("ensemble", "lr", "interp", "deconvolution"):
        low, high = skill["ci95"][fc]["rmse"]
        assert low <= skill["scores"][fc]["rmse"] <= high
    assert set(skill["paired"]) == {"lr", "interp", "deconvolution"}
    assert skill["paired"]["lr"]["crps"]["diff"] == pytest.approx(
        skill["scores"]["ensemble"]["crps"] - skill["scores"]["lr"]["mae"])
    assert set(r["band_spread_skill"]) == {"large", "medium", "fine", "finest"}
    # the deconvolution row: its regularisation was chosen on validation days, its RMSE recomputed here
    reg = json.loads(baselines.regularisation_path(tiny_dataset).read_text())
    assert reg["split"] == "val" and r["provenance"]["deconvolution_reg"] == reg["reg"]
    deconv = baselines.deconvolve_days(ds, ["2020-12-11", "2020-12-12", "2020-12-13"], reg["reg"])
    assert r["skill"]["scores"]["deconvolution"]["rmse"] == pytest.approx(
        metrics.rmse(deconv, truth, np.broadcast_to(mask, truth.shape)), rel=1e-5)
    mtimes = [f.stat().st_mtime_ns for f in files]
    evaluate.evaluate_run(smoke_run, tiny_dataset, "test", members=3, steps=3, outputs=tmp_path / "outs",
                          progress=False)
    assert mtimes == [f.stat().st_mtime_ns for f in files]  # completed dates are not regenerated
    with pytest.raises(SitsrInputError, match="holds 3 members, not 2"):
        evaluate.evaluate_run(smoke_run, tiny_dataset, "test", members=2, steps=3, outputs=tmp_path / "outs",
                              progress=False)
    assert mtimes == [f.stat().st_mtime_ns for f in files]  # refused before touching anything


def test_provenance_of_scores_and_ensembles(smoke_run, tiny_dataset, tmp_path):
    r = evaluate.evaluate_run(smoke_run, tiny_dataset, "test", members=2, steps=2, max_days=1, outputs=tmp_path,
                          progress=False)
    p = r["provenance"]
    versions = ("sitsr_version", "python_version", "torch_version", "numpy_version", "xarray_version", "git_commit",
                "git_dirty")
    assert p["config_hash"] == profile("smoke").hash() and all(p[k] for k in versions)
    assert p["dataset_fingerprint"] and p["dataset_identity"]["kernel_km"] == "120"
    with xr.open_dataset(tmp_path / "sit_hrai_20201211.nc") as o:
        assert {k: o.attrs[k] for k in versions + ("config_hash", "dataset_fingerprint")} == \
            {k: p[k] for k in versions + ("config_hash", "dataset_fingerprint")}
        assert json.loads(o.attrs["dataset_identity"]) == p["dataset_identity"]


def test_pick_days_spreads_evenly():
    import pandas as pd

    days = pd.date_range("2021-01-01", periods=20)
    assert list(evaluate.pick_days(days, 3)) == [days[0], days[10], days[19]]
    assert len(evaluate.pick_days(days, None)) == 20


def test_cli_train_downscale_evaluate(tiny_dataset, tmp_path):
    def sitsr(*args):
        r = subprocess.run([sys.executable, "-m", "sitsr_core.cli", *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        return r

    run = tmp_path / "reg"
    sitsr("train", "--data", tiny_dataset, "--run", run, "--profile", "smoke", "--set", "train.objective=regression",
          "--no-progress")
    assert (run / "checkpoint.pt").exists() and (run / "config.json").exists()
    sitsr("downscale", "--run", run, "--data", tiny_dataset, "--date", "2020-12-01", "--out", tmp_path / "one.nc",
          "--no-progress")
    with xr.open_dataset(tmp_path / "one.nc") as o:
        assert o.sizes["member"] == 1 and float(o["sit_ai"].min()) >= 0
    bad = subprocess.run([sys.executable, "-m", "sitsr_core.cli", "downscale", "--run", str(run), "--data",
                          str(tiny_dataset), "--date", "2020-12-01", "--out", str(tmp_path / "one.nc")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "exists" in bad.stderr
    sitsr("downscale", "--run", run, "--data", tiny_dataset, "--split", "val", "--out", tmp_path / "val",
          "--no-progress")
    assert len(list((tmp_path / "val").glob("sit_hrai_*.nc"))) == 2


def test_heat_flux_truth_uses_the_4km_concentration():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.0, 3.0, size=(2, 32, 32))
    sic_hr = rng.uniform(0.0, 1.0, size=truth.shape)
    sic_lr = np.full(truth.shape, 0.7)
    data = {"members": truth[None] + rng.normal(0, 0.1, size=(3,) + truth.shape), "truth": truth, "lr": truth,
            "interp": truth, "sic": sic_lr, "sic_hr": sic_hr, "mask": np.ones((32, 32), bool),
            "dates": ["2021-01-01", "2021-01-02"]}
    r = evaluate.score(data, kernel_km=40.0, n_boot=100)
    assert r["heat_flux"]["truth"]["flux"] == pytest.approx(heatflux.domain_mean_flux(truth, sic_hr)["flux"])
    assert r["heat_flux"]["lr"]["flux"] == pytest.approx(heatflux.domain_mean_flux(truth, sic_lr)["flux"])
    assert r["heat_flux_truth_sic"] == "sic (4 km)"


def test_fine_scale_lag_correlation_reads_training_days(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    r = evaluate.fine_scale_lag_correlation(ds, lags=(1,))
    labels = ds["split"].values.astype(str)
    mask = ds["mask"].values.astype(bool)
    fine = (ds["sit"] - ds["sit_lr"]).values[:, mask]
    t = np.flatnonzero(labels == "train")
    pairs = [(i, i + 1) for i in t if i + 1 in t]
    expected = np.mean([np.corrcoef(fine[i], fine[j])[0, 1] for i, j in pairs])
    assert r[1] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(SitsrInputError, match="final evaluation"):
        evaluate.fine_scale_lag_correlation(ds, split="test")


def test_the_store_keeps_the_4km_concentration(tiny_dataset, tiny_moorings):
    from sitsr_core import fileio

    src, _ = fileio.open_moorings(str(tiny_moorings / "Moorings_*.nc"))
    ds = open_dataset(tiny_dataset)
    mask = ds["mask"].values.astype(bool)
    sic = src["sic"].sel(time=ds["time"].values).values
    np.testing.assert_allclose(ds["sic"].values[:, mask], sic[:, mask], rtol=0, atol=1e-6)
    assert np.isnan(ds["sic"].values[:, ~mask]).all()
