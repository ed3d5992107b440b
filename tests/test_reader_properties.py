"""Property-based tests (hypothesis) of the readers: tiny files in the exact layouts of each product
(:mod:`fixtures_products`) with random shapes, masks, NaN patterns, fill values, units and missing
variables. A reader returns a valid Dataset or raises a documented error (SitsrDataError /
SitsrInputError), never anything else."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import fixtures_products as fp
import netCDF4
import numpy as np
import pandas as pd
import pytest
from conftest import TINY_GRID
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sitsr_core import fileio
from sitsr_core.errors import SitsrInputError
from sitsr_core.grid import Grid
from sitsr_core.readers import STANDARD_VARIABLES, read_cs2smos, read_osisaf_conc, read_osisaf_drift, read_topaz4

FILL64 = netCDF4.default_fillvals["f8"]  # 9.97e36, the TOPAZ4 land value
EXAMPLES = settings(max_examples=20, deadline=None)


def values(shape, lo, hi, *special):
    """Float64 arrays of ``shape`` with values in ``[lo, hi]``, NaN and ``special`` values."""
    return arrays(np.float64, shape, elements=st.one_of(st.floats(lo, hi, allow_nan=False),
                                                        *(st.just(v) for v in (np.nan,) + special)))


@st.composite
def shapes(draw, low=1, high=5):
    return draw(st.integers(low, high)), draw(st.integers(low, high))


def read_or_refuse(reader, path):
    """The reader's Dataset, or None when it refused the file with a documented error."""
    try:
        return reader(path)
    except SitsrInputError:  # SitsrDataError is a subclass
        return None


def check_product(ds, shape):
    """What every reader promises: 2-D (y, x) fields in standard units, sic within 0-1, sit not negative."""
    for name, units in STANDARD_VARIABLES.items():
        if name in ds:
            assert ds[name].dims == ("y", "x") and ds[name].shape == shape and ds[name].attrs["units"] == units
    assert ds["latitude"].shape == shape and ds.attrs["product"] and ds.attrs["conversions"]
    for name, lo, hi in (("sic", 0.0, 1.0), ("sit", -0.01, np.inf)):
        if name in ds and np.isfinite(ds[name].values).any():
            assert lo <= np.nanmin(ds[name].values) and np.nanmax(ds[name].values) <= hi


def _coords(nc, shape, spacing_km, proj4):
    ny, nx = shape
    xc, yc = -1000.0 + spacing_km * np.arange(nx), 1000.0 - spacing_km * np.arange(ny)
    lon, lat = fp._lonlat(proj4, xc * 1000, yc * 1000)
    fp._xy_vars(nc, xc, yc, lon, lat)


def _field(nc, name, data, *, packed, units, dtype="i2", fill=-32767):
    if packed:
        v = nc.createVariable(name, dtype, ("time", "yc", "xc"), fill_value=np.dtype(dtype).type(fill))
        v.scale_factor = np.float32(0.01)
    else:
        v = nc.createVariable(name, "f4", ("time", "yc", "xc"), fill_value=np.float32(np.nan))
    if units is not None:
        v.units = units
    ok = np.isfinite(data)
    v[0] = np.ma.array(np.where(ok, data, 0.0), mask=~ok)


# --------------------------------------------------------------------------------------- CS2SMOS

@st.composite
def cs2smos(draw):
    shape = draw(shapes())
    return {"shape": shape, "sit": draw(values(shape, -1, 300)), "sic": draw(values(shape, -10, 150)),
            "packed": draw(st.booleans()), "sit_units": draw(st.sampled_from(["m", "cm", None, "inch"])),
            "sic_units": draw(st.sampled_from(["%", "1", None])), "spacing_km": draw(st.sampled_from([25.0, 12.5])),
            "drop": draw(st.sampled_from([None, "analysis_sea_ice_thickness_unc", "sea_ice_concentration"]))}


def write_cs2smos(path, f):
    start = pd.Timestamp("2020-11-16")
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        fp._time_vars(nc, start, start + pd.Timedelta(days=7), start + pd.Timedelta(days=3, hours=12))
        _coords(nc, f["shape"], f["spacing_km"], fp.EASE2_PROJ4)
        gm = nc.createVariable("Lambert_Azimuthal_Grid", "i4")
        gm.proj4_string = fp.EASE2_PROJ4
        for name, data, units in (("analysis_sea_ice_thickness", f["sit"], f["sit_units"]),
                                  ("analysis_sea_ice_thickness_unc", 0.1 * f["sit"], f["sit_units"]),
                                  ("sea_ice_concentration", f["sic"], f["sic_units"])):
            if name != f["drop"]:
                _field(nc, name, data, packed=f["packed"], units=units)


@EXAMPLES
@given(cs2smos())
def test_cs2smos_reader_valid_or_refused(f):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / fp.cs2smos_name()
        write_cs2smos(path, f)
        ds = read_or_refuse(read_cs2smos, path)
        if ds is not None:
            check_product(ds, f["shape"])
            assert {"sit", "sit_ice", "sic"} <= set(ds.data_vars)


# --------------------------------------------------------------------------------------- OSI-401

@st.composite
def osisaf_conc(draw):
    shape = draw(shapes())
    return {"shape": shape, "conc": draw(values(shape, -10, 150)), "packed": draw(st.booleans()),
            "units": draw(st.sampled_from(["%", "1", None])),
            "flags": draw(st.one_of(st.none(), arrays(np.int8, shape, elements=st.sampled_from([0, 1, 2, 4, 8])))),
            "uncertainty": draw(st.booleans()), "proj4": draw(st.booleans()),
            "drop_conc": draw(st.booleans())}


def write_osisaf_conc(path, f):
    d = pd.Timestamp("2020-11-20")
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.product_id = "OSI-401-b"
        fp._grid_mapping_stere(nc, fp.OSI_NH_PROJ4, 90.0, 70.0, -45.0)
        if not f["proj4"]:
            nc["Polar_Stereographic_Grid"].delncattr("proj4_string")
        fp._time_vars(nc, d, d + pd.Timedelta(days=1), d + pd.Timedelta(hours=12))
        _coords(nc, f["shape"], 10.0, fp.OSI_NH_PROJ4)
        if not f["drop_conc"]:
            _field(nc, "ice_conc", f["conc"], packed=f["packed"], units=f["units"], dtype="i4")
        if f["uncertainty"]:
            _field(nc, "total_uncertainty", np.full(f["shape"], 5.0), packed=True, units="%", dtype="i4")
        if f["flags"] is not None:
            s = nc.createVariable("status_flag", "i1", ("time", "yc", "xc"))
            s.setncatts({"flag_values": np.array([0, 1, 2, 4, 8], np.int8),
                         "flag_meanings": "nominal_quality land lake open_water_filtered missing_input_data"})
            s[0] = f["flags"]


@pytest.mark.filterwarnings("ignore:You will likely lose important projection information:UserWarning")
@EXAMPLES
@given(osisaf_conc())
def test_osisaf_conc_reader_valid_or_refused(f):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ice_conc_nh_polstere-100_multi_202011201200.nc"
        write_osisaf_conc(path, f)
        ds = read_or_refuse(read_osisaf_conc, path)
        if ds is not None:
            check_product(ds, f["shape"])
            if f["flags"] is not None:
                assert np.isnan(ds["sic"].values[f["flags"] == 1]).all()  # land flag -> NaN


# --------------------------------------------------------------------------------------- OSI-405

@st.composite
def osisaf_drift(draw):
    shape = draw(shapes())
    return {"shape": shape, "dX": draw(values(shape, -100, 100)), "dY": draw(values(shape, -100, 100)),
            "flags": draw(arrays(np.int8, shape, elements=st.sampled_from([0, 1, 20, 21, 22, 30]))),
            "units": draw(st.sampled_from(["km", "m"])), "offsets": draw(st.booleans())}


def write_osisaf_drift(path, f):
    d1 = pd.Timestamp("2020-11-20T12:00")
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.product_id = "OSI-405-c"
        fp._grid_mapping_stere(nc, fp.OSI_NH_PROJ4, 90.0, 70.0, -45.0)
        fp._time_vars(nc, d1 - pd.Timedelta(hours=48), d1, d1)
        _coords(nc, f["shape"], 62.5, fp.OSI_NH_PROJ4)
        names = ("dX", "dY") + (("dt0", "dt1") if f["offsets"] else ())
        for name in names:
            data = f[name] if name in f else np.zeros(f["shape"])
            v = nc.createVariable(name, "f4", ("time", "yc", "xc"), fill_value=np.float32(-1e10))
            v.units = f["units"] if name in f else "seconds"
            v[0] = np.ma.masked_invalid(np.where(f["flags"] < 20, np.nan, data))
        s = nc.createVariable("status_flag", "i1", ("time", "yc", "xc"))
        s[0] = f["flags"]


@EXAMPLES
@given(osisaf_drift())
def test_osisaf_drift_reader_valid_or_refused(f):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ice_drift_nh_polstere-625_multi-oi_202011181200-202011201200.nc"
        write_osisaf_drift(path, f)
        ds = read_or_refuse(read_osisaf_drift, path)
        if ds is not None:
            check_product(ds, f["shape"])
            kept = np.isfinite(ds["u"].values)
            assert kept.sum() == ds.attrs["n_kept_vectors"] > 0 and np.all(f["flags"][kept] >= 30)
            assert np.array_equal(np.isfinite(ds["divergence"].values), np.isfinite(ds["shear"].values))


# ---------------------------------------------------------------------------------------- TOPAZ4

@st.composite
def topaz4(draw):
    shape = draw(shapes())
    return {"shape": shape, "hice": draw(values(shape, -1, 30, FILL64)), "cice": draw(values(shape, -0.5, 1.5, FILL64)),
            "mask": draw(arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0]))),
            "units": draw(st.sampled_from([None, "m", "cm"])),
            "date": draw(st.sampled_from([None, "2010-01-01T00:00:00Z", "not a date"]))}


def write_topaz4(path, f):
    ny, nx = f["shape"]
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        data = nc.createGroup("data")
        data.createDimension("y", ny)
        data.createDimension("x", nx)
        lat = 70.0 + 0.2 * np.arange(ny)[:, None] + 0.0 * np.arange(nx)
        lon = -45.0 + 0.5 * np.arange(nx)[None, :] + 0.0 * lat
        for name, vals in (("hice", f["hice"]), ("cice", f["cice"]), ("mask", f["mask"]), ("latitude", lat),
                           ("longitude", lon)):
            v = data.createVariable(name, "f8", ("y", "x"))
            v.set_auto_mask(False)
            v[...] = vals
        if f["units"]:
            data["hice"].units = f["units"]
        if f["date"]:
            t = nc.createGroup("metadata").createGroup("time")
            t.createVariable("formatted", str)[...] = np.array(f["date"], dtype=object)


@EXAMPLES
@given(topaz4())
@example({"shape": (1, 2), "hice": np.zeros((1, 2)), "cice": np.full((1, 2), -1.1920929e-07),  # rounding below 0
          "mask": np.ones((1, 2)), "units": None, "date": None})
def test_topaz4_reader_valid_or_refused(f):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "topaz4_init.nc"
        write_topaz4(path, f)
        ds = read_or_refuse(read_topaz4, path)
        if ds is not None:
            check_product(ds, f["shape"])
            ocean = ds["mask"].values == 1
            assert np.array_equal(ocean, (f["mask"] == 1) & (f["hice"] < 1e30) & (f["cice"] < 1e30))  # NaN < x is False
            assert not np.isfinite(ds["sit"].values[~ocean]).any()


# -------------------------------------------------------------------------------- neXtSIM moorings

@st.composite
def moorings(draw):
    ny, nx = draw(shapes(1, 4))
    n_days = draw(st.integers(1, 3))
    shape = (n_days, ny, nx)
    return {"grid": Grid("custom", TINY_GRID.row0, TINY_GRID.col0, ny, nx), "days": n_days,
            "fields": {"sit": draw(values(shape, -1, 5, 1e36)), "sic": draw(values(shape, -0.1, 1.1, 1e36)),
                       "divergence": draw(values(shape, -1, 1)), "shear": draw(values(shape, 0, 1))},
            "land": draw(arrays(np.bool_, (ny, nx))), "units": draw(st.sampled_from(["m", "cm"])),
            "edit": draw(st.sampled_from([None, "drop shear", "transpose"]))}


def write_moorings(path, f):
    ds = fileio.moorings_dataset(f["grid"], pd.date_range("2020-11-20", periods=f["days"]), f["fields"])
    ds["land_mask"].values[:] = f["land"]
    ds["sit"].attrs["units"] = f["units"]
    if f["edit"] == "drop shear":
        ds = ds.drop_vars("shear")
    elif f["edit"] == "transpose":
        ds = ds.transpose("time", "x", "y")
    fileio.write_moorings(path, ds)


@EXAMPLES
@given(moorings())
def test_open_moorings_and_check_day_valid_or_refused(f):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "Moorings_2020m11.nc"
        write_moorings(path, f)
        opened = read_or_refuse(fileio.open_moorings, path)
        if opened is None:
            return
        ds, grid = opened
        with ds:
            assert grid.shape == f["grid"].shape and ds["mask"].dims == ("y", "x")
            assert np.array_equal(ds["mask"].values, ~f["land"])
            assert all(ds[v].dims == ("time", "y", "x") for v in fileio.VARIABLES)
            for i in range(ds.sizes["time"]):
                raw = {v: ds[v].isel(time=i).values for v in fileio.VARIABLES}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", fileio.SitsrDataWarning)
                    day = read_or_refuse(lambda _, raw=raw, i=i: fileio.check_day(raw, ~f["land"], f"day {i}"), None)
                if day is not None:
                    assert np.isfinite(day["sit"]).any() and np.nanmin(day["sit"]) >= 0
                    for a in day.values():
                        assert a.dtype == np.float32 and not np.isfinite(a[f["land"]]).any()
                        assert not (np.abs(np.nan_to_num(a)) > 1e30).any()


@pytest.mark.parametrize("shape", [(1, 4), (4, 1)])
def test_drift_on_a_single_row_or_column_is_refused(tmp_path, shape):
    f = {"shape": shape, "dX": np.ones(shape), "dY": np.ones(shape), "flags": np.full(shape, 30, np.int8),
         "units": "km", "offsets": False}
    write_osisaf_drift(tmp_path / "drift.nc", f)
    with pytest.raises(SitsrInputError, match=r"drift\.nc: .*too small"):
        read_osisaf_drift(tmp_path / "drift.nc")
