"""Moorings round trip, bad-input errors, dataset constitution and split leakage gaps."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import TINY_DATES, TINY_GRID, TINY_SPLITS, smooth_fields

from sitsr_core import dataset, fileio, filters
from sitsr_core.errors import SitsrDataError, SitsrInputError


def write_one(path, dates=TINY_DATES[:5], **drop):
    fields = smooth_fields(TINY_GRID, dates, seed=3)
    ds = fileio.moorings_dataset(TINY_GRID, dates, fields)
    return fileio.write_moorings(path, ds.drop_vars(list(drop)) if drop else ds)


def test_moorings_round_trip(tiny_moorings):
    files = sorted(tiny_moorings.glob("Moorings_*.nc"))
    assert [f.name for f in files] == ["Moorings_2020m11.nc", "Moorings_2020m12.nc"]
    with xr.open_dataset(files[0], decode_times=False) as raw:
        assert raw["time"].attrs["units"] == "days since 1900-01-01"
        assert raw["sit"].dims == ("time", "y", "x")
        assert raw["sit"].attrs["grid_mapping"] == "polar_stereographic"
        assert raw["polar_stereographic"].attrs["straight_vertical_longitude_from_pole"] == -45.0
    ds, grid = fileio.open_moorings(str(tiny_moorings / "Moorings_*.nc"))
    assert grid == TINY_GRID
    np.testing.assert_array_equal(pd.DatetimeIndex(ds["time"].values), TINY_DATES)
    ref = smooth_fields(TINY_GRID, TINY_DATES)
    np.testing.assert_array_equal(ds["sit"].values, ref["sit"])
    assert ds["sit"].chunks is not None  # lazy
    np.testing.assert_array_equal(ds["mask"].values, ~TINY_GRID.land_mask())


def test_missing_variable_names_file_variable_and_present(tmp_path):
    path = write_one(tmp_path / "Moorings_2020m11.nc", shear=True)
    with pytest.raises(SitsrDataError) as err:
        fileio.open_moorings(path)
    msg = str(err.value)
    assert "Moorings_2020m11.nc" in msg and "'shear'" in msg and "divergence" in msg


def test_not_netcdf_and_no_match(tmp_path):
    bad = tmp_path / "Moorings_2020m11.nc"
    bad.write_text("not a netcdf file")
    with pytest.raises(SitsrDataError, match="Moorings_2020m11.nc.*cannot be read"):
        fileio.open_moorings(bad)
    with pytest.raises(SitsrInputError, match="no moorings file matches"):
        fileio.open_moorings(tmp_path / "nothing_*.nc")


def test_time_gap_and_grid_mismatch(tmp_path):
    write_one(tmp_path / "Moorings_a.nc", TINY_DATES[:3])
    write_one(tmp_path / "Moorings_b.nc", TINY_DATES[5:8])
    with pytest.raises(SitsrDataError, match="time gap between 2020-11-22 and 2020-11-25"):
        fileio.open_moorings(str(tmp_path / "Moorings_*.nc"))
    ds, _ = fileio.open_moorings(str(tmp_path / "Moorings_*.nc"), allow_gaps=True)
    assert ds.sizes["time"] == 6
    other = tmp_path / "other"
    other.mkdir()
    write_one(other / "Moorings_a.nc", TINY_DATES[:3])
    small = fileio.moorings_dataset(TINY_GRID, TINY_DATES[3:5], smooth_fields(TINY_GRID,
                                                                              TINY_DATES[3:5])).isel(x=slice(0, 32))
    fileio.write_moorings(other / "Moorings_b.nc", small)
    with pytest.raises(SitsrDataError, match="grid .* differs"):
        fileio.open_moorings(str(other / "Moorings_*.nc"))


def test_check_day_masks_fill_and_reports_negative_thickness():
    mask = np.ones((4, 4), bool)
    day = {"sit": np.array([[1, -0.2, 9.97e36, np.nan]] * 4, np.float32), "sic": np.ones((4, 4)),
           "divergence": np.zeros((4, 4)), "shear": np.zeros((4, 4))}
    with pytest.warns(fileio.SitsrDataWarning, match="file 2020-01-01: 4 negative sit"):
        out = fileio.check_day(day, mask, "file 2020-01-01")
    assert np.isnan(out["sit"][:, 2:]).all() and (out["sit"][:, 1] == 0).all()
    with pytest.raises(SitsrDataError, match="no valid sit"):
        fileio.check_day({**day, "sit": np.full((4, 4), np.nan)}, mask, "f")


def test_dataset_store_contents(tiny_dataset, tiny_moorings):
    ds = dataset.open_dataset(tiny_dataset)
    for v in ("sit", "sit_lr", "sic_lr", "divergence_lr", "shear_lr", "sit_interp"):
        assert ds[v].dims == ("time", "y", "x")
    mask = ds["mask"].values.astype(bool)
    assert np.isnan(ds["sit_lr"].values[:, ~mask]).all()
    assert np.isfinite(ds["sit_lr"].values[:, mask]).all()
    raw = smooth_fields(TINY_GRID, TINY_DATES)
    # the default (product) operator: the 120 km context of a noisy 24 km product, near the moving mean
    # but not equal to it (tests/test_observe.py checks the operator itself)
    for v, k, tol in (("sit", 120, 0.25), ("sic", 24, 0.05)):
        diff = ds[f"{v}_lr"].values[4][mask] - filters.box_filter(raw[v][4], mask, k)[mask]
        assert 1e-3 < np.sqrt(np.mean(diff**2)) < tol
    # normalisation statistics come from training days only
    train = ds["split"].values.astype(str) == "train"
    sit = ds["sit"].values[train][:, mask]
    st = dataset.norm_stats(ds)
    assert st["sit"]["mean"] == pytest.approx(float(sit.mean()), rel=1e-5)
    assert st["sit"]["std"] == pytest.approx(float(sit.std()), rel=1e-4)
    assert set(st) == {"sit", "sit_lr", "sic_lr", "divergence_lr", "shear_lr", "anomaly"}
    assert json.loads(ds.attrs["splits"])["gap_days"] == 1
    assert ds.attrs["kernel_km"] == 120.0


def _min_distance(labels, a, b):
    ia, ib = np.flatnonzero(np.isin(labels, a)), np.flatnonzero(np.isin(labels, b))
    return np.abs(ia[:, None] - ib[None, :]).min()


def test_default_splits_keep_ten_gap_days_around_every_held_out_day():
    dates = pd.date_range("2020-10-18", "2021-04-15")  # the default winter, 180 days
    labels = dataset.assign_splits(dates, dataset.default_splits(dates))
    assert _min_distance(labels, ["train"], ["val", "test"]) >= 11  # >= 10 gap days in between
    assert _min_distance(labels, ["val"], ["test"]) >= 11
    assert (labels == "val").sum() == 12 and (labels == "test").sum() >= 6
    assert (labels == "train").sum() >= 90  # enough training days remain
    assert dataset.SplitSpec().gap_days >= 10


def test_explicit_gap_days_separate_train_from_held_out_days():
    dates = pd.date_range("2020-10-18", "2021-04-15")
    labels = dataset.assign_splits(dates, dataset.default_splits(dates, gap_days=3))
    assert _min_distance(labels, ["train"], ["val", "test"]) == 4  # three gap days in between


def test_inconsistent_split_windows_are_refused():
    dates = pd.date_range("2020-11-01", periods=40)
    with pytest.raises(SitsrInputError, match="overlaps"):
        dataset.assign_splits(dates, dataset.SplitSpec(val=(("2020-11-10", "2020-11-12"),),
                                                      test=(("2020-11-14", "2020-11-16"),), gap_days=2))
    with pytest.raises(SitsrInputError, match="outside the data"):
        dataset.assign_splits(dates, dataset.SplitSpec(test=(("2021-01-01", "2021-01-03"),)))
    with pytest.raises(SitsrInputError, match="ends before"):
        dataset.assign_splits(dates, dataset.SplitSpec(val=(("2020-11-10", "2020-11-05"),)))


def test_output_exists_and_inputs_untouched(tiny_moorings, tiny_dataset):
    before = {p: p.stat().st_mtime_ns for p in tiny_moorings.glob("*.nc")}
    with pytest.raises(SitsrInputError, match="exists; pass --overwrite"):
        dataset.constitute(str(tiny_moorings / "Moorings_*.nc"), tiny_dataset, splits=TINY_SPLITS, progress=False)
    assert before == {p: p.stat().st_mtime_ns for p in tiny_moorings.glob("*.nc")}
    assert not list(tiny_dataset.parent.glob(".*tmp*"))


def test_cli_dataset_error_is_one_line(tmp_path, tiny_moorings):
    write_one(tmp_path / "Moorings_2020m11.nc", sic=True)
    r = subprocess.run([sys.executable, "-m", "sitsr_core.cli", "dataset", "--moorings",
                        str(tmp_path / "Moorings_*.nc"),
                        "--out", str(tmp_path / "x.zarr")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "missing variable 'sic'" in r.stderr
    assert not (tmp_path / "x.zarr").exists()
    out = tmp_path / "ok.zarr"
    r = subprocess.run([sys.executable, "-m", "sitsr_core.cli", "dataset", "--moorings",
                        str(tiny_moorings / "Moorings_*.nc"),
                        "--out", str(out), "--val", "2020-12-01:2020-12-02", "--test", "2020-12-11:2020-12-13",
                        "--gap-days", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (dataset.open_dataset(out)["split"].values.astype(str) == "val").sum() == 2
