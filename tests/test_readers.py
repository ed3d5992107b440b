"""Readers of real products: the real samples (values from samples/README.md) and exact-format fixtures."""

from __future__ import annotations

import fixtures_products as fp
import numpy as np
import pandas as pd
import pyproj
import pytest

from sitsr_core.errors import SitsrDataError
from sitsr_core.readers import (
    EASE2_NORTH_PROJ4,
    drift_deformation,
    read_cs2smos,
    read_osisaf_conc,
    read_osisaf_drift,
    read_product,
    read_topaz4,
    sniff_product,
)


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    """Fixture files written once for the module."""
    d = tmp_path_factory.mktemp("products")
    return {
        "cs2smos": fp.write_cs2smos(d),
        "osi_conc": fp.write_osisaf_conc(d),
    }


# --------------------------------------------------------------------------------------------------
# TOPAZ4 (real samples)
# --------------------------------------------------------------------------------------------------

@pytest.mark.usefixtures("samples")
def test_topaz4_nh25km_matches_readme():
    ds = read_topaz4(fp.TOPAZ_25KM)
    assert ds.sizes == {"y": 121, "x": 154}
    assert ds.attrs["product"] == "TOPAZ4" and ds.attrs["grid"] == "nh25km"
    assert ds.attrs["source_file"].endswith("topaz4_nh25km_20100101_init.nc")
    sit, sic = ds.sit.values, ds.sic.values
    # 5843 fill cells, 12791 non-fill cells; mask==0 also covers (100, 95), forced to land by the
    # creation script although it holds ocean values -> 12790 ocean cells kept.
    assert ds.attrs["n_fill_cells"] == 5843
    assert ds.attrs["n_ocean_cells"] == 12790 == int(np.isfinite(sit).sum()) == int(ds["mask"].sum())
    assert np.isnan(sit[100, 95]) and ds["mask"].values[100, 95] == 0
    assert np.nanmax(sit) < 7.23 and np.nanmax(sic) <= 0.995 + 1e-6 and np.nanmin(sit) >= 0
    assert not (np.nan_to_num(sit) > 1e30).any()  # the 9.97e36 fill is masked
    ice = sic > 0
    assert int(ice.sum()) == 12250  # README: 12251 of the 12791 non-fill cells (one is the forced-land cell)
    assert np.nanmean(sit[ice]) == pytest.approx(0.976, abs=5e-4)
    assert float(ds.latitude.min()) == pytest.approx(61.32, abs=0.01)
    assert float(ds.latitude.max()) == pytest.approx(89.91, abs=0.01)
    assert pd.Timestamp(ds.time.values) == pd.Timestamp("2010-01-01")
    assert 24 < ds.attrs["grid_spacing_km"] < 27
    assert ds.attrs["effective_resolution_km"] >= 12.5
    assert "grid-cell mean" in ds.attrs["conversions"]
    assert ds.sit.attrs["units"] == "m" and ds.sic.attrs["units"] == "1"


@pytest.mark.usefixtures("samples")
def test_topaz4_nh128x128_matches_readme():
    ds = read_topaz4(fp.TOPAZ_128)
    assert ds.sizes == {"y": 128, "x": 128} and ds.attrs["grid"] == "nh128x128"
    assert ds.attrs["n_ocean_cells"] == 9454 and ds.attrs["n_fill_cells"] == 6930
    ice = ds.sic.values > 0
    assert int(ice.sum()) == 7741
    assert np.nanmean(ds.sit.values[ice]) == pytest.approx(0.881, abs=5e-4)
    assert np.nanmean(ds.sit.values) == pytest.approx(0.722, abs=5e-4)
    assert 34 < ds.attrs["grid_spacing_km"] < 35


@pytest.mark.usefixtures("samples")
def test_topaz4_rejects_other_products(tiny_moorings):
    with pytest.raises(SitsrDataError,
                       match=r"expected a TOPAZ4.*found an OSI SAF low-resolution drift file \(OSI-405\).*dX"):
        read_topaz4(fp.OSI_DRIFT_SH)
    moorings = sorted(tiny_moorings.glob("Moorings_*.nc"))[0]
    with pytest.raises(SitsrDataError, match=r"expected a TOPAZ4.*found a neXtSIM moorings file"):
        read_topaz4(moorings)


@pytest.mark.usefixtures("samples")
def test_topaz4_thickness_in_cm(tmp_path):
    cm = fp.write_topaz4(tmp_path / "cm_nounits.nc", hice_factor=100.0)
    with pytest.raises(SitsrDataError, match=r"cm_nounits\.nc: variable hice has no units attribute but implausible"):
        read_topaz4(cm)
    m_but_cm = fp.write_topaz4(tmp_path / "m_but_cm.nc", hice_factor=100.0, hice_units="m")
    with pytest.raises(SitsrDataError, match=r"units 'm' but implausible thickness"):
        read_topaz4(m_but_cm)
    ok = read_topaz4(fp.write_topaz4(tmp_path / "cm.nc", hice_factor=100.0, hice_units="cm"))
    ref = read_topaz4(fp.TOPAZ_25KM)
    np.testing.assert_allclose(ok.sit.values, ref.sit.values, rtol=1e-6, equal_nan=True)
    assert "cm -> m" in ok.attrs["conversions"]


@pytest.mark.usefixtures("samples")
def test_topaz4_missing_variable_and_all_land(tmp_path):
    p = fp.write_topaz4(tmp_path / "nohice.nc", drop=("hice",))
    with pytest.raises(SitsrDataError, match=r"nohice\.nc.*lacks variable\(s\) hice; variables present: .*cice"):
        read_topaz4(p)
    p = fp.write_topaz4(tmp_path / "land.nc", all_land=True)
    with pytest.raises(SitsrDataError, match=r"land\.nc: variable hice has no valid"):
        read_topaz4(p)


@pytest.mark.usefixtures("samples")
def test_truncated_and_non_netcdf_files(tmp_path):
    cut = tmp_path / "topaz_cut.nc"
    cut.write_bytes(fp.TOPAZ_25KM.read_bytes()[:1_000_000])
    with pytest.raises(SitsrDataError, match=r"topaz_cut\.nc: cannot open as netCDF-4/HDF5"):
        read_topaz4(cut)
    # A cut netCDF-3 file opens and reads zeros: caught by the size check.
    cut3 = tmp_path / "drift_cut.nc"
    cut3.write_bytes(fp.OSI_DRIFT_SH.read_bytes()[:300_000])
    for reader in (read_osisaf_drift, read_product, read_topaz4):
        with pytest.raises(SitsrDataError, match=r"drift_cut\.nc: truncated netCDF-3 file: 300000 bytes"):
            reader(cut3)
    text = tmp_path / "notes.nc"
    text.write_text("not a netCDF file\n")
    with pytest.raises(SitsrDataError, match=r"notes\.nc: not a netCDF file"):
        read_cs2smos(text)
    with pytest.raises(SitsrDataError, match=r"nothere\.nc: no such file"):
        read_product(tmp_path / "nothere.nc")


# --------------------------------------------------------------------------------------------------
# OSI-405 drift (real SH sample)
# --------------------------------------------------------------------------------------------------

@pytest.mark.usefixtures("samples")
def test_osisaf_drift_real_sample():
    ds = read_osisaf_drift(fp.OSI_DRIFT_SH)
    assert ds.attrs["product"] == "OSI-405"
    assert ds.sizes == {"y": 131, "x": 125}
    assert ds.attrs["n_valid_vectors"] == 3777 == int(np.isfinite(ds.dX.values).sum())
    assert ds.attrs["n_kept_vectors"] == 3403  # nominal (30) only; the 374 interpolated (22) left out
    assert int(np.isfinite(ds.u.values).sum()) == 3403
    assert pd.Timestamp(ds.time.values) == pd.Timestamp("2016-09-15T12:00")
    assert pd.Timestamp(ds.attrs["time_coverage_start"]) == pd.Timestamp("2016-09-13T12:00")
    assert ds.y.values[0] == 4_250_000 and ds.y.values[-1] == -3_875_000  # descending, in metres
    assert ds.x.values[0] == -3_875_000 and ds.attrs["grid_spacing_km"] == 62.5
    assert np.nanmin(ds.dX) == pytest.approx(-62.50, abs=0.01) and np.nanmax(ds.dX) == pytest.approx(69.82, abs=0.01)
    assert np.nanmean(ds.dX) == pytest.approx(11.49, abs=0.01) and np.nanmean(ds.dY) == pytest.approx(1.72, abs=0.01)
    np.testing.assert_allclose(ds.u.values, np.where(ds.status_flag.values >= 30, ds.dX.values / 2.0, np.nan),
                               rtol=1e-6, equal_nan=True)  # 48 h -> km/day
    assert "lat_0=-90" in ds.attrs["crs_proj4"]
    div, shear = ds.divergence.values, ds.shear.values
    assert np.isfinite(div).sum() == ds.attrs["n_deformation_cells"] > 1000
    assert np.all(np.isfinite(div) <= np.isfinite(ds.u.values))
    assert np.nanmedian(np.abs(div)) < 0.05 and 0 < np.nanmedian(shear) < 0.2  # day-1, plausible at ~125 km
    assert ds.attrs["effective_resolution_km"] == 125.0
    assert ds.divergence.attrs["units"] == "day-1"
    every = read_osisaf_drift(fp.OSI_DRIFT_SH, min_status_flag=20)
    assert every.attrs["n_kept_vectors"] == 3777


@pytest.mark.usefixtures("samples")
def test_osisaf_drift_rejects_other_products():
    with pytest.raises(SitsrDataError, match=r"expected an OSI SAF low-resolution drift file.*found a TOPAZ4"):
        read_osisaf_drift(fp.TOPAZ_25KM)
    with pytest.raises(SitsrDataError,
                       match=r"expected an OSI SAF sea-ice concentration file.*found an OSI SAF low-resolution drift"):
        read_osisaf_conc(fp.OSI_DRIFT_SH)


def test_drift_deformation_linear_field_descending_y():
    x = np.arange(10) * 62.5
    y = (np.arange(8) * -62.5)[::1] + 500.0  # decreasing
    X, Y = np.meshgrid(x, y)
    a, b, c, d = 0.002, -0.001, 0.0005, 0.003
    u, v = a * X + b * Y, c * X + d * Y
    u[3, 4] = np.nan
    div, shear = drift_deformation(u, v, x, y)
    assert np.isnan(div[3, 4])
    ok = np.isfinite(div)
    np.testing.assert_allclose(div[ok], a + d, atol=1e-12)
    np.testing.assert_allclose(shear[ok], np.hypot(a - d, b + c), atol=1e-12)
    # the stencil of the neighbours of the hole uses it -> NaN there too, for both fields
    assert np.isnan(div[3, 3]) and np.isnan(div[2, 4]) and np.isnan(shear[2, 4])
    assert np.array_equal(np.isfinite(div), np.isfinite(shear))


@pytest.mark.usefixtures("samples")
def test_osisaf_drift_fixture_end_to_end(tmp_path):
    a, d = 0.004, -0.001  # 1/day
    p = fp.write_osisaf_drift(tmp_path, velocity=lambda x, y: (a * x, d * y + 1.0))
    assert sniff_product(p) == "osisaf_drift"
    ds = read_product(p)
    assert ds.y.values[0] > ds.y.values[-1]
    np.testing.assert_allclose(ds.divergence.values[np.isfinite(ds.divergence.values)], a + d, rtol=1e-4)
    np.testing.assert_allclose(ds.shear.values[np.isfinite(ds.shear.values)], abs(a - d), rtol=1e-4)
    assert "lat_0=90" in ds.attrs["crs_proj4"]


# --------------------------------------------------------------------------------------------------
# CS2SMOS (exact-format fixture)
# --------------------------------------------------------------------------------------------------

def test_cs2smos_fixture_layout(products):
    import netCDF4

    with netCDF4.Dataset(products["cs2smos"]) as nc:
        assert nc["analysis_sea_ice_thickness"].dimensions == ("time", "yc", "xc")
        assert nc["analysis_sea_ice_thickness"].dtype == np.int16
        assert nc["sea_ice_concentration"].units == "%"
        assert nc["time"].units == "seconds since 1978-01-01 00:00:00"
        assert nc["xc"].units == "km"
    assert products["cs2smos"].name.startswith("W_XX-ESA,SMOS_CS2,NH_25KM_EASE2_")


@pytest.mark.parametrize("packed", [True, False])
def test_cs2smos_reader(tmp_path, products, packed):
    path = products["cs2smos"] if packed else fp.write_cs2smos(tmp_path, packed=False)
    ds = read_cs2smos(path)
    assert ds.attrs["product"] == "CS2SMOS" and ds.attrs["effective_resolution_km"] == 50.0
    assert ds.attrs["crs_proj4"] == EASE2_NORTH_PROJ4 and ds.attrs["crs_epsg"] == 6931
    # Real EASE2-North 25 km geometry: centres at -5375000 + 25000 k, y decreasing.
    assert np.allclose(np.diff(ds.x), 25000) and np.allclose(np.diff(ds.y), -25000)
    assert (ds.x.values[0] + 5375000) % 25000 == 0
    tr = pyproj.Transformer.from_crs("EPSG:6931", "EPSG:4326", always_xy=True)
    X, Y = np.meshgrid(ds.x, ds.y)
    lon, lat = tr.transform(X, Y)
    np.testing.assert_allclose(lat, ds.latitude.values, atol=1e-4)
    # Effective thickness = per-ice-area thickness x concentration.
    np.testing.assert_allclose(ds.sit.values, ds.sit_ice.values * ds.sic.values, rtol=1e-6, equal_nan=True)
    truth_ice = fp.smooth_thickness(ds.longitude.values.astype(float), ds.latitude.values.astype(float))
    truth_sic = fp.smooth_concentration(ds.longitude.values.astype(float), ds.latitude.values.astype(float))
    ok = np.isfinite(ds.sit.values)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(ds.sit_ice.values[ok], truth_ice[ok], atol=0.006)
    np.testing.assert_allclose(ds.sic.values[ok], truth_sic[ok], atol=0.006)
    assert np.nanmax(ds.sic) <= 1.0
    np.testing.assert_allclose(ds.sit_uncertainty.values[ok],
                               (0.1 * truth_ice[ok] + 0.05) * ds.sic.values[ok], atol=0.01)
    assert pd.Timestamp(ds.time.values) == pd.Timestamp("2020-11-19T12:00")
    assert "effective thickness" in ds.attrs["conversions"] and "% -> fraction" in ds.attrs["conversions"]
    assert read_product(path).attrs["product"] == "CS2SMOS"


def test_cs2smos_units_and_errors(tmp_path):
    (tmp_path / "a").mkdir()
    cm = read_cs2smos(fp.write_cs2smos(tmp_path / "a", thickness_units="cm", thickness_factor=100.0, with_land=False))
    ref_ice = fp.smooth_thickness(cm.longitude.values.astype(float), cm.latitude.values.astype(float))
    np.testing.assert_allclose(cm.sit_ice.values, ref_ice, atol=0.01)
    assert "cm -> m" in cm.attrs["conversions"]

    (tmp_path / "b").mkdir()
    bad = fp.write_cs2smos(tmp_path / "b", thickness_factor=100.0, packed=False, with_land=False)
    with pytest.raises(SitsrDataError, match=r"analysis_sea_ice_thickness has units 'm' but implausible"):
        read_cs2smos(bad)

    (tmp_path / "c").mkdir()
    nosic = fp.write_cs2smos(tmp_path / "c", drop=("sea_ice_concentration",), with_land=False)
    with pytest.raises(SitsrDataError, match=r"l4sit\.nc: CS2SMOS file lacks variable\(s\) sea_ice_concentration; "
                                             r"variables present: .*analysis_sea_ice_thickness"):
        read_cs2smos(nosic)

    (tmp_path / "d").mkdir()
    empty = fp.write_cs2smos(tmp_path / "d", all_missing=True, with_land=False)
    with pytest.raises(SitsrDataError, match=r"variable analysis_sea_ice_thickness has no valid"):
        read_cs2smos(empty)


@pytest.mark.usefixtures("samples")
def test_cs2smos_rejects_other_products():
    with pytest.raises(SitsrDataError, match=r"expected a CS2SMOS L4 thickness file.*found a TOPAZ4.*group /data"):
        read_cs2smos(fp.TOPAZ_25KM)
    with pytest.raises(SitsrDataError, match=r"expected a CS2SMOS.*found an OSI SAF low-resolution drift"):
        read_cs2smos(fp.OSI_DRIFT_SH)


# --------------------------------------------------------------------------------------------------
# OSI-401 concentration (exact-format fixture)
# --------------------------------------------------------------------------------------------------

def test_osisaf_conc_reader(products, tmp_path):
    path = products["osi_conc"]
    assert sniff_product(path) == "osisaf_conc"
    ds = read_osisaf_conc(path)
    assert ds.attrs["product"] == "OSI-401" and ds.attrs["grid_spacing_km"] == 10.0
    assert ds.attrs["effective_resolution_km"] == 30.0
    assert "lat_ts=70" in ds.attrs["crs_proj4"]
    land = ds.status_flag.values == 1
    assert land.any() and np.isnan(ds.sic.values[land]).all()
    assert np.isfinite(ds.sic.values[~land]).all()
    truth = fp.smooth_concentration(ds.longitude.values.astype(float), ds.latitude.values.astype(float))
    np.testing.assert_allclose(ds.sic.values[~land], truth[~land], atol=1e-4)
    np.testing.assert_allclose(ds.sic_uncertainty.values[~land], 0.05, atol=1e-6)
    assert ds.y.values[0] > ds.y.values[-1] and np.allclose(np.diff(ds.x), 10000)
    assert pd.Timestamp(ds.time.values) == pd.Timestamp("2020-11-20T12:00")
    # The real samples were committed truncated: a cut netCDF-3 file is refused.
    cut = tmp_path / "ice_conc_cut.nc"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(SitsrDataError, match=r"ice_conc_cut\.nc: truncated netCDF-3"):
        read_osisaf_conc(cut)


def test_osisaf_conc_missing_variable(tmp_path):
    p = fp.write_osisaf_conc(tmp_path, drop=("ice_conc",))
    # still recognised by its product_id, so the message names what is missing and what is there
    with pytest.raises(SitsrDataError, match=r"multi_202011201200\.nc: OSI-401 file lacks variable\(s\) ice_conc; "
                                             r"variables present: .*total_uncertainty"):
        read_osisaf_conc(p)


@pytest.mark.usefixtures("samples")
def test_sniff_product_on_samples(products):
    assert sniff_product(fp.TOPAZ_25KM) == "topaz4"
    assert sniff_product(fp.TOPAZ_128) == "topaz4"
    assert sniff_product(fp.OSI_DRIFT_SH) == "osisaf_drift"
    assert sniff_product(products["cs2smos"]) == "cs2smos"
    assert read_product(fp.TOPAZ_128).attrs["grid"] == "nh128x128"
