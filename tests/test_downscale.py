"""Post-processing, conservation, base fields and ``downscale`` (metres and files)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr

from sitsr_core import downscale
from sitsr_core.config import apply_overrides, profile
from sitsr_core.dataset import open_dataset
from sitsr_core.errors import SitsrInputError
from sitsr_core.train import train

# --------------------------------------------------------------------------------- post-processing

def test_postprocess():
    sit = np.array([[[-1.0, 2.0], [np.nan, 3.0]]], np.float32)
    mask = np.array([[1, 1], [1, 0]], bool)
    sic = np.array([[0.5, 0.0], [0.9, 0.9]], np.float32)
    out = downscale.postprocess(sit, mask, sic)
    np.testing.assert_array_equal(out, [[[0.0, 0.0], [0.0, 0.0]]])
    out = downscale.postprocess(np.full((2, 2), 1.5), mask, np.ones((2, 2)))
    np.testing.assert_array_equal(out, [[1.5, 1.5], [1.5, 0]])


def test_conservation_block_means_and_positivity():
    rng = np.random.default_rng(0)
    H, W, block = 70, 65, 30  # partial blocks at the upper edges
    mask = rng.uniform(size=(H, W)) > 0.15
    mask[:30, :30] = False  # an all-land block
    sic = np.where(rng.uniform(size=(H, W)) > 0.1, 0.9, 0.0)
    sit = downscale.postprocess(rng.gamma(2.0, 0.7, size=(3, H, W)), mask, sic)
    sit[1, 30:60, 30:60] = 0.0  # a member with an ice-free block whose target is positive
    target = rng.uniform(0.2, 3.0, size=(3, 3))
    target[0, 1] = 0.0  # a block that must become ice free
    out = downscale.conserve_block_means(sit, target, mask, block, allowed=mask & (sic > 0))
    assert out.dtype == np.float32 and np.all(out >= 0) and np.all(out[:, ~mask] == 0)
    means = downscale.block_means(out, mask, block)
    ok = np.isfinite(downscale.block_means(np.ones((H, W)), mask, block))
    assert not ok[0, 0] and ok.sum() == 8
    np.testing.assert_allclose(means[:, ok], np.broadcast_to(target, means.shape)[:, ok], atol=1e-4, rtol=0)
    # zeros where there is no ice stay zero except in the block that had to receive ice additively
    no_ice = mask & (sic == 0)
    assert np.all(out[:, no_ice] == 0)
    with pytest.raises(SitsrInputError):
        downscale.conserve_block_means(sit, target[:2], mask, block)


def test_block_means_against_loop():
    rng = np.random.default_rng(1)
    a, m = rng.normal(size=(7, 8)), rng.uniform(size=(7, 8)) > 0.3
    got = downscale.block_means(a, m, 3)
    for i in range(3):
        for j in range(3):
            sel = m[3 * i:3 * i + 3, 3 * j:3 * j + 3]
            vals = a[3 * i:3 * i + 3, 3 * j:3 * j + 3][sel]
            assert np.isnan(got[i, j]) if vals.size == 0 else np.isclose(got[i, j], vals.mean())


# -------------------------------------------------------------------------------------- downscale

@pytest.fixture(scope="module")
def smoke_run(tiny_dataset, tmp_path_factory):
    cfg = apply_overrides(profile("smoke"), ["train.steps=2", "train.val_every=100"])
    return train(cfg, tiny_dataset, tmp_path_factory.mktemp("runs") / "smoke", progress=False)


def test_downscale_writes_cf_file(smoke_run, tiny_dataset, tmp_path, cfcheck):
    out = tmp_path / "sit_hrai_20201201.nc"
    path = downscale.downscale(smoke_run, tiny_dataset, "2020-12-01", members=3, steps=2, eta=0.0, seed=7,
                               out_path=out, progress=False)
    assert path == out and out.exists()
    errors, warnings, report = cfcheck(out)
    assert errors == 0 and warnings == 0, report
    assert not [p for p in tmp_path.iterdir() if p.name != out.name]  # no temporary file left
    with xr.open_dataset(out) as ds:
        for v in ("sit_ai", "sit_ai_mean", "sit_ai_std", "sit_lr", "sit_interp", "mask", "latitude", "longitude",
                  "polar_stereographic"):
            assert v in ds.variables, v
        assert ds["sit_ai"].dims == ("member", "y", "x") and ds.sizes["member"] == 3
        assert ds["sit_ai"].attrs["units"] == "m" and ds["sit_ai"].attrs["grid_mapping"] == "polar_stereographic"
        assert ds["polar_stereographic"].attrs["grid_mapping_name"] == "polar_stereographic"
        assert ds.attrs["steps"] == 2 and ds.attrs["seed"] == 7 and ds.attrs["eta"] == 0.0
        assert ds.attrs["config_hash"] and ds.attrs["conserve"] == 0
        assert ds.attrs["git_commit"] and ds.attrs["torch_version"] == torch.__version__
        assert ds.attrs["dataset_fingerprint"] and "kernel_km" in ds.attrs["dataset_identity"]
        sit, mask = ds["sit_ai"].values, ds["mask"].values.astype(bool)
        assert np.all(sit >= 0) and np.all(sit[:, ~mask] == 0) and np.isfinite(sit).all()
        np.testing.assert_allclose(ds["sit_ai_mean"].values, sit.mean(0), rtol=1e-5, atol=1e-6)
        first = sit.copy()
    with pytest.raises(SitsrInputError, match=str(out)):
        downscale.downscale(smoke_run, tiny_dataset, "2020-12-01", members=3, steps=2, eta=0.0, seed=7, out_path=out,
                            progress=False)
    # same seed -> same members; overwrite allowed on request; conservation holds in the file
    downscale.downscale(smoke_run, tiny_dataset, "2020-12-01", members=2, steps=2, eta=0.0, seed=7, out_path=out,
                        overwrite=True, chunk=1, progress=False)
    with xr.open_dataset(out) as ds:
        np.testing.assert_array_equal(ds["sit_ai"].values, first[:2])
    with pytest.raises(SitsrInputError, match="no date"):
        downscale.downscale(smoke_run, tiny_dataset, "1999-01-01", out_path=tmp_path / "x.nc", progress=False)


def test_downscale_from_lr_file_with_conservation(smoke_run, tiny_dataset, tmp_path):
    ds = open_dataset(tiny_dataset).sel(time="2020-12-02")
    lr = ds[["sit_lr", "sic_lr", "divergence_lr", "shear_lr", "mask"]].load()
    lr.to_netcdf(tmp_path / "lr.nc")
    out = tmp_path / "sit_hrai_20201202.nc"
    downscale.downscale(smoke_run, None, None, members=2, steps=2, seed=0, out_path=out, conserve=True,
                        lr_file=tmp_path / "lr.nc", progress=False)
    with xr.open_dataset(out) as res:
        assert "sit_interp" not in res and res.attrs["conserve"] == 1
        mask = res["mask"].values.astype(bool)
        got = downscale.block_means(res["sit_ai"].values, mask, 30)
        want = downscale.block_means(lr["sit_lr"].values, mask, 30)
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[:, ok], np.broadcast_to(want, got.shape)[:, ok], atol=1e-4, rtol=0)
        assert np.all(res["sit_ai"].values >= 0)


@pytest.mark.parametrize("name", ["product", "moving-mean"])
def test_conservation_gives_the_truths_observed_values_without_noise(smoke_run, tiny_moorings, tmp_path, name):
    """--conserve on a noise-free dataset: the members' values seen through the operator are the truth's.

    Independent references: the truth's mean over each product cell's kernel window (a loop), or its
    120 km moving mean (box_filter) at each block centre.
    """
    import dataclasses

    from conftest import TINY_SPLITS

    from sitsr_core import dataset, filters, observe

    op = observe.ObservationOperator(name)
    op = dataclasses.replace(op, sit=dataclasses.replace(op.sit, noise_std=0.0))
    data = dataset.constitute(str(tiny_moorings / "Moorings_*.nc"), tmp_path / "clean.zarr", splits=TINY_SPLITS,
                              progress=False, operator=op)
    out = downscale.downscale(smoke_run, data, "2020-12-02", members=2, steps=2, seed=0, conserve=True,
                              out_path=tmp_path / "c.nc", progress=False)
    truth = open_dataset(data)["sit"].sel(time="2020-12-02").values.astype(np.float64)
    with xr.open_dataset(out) as res:
        members, mask = res["sit_ai"].values.astype(np.float64), res["mask"].values.astype(bool)
    if name == "product":
        k, g = int(op.sit.kernel_km / 4), int(op.sit.grid_km / 4)

        def seen(x):
            vals = []
            for i in range(-(-mask.shape[0] // g)):
                for j in range(-(-mask.shape[1] // g)):
                    if mask[i * g:(i + 1) * g, j * g:(j + 1) * g].any():
                        cy, cx = i * g + (g - 1) / 2, j * g + (g - 1) / 2
                        rows = [r for r in range(mask.shape[0]) if abs(r - cy) < k / 2]
                        cols = [c for c in range(mask.shape[1]) if abs(c - cx) < k / 2]
                        vals.append(x[np.ix_(rows, cols)][mask[np.ix_(rows, cols)]].mean())
            return np.array(vals)
    else:
        def seen(x):
            lr = filters.box_filter(np.where(mask, x, np.nan), mask, 120.0)
            vals = []
            centres = ([14, 15], [44, 45], [61, 62])  # of the blocks 0-29, 30-59 and 60-63 of the 64-cell window
            for rows in centres:
                for cols in centres:
                    v = [lr[a, b] for a in rows for b in cols if mask[a, b]]
                    if v:
                        vals.append(np.mean(v))
            return np.array(vals)
    before = downscale.downscale(smoke_run, data, "2020-12-02", members=2, steps=2, seed=0,
                                 out_path=tmp_path / "raw.nc", progress=False)
    with xr.open_dataset(before) as raw:
        assert np.abs(seen(raw["sit_ai"].values[0].astype(np.float64)) - seen(truth)).max() > 0.05
    for m in members:
        np.testing.assert_allclose(seen(m), seen(truth), atol=2e-3)


# ------------------------------------------------------------------------------------ names and CLI

def test_output_names_are_parsed_back():
    for date in ("2021-03-25", "1999-12-31"):
        name = downscale.output_name(date)
        assert name == f"sit_hrai_{date.replace('-', '')}.nc"
        assert downscale.parse_output_name(name) == np.datetime64(date)
    for other in ("sit_hrai_2021032.nc", "sit_hrai_20210325.nc.tmp", "x_sit_hrai_20210325.nc", "notes.txt"):
        assert downscale.parse_output_name(other) is None


def test_module_entry_point_prints_one_line_and_exits_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sitsr_core.downscale", "--run", str(tmp_path / "none"),
                        "--data", str(tmp_path / "none.zarr"), "--date", "2020-12-01"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr == "sitsr_core.downscale: error: downscale: --out is required\n"
