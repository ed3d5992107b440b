"""LR features from a real product (TOPAZ4 sample): regridding + training filters, the LR file, downscaling."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sitsr_core import downscale, features
from sitsr_core.config import profile
from sitsr_core.errors import SitsrInputError
from sitsr_core.grid import Grid, get_grid
from sitsr_core.readers import read_product

TOPAZ4 = Path(__file__).resolve().parents[1] / "data" / "samples" / "topaz4_nh25km_20100101_init.nc"
#: SR ensembles downscaled with conserve=True keep the product's total volume within this relative tolerance.
VOLUME_RTOL = 0.01



@pytest.fixture(scope="module")
def topaz4(samples):
    return read_product(samples / TOPAZ4.name)


@pytest.fixture(scope="module")
def small_features(topaz4):
    return features.product_features(topaz4, get_grid("small"))


@pytest.fixture(scope="module")
def sitsic_run(tiny_dataset, tmp_path_factory):
    """A smoke run trained on sit_lr, sic_lr only (the model for products without deformation)."""
    from sitsr_core.train import train

    base = profile("smoke")
    cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, features=("sit_lr", "sic_lr"))).validate()
    return train(cfg, tiny_dataset, tmp_path_factory.mktemp("runs") / "sit_sic", progress=False)


@pytest.mark.parametrize("region", ["small", "central"])
def test_topaz4_features_are_plausible(topaz4, region):
    grid = get_grid(region)
    f = features.product_features(topaz4, grid)
    land = grid.land_mask()
    m = f["mask"].values.astype(bool)
    assert f["sit_lr"].shape == grid.shape and not (m & land).any()
    assert m.mean() > 0.8  # the window is mostly ocean, and TOPAZ4 covers it
    sit, sic = f["sit_lr"].values, f["sic_lr"].values
    assert np.isfinite(sit[m]).all() and np.isfinite(sic[m]).all() and np.isfinite(f["sit_interp"].values[m]).all()
    assert np.isnan(sit[land]).all() and np.isnan(sic[land]).all()
    # 120 km means of TOPAZ4 effective thickness (max 7.2 m, thick ice along the Canadian Archipelago)
    assert 0 <= sit[m].min() and sit[m].max() <= float(np.nanmax(topaz4["sit"])) and 0.5 < np.median(sit[m]) < 5
    assert 0 <= sic[m].min() and sic[m].max() <= 1
    assert "divergence_lr" not in f and f.attrs["missing_features"] == "divergence_lr,shear_lr"
    assert f.attrs["product"] == "TOPAZ4" and f.attrs["kernel_km"] == 120 and f.attrs["sic_kernel_km"] == 24
    assert f.attrs["file_name"] == TOPAZ4.name and "hice" in f.attrs["conversions"]
    assert str(f["time"].values)[:10] == "2010-01-01"
    # the filter smooths: sit_lr varies less than the regridded product, and keeps its volume
    assert np.nanstd(sit[m]) < np.nanstd(f["sit_regridded"].values[m])
    v_prod, v_lr = features.ice_volume(f["sit_regridded"], m), features.ice_volume(sit, m)
    assert v_lr == pytest.approx(v_prod, rel=VOLUME_RTOL)


def test_features_are_the_training_filters(small_features):
    """The LR features are box_filter of the regridded fields over the valid cells (as constitute_day)."""
    from sitsr_core import filters

    f = small_features
    m = f["mask"].values.astype(bool)
    ref = filters.box_filter(np.where(m, f["sit_regridded"].values, np.nan), m, 120.0)
    np.testing.assert_allclose(f["sit_lr"].values, ref, equal_nan=True)
    ref = filters.box_filter(np.where(m, f["sic_regridded"].values, np.nan), m, 24.0)
    np.testing.assert_allclose(f["sic_lr"].values, ref, equal_nan=True)


def test_product_without_sic_is_refused(topaz4):
    with pytest.raises(SitsrInputError, match="no sic"):
        features.product_features(topaz4.drop_vars("sic"), get_grid("small"))


def test_ice_volume_of_a_constant_field():
    grid = Grid("custom", 370, 440, 10, 20)
    mask = np.ones(grid.shape, bool)
    mask[:, :5] = False
    sit = np.full(grid.shape, 2.0)
    sit[0, 10] = np.nan
    # 149 valid cells x 16 km² x 2 m = 4768 km² m = 4.768 km³
    assert features.ice_volume(sit, mask) == pytest.approx(149 * 16 * 2.0 * 1e-3)
    assert features.ice_volume(np.stack([sit, 2 * sit]), mask) == pytest.approx([4.768, 9.536])
    area = features.cell_area_km2(grid)  # the true area is larger than 16 km² north of 60 N
    assert (area > 16).all() and (area < 16 * 1.16).all()
    assert features.ice_volume(sit, mask, area_km2=np.full(grid.shape, 25.0)) == pytest.approx(149 * 25 * 2e-3)


def test_written_file_is_the_downscale_lr_file(small_features, tmp_path):
    path = features.write_features(small_features, tmp_path / "lr.nc")
    with pytest.raises(SitsrInputError, match="exists"):
        features.write_features(small_features, path)
    features.write_features(small_features, path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["lr.nc"]  # no temporary file left
    with xr.open_dataset(path) as f:
        assert f.attrs["product"] == "TOPAZ4" and f["sit_lr"].attrs["units"] == "m"
    fields, mask, coords, date = downscale.read_context(None, None, path, ("sit_lr", "sic_lr"))
    assert date == "2010-01-01" and mask.shape == (128, 128)
    np.testing.assert_array_equal(mask, small_features["mask"].values.astype(bool))
    np.testing.assert_allclose(fields["sit_lr"], small_features["sit_lr"].values, equal_nan=True)
    np.testing.assert_allclose(coords["x"], get_grid("small").x)


def test_four_feature_run_refuses_a_product_without_deformation(small_features, tmp_path):
    smoke_run = tmp_path / "run"  # the check reads only config.json: no need to train the four-feature run
    smoke_run.mkdir()
    (smoke_run / "config.json").write_text(profile("smoke").to_json())
    path = features.write_features(small_features, tmp_path / "lr.nc")
    msg = "gives no divergence_lr, shear_lr.*data.features=sit_lr,sic_lr"
    with pytest.raises(SitsrInputError, match=msg):
        features.check_run_features(smoke_run, small_features, "TOPAZ4")
    with pytest.raises(SitsrInputError, match=msg):
        features.downscale_product(smoke_run, path, tmp_path / "sr.nc", members=1, steps=2, progress=False)
    assert not (tmp_path / "sr.nc").exists()
    assert features.check_run_features(profile("smoke"), list(features.FEATURES)) == features.FEATURES


def test_downscale_product_conserves_the_volume(sitsic_run, small_features, tmp_path):
    lr = features.write_features(small_features, tmp_path / "lr.nc")
    assert features.check_run_features(sitsic_run, lr) == ("sit_lr", "sic_lr")
    out = features.downscale_product(sitsic_run, lr, tmp_path / "sit_hrai_20100101.nc", members=2, steps=2,
                                     conserve=True, device="cpu", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.nc", "sit_hrai_20100101.nc"]
    with xr.open_dataset(out) as sr:
        sr = sr.load()
    assert sr["sit_ai"].shape == (2, 128, 128) and str(sr["time"].values)[:10] == "2010-01-01"
    assert sr.attrs["source"].endswith(f"LR input {lr.name}") and sr.attrs["conserve"] == 1
    m = small_features["mask"].values.astype(bool)
    v_sr = features.ice_volume(sr["sit_ai"].values, m)
    v_lr = features.ice_volume(small_features["sit_lr"], m)
    v_prod = features.ice_volume(small_features["sit_regridded"], m)
    # conserve: the 120 km block means of what the product observed (its regridded values), checked block by block
    prod = np.where(m, small_features["sit_regridded"].values, np.nan)
    for r in range(0, 128, 30):
        for c in range(0, 128, 30):
            blk = m[r:r + 30, c:c + 30]
            if blk.any():
                np.testing.assert_allclose(sr["sit_ai"].values[:, r:r + 30, c:c + 30][:, blk].mean(axis=1),
                                           np.nanmean(prod[r:r + 30, c:c + 30][blk]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(v_sr, v_prod, rtol=1e-4)
    np.testing.assert_allclose(v_sr, v_lr, rtol=VOLUME_RTOL)
    assert (sr["sit_ai"].values[:, ~m] == 0).all()


def test_cli_features_writes_the_lr_file(tmp_path, samples):
    from sitsr_core.cli import main

    src = samples / TOPAZ4.name
    assert main(["features", "--product", str(src), "--region", "small", "--out", str(tmp_path / "lr.nc")]) == 0
    with xr.open_dataset(tmp_path / "lr.nc") as ds:
        assert {"sit_lr", "sic_lr", "mask"} <= set(ds.variables) and "divergence_lr" not in ds
    assert main(["features", "--product", str(src), "--region", "small", "--out", str(tmp_path / "lr.nc")]) == 2
