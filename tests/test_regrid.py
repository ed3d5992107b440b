"""Regridding of product fields onto the neXtSIM 4 km grid."""

from __future__ import annotations

import fixtures_products as fp
import numpy as np
import pyproj
import pytest
import xarray as xr
from scipy.spatial import cKDTree

from sitsr_core.errors import SitsrDataError, SitsrInputError
from sitsr_core.grid import crs, get_grid
from sitsr_core.readers import read_cs2smos, read_osisaf_conc, read_osisaf_drift, read_topaz4
from sitsr_core.regrid import bilinear_weights, regrid_to_grid

SMALL = get_grid("small")
CENTRAL = get_grid("central")


@pytest.fixture(scope="module")
def cs2smos(tmp_path_factory):
    return read_cs2smos(fp.write_cs2smos(tmp_path_factory.mktemp("cs2smos")))


def _model_xy(lon, lat):
    tr = pyproj.Transformer.from_crs("EPSG:4326", crs(), always_xy=True)
    return tr.transform(np.asarray(lon, float), np.asarray(lat, float))


def test_bilinear_weights_exact_on_curvilinear_grid():
    j, i = np.mgrid[0:12, 0:15].astype(float)
    sx = 1000.0 * (i + 0.15 * j + 0.02 * i * j)  # skewed, non-parallelogram cells
    sy = 1000.0 * (j - 0.1 * i + 0.015 * i * j)
    rng = np.random.default_rng(1)
    jj, ii = rng.uniform(0, 11, 500), rng.uniform(0, 14, 500)
    tx = 1000.0 * (ii + 0.15 * jj + 0.02 * ii * jj)
    ty = 1000.0 * (jj - 0.1 * ii + 0.015 * ii * jj)
    idx, w = bilinear_weights(sx, sy, tx, ty)
    assert (idx >= 0).all()
    np.testing.assert_allclose(w.sum(1), 1.0)
    # bilinear reproduces the grid's own (bilinear) index mapping exactly
    np.testing.assert_allclose((w * i.ravel()[idx]).sum(1), ii, atol=1e-9)
    np.testing.assert_allclose((w * j.ravel()[idx]).sum(1), jj, atol=1e-9)
    # points outside the grid get no quadrilateral
    idx2, w2 = bilinear_weights(sx, sy, np.array([-5000.0]), np.array([-5000.0]))
    assert (idx2 == -1).all() and (w2 == 0).all()


@pytest.mark.parametrize("method,tol_point", [("bilinear", 0.03), ("nearest", 0.15), ("mean", 0.15), ("gauss", 0.15)])
def test_regrid_conserves_smooth_field(cs2smos, method, tol_point):
    out = regrid_to_grid(cs2smos, SMALL, variables=("sit_ice", "sic"), method=method)
    assert out.sit_ice.dims == ("y", "x") and out.sizes == {"y": SMALL.ny, "x": SMALL.nx}
    np.testing.assert_array_equal(out.x.values, SMALL.x)
    np.testing.assert_array_equal(out.y.values, SMALL.y)
    lon, lat = SMALL.lonlat()
    truth = fp.smooth_thickness(lon.astype(float), lat.astype(float))
    got = out.sit_ice.values
    ok = np.isfinite(got)
    assert ok.sum() > 0.7 * (~SMALL.land_mask()).sum()
    assert np.nanmean(got) == pytest.approx(truth[ok].mean(), rel=0.01)
    assert np.nanmax(np.abs(got - truth)) < tol_point
    # Means over the same area: source cells whose centres fall in the window vs the regridded field.
    sx, sy = _model_xy(cs2smos.longitude.values, cs2smos.latitude.values)
    inside = (sx > SMALL.x[0]) & (sx < SMALL.x[-1]) & (sy > SMALL.y[0]) & (sy < SMALL.y[-1])
    src_mean = np.nanmean(cs2smos.sit_ice.values[inside])
    assert np.nanmean(got) == pytest.approx(src_mean, rel=0.03)
    assert out.attrs["method"] == method and out.attrs["source_product"] == "CS2SMOS"
    assert out.attrs["effective_resolution_km"] == 50.0 and out.attrs["radius_of_influence_km"] == 25.0


def test_regrid_land_and_radius(cs2smos):
    out = regrid_to_grid(cs2smos, SMALL, variables=("sit", "sic"))
    land = SMALL.land_mask()
    assert land.any()
    for name in ("sit", "sic"):
        assert np.isnan(out[name].values[land]).all()
    np.testing.assert_array_equal(out.land_mask.values, land.astype(np.int8))
    # Every value lies within the radius of a valid source cell, and no further.
    valid = np.isfinite(cs2smos.sit.values)
    sx, sy = _model_xy(cs2smos.longitude.values[valid], cs2smos.latitude.values[valid])
    X, Y = np.meshgrid(SMALL.x, SMALL.y)
    dist, _ = cKDTree(np.column_stack([sx, sy])).query(np.column_stack([X.ravel(), Y.ravel()]))
    dist = dist.reshape(SMALL.shape)  # on the projection plane: 0.93-1.0 x the true distance here
    got = np.isfinite(out.sit.values)
    assert not (got & (dist > 25000 * 1.001)).any()
    assert got[~land & (dist < 0.45 * 25000)].all()
    # Holes in the source are not filled beyond the radius.
    holed = cs2smos.copy()
    X_s, Y_s = _model_xy(cs2smos.longitude.values, cs2smos.latitude.values)
    cx, cy = SMALL.x.mean(), SMALL.y.mean()
    hole = np.hypot(X_s - cx, Y_s - cy) < 150e3
    holed["sit"] = cs2smos.sit.where(~hole)
    out2 = regrid_to_grid(holed, SMALL, variables="sit", method="nearest")
    centre = np.hypot(X - cx, Y - cy) < 150e3 - 25e3 * 1.1
    assert centre.any() and np.isnan(out2.sit.values[centre]).all()


def test_regrid_cf_metadata(cs2smos):
    import cf_xarray  # noqa: F401

    out = regrid_to_grid(cs2smos, SMALL, variables=("sit",), land_mask=False)
    assert out.sit.attrs["grid_mapping"] == "polar_stereographic"
    assert out.sit.attrs["units"] == "m" and out.sit.attrs["standard_name"] == "sea_ice_thickness"
    assert out.polar_stereographic.attrs["grid_mapping_name"] == "polar_stereographic"
    assert out.cf["projection_x_coordinate"].name == "x" and out.cf["latitude"].name == "latitude"
    assert out.sit.dtype == np.float32 and "time" in out.coords
    assert not out.land_mask.values.any()


def test_regrid_topaz4_to_central_is_plausible():
    ds = read_topaz4(fp.TOPAZ_25KM)
    out = regrid_to_grid(ds, CENTRAL)
    ocean = ~CENTRAL.land_mask()
    sit, sic = out.sit.values, out.sic.values
    assert 0.5 < np.nanmean(sit[ocean]) < 3.0
    assert np.isfinite(sit[ocean]).mean() > 0.9
    assert np.nanmin(sit) >= 0 and np.nanmax(sit) <= np.nanmax(ds.sit.values) + 1e-6
    assert 0 <= np.nanmin(sic) and np.nanmax(sic) <= 1
    assert out.attrs["source_product"] == "TOPAZ4" and out.attrs["region"] == "central"
    assert str(out.time.values)[:10] == "2010-01-01"
    # The coarser 128 x 128 grid gives a consistent picture.
    out128 = regrid_to_grid(read_topaz4(fp.TOPAZ_128), CENTRAL, variables="sit", method="gauss")
    both = np.isfinite(sit) & np.isfinite(out128.sit.values)
    assert abs(np.mean(sit[both]) - np.mean(out128.sit.values[both])) < 0.15


def test_regrid_source_land_does_not_leak():
    ds = read_topaz4(fp.TOPAZ_25KM)
    poisoned = ds.copy()
    poisoned["sit"] = ds.sit.where(ds["mask"] == 1, 1e6)  # land values would show up if they leaked
    for method in ("bilinear", "nearest", "mean", "gauss"):
        out = regrid_to_grid(poisoned, SMALL, variables="sit", method=method)
        assert np.nanmax(out.sit.values) < 10, method


def test_regrid_osisaf_conc_and_drift(tmp_path):
    conc = read_osisaf_conc(fp.write_osisaf_conc(tmp_path))
    out = regrid_to_grid(conc, SMALL, method="mean")
    assert set(out.data_vars) == {"sic", "land_mask", "polar_stereographic"}
    assert out.attrs["radius_of_influence_km"] == 10.0 and out.attrs["effective_resolution_km"] == 30.0
    lon, lat = SMALL.lonlat()
    truth = fp.smooth_concentration(lon.astype(float), lat.astype(float))
    assert np.nanmax(np.abs(out.sic.values - truth)) < 0.02
    a, d = 0.004, -0.001
    drift = read_osisaf_drift(fp.write_osisaf_drift(tmp_path, velocity=lambda x, y: (a * x, d * y)))
    dout = regrid_to_grid(drift, CENTRAL, method="nearest", land_mask=False)
    assert set(dout.data_vars) >= {"divergence", "shear"}
    div = dout.divergence.values
    assert np.isfinite(div).mean() > 0.3
    np.testing.assert_allclose(div[np.isfinite(div)], a + d, rtol=1e-4)
    assert dout.attrs["effective_resolution_km"] == 125.0 and dout.attrs["radius_of_influence_km"] == 62.5


def test_regrid_errors(cs2smos):
    with pytest.raises(SitsrInputError, match=r"unknown regridding method 'cubic'"):
        regrid_to_grid(cs2smos, SMALL, method="cubic")
    with pytest.raises(SitsrInputError, match=r"variable\(s\) divergence not in the source dataset \(CS2SMOS\); "
                                              r"variables: sit, sit_ice, sic"):
        regrid_to_grid(cs2smos, SMALL, variables=("sit", "divergence"))
    sh = read_osisaf_drift(fp.OSI_DRIFT_SH)
    with pytest.raises(SitsrDataError, match=r"osisaf_sh_drift.*OSI-405 grid does not reach the central window"):
        regrid_to_grid(sh, CENTRAL)


def test_regrid_keeps_leading_time_dim(cs2smos):
    two = xr.concat([cs2smos.sit, cs2smos.sit * 2], dim="time").to_dataset(name="sit")
    two.attrs = cs2smos.attrs
    out = regrid_to_grid(two, SMALL, variables="sit", land_mask=False)
    assert out.sit.dims == ("time", "y", "x")
    np.testing.assert_allclose(out.sit.values[1], 2 * out.sit.values[0], rtol=1e-6, equal_nan=True)


def test_regrid_accuracy_without_land(tmp_path):
    """Away from land, bilinear reproduces a smooth field to the curvature error (~1e-4 m)."""
    src = read_cs2smos(fp.write_cs2smos(tmp_path, with_land=False, packed=False))
    lon, lat = SMALL.lonlat()
    truth = fp.smooth_thickness(lon.astype(float), lat.astype(float))
    limits = {"bilinear": 1e-3, "gauss": 0.01, "mean": 0.03, "nearest": 0.03}
    for method, limit in limits.items():
        out = regrid_to_grid(src, SMALL, variables="sit_ice", method=method, land_mask=False,
                             fill_within_radius=False)
        err = np.abs(out.sit_ice.values - truth)
        assert np.isfinite(err).all(), method
        assert err.max() < limit, (method, err.max())


def test_regridded_output_passes_cfchecks(cs2smos, tmp_path, cfcheck):
    out = regrid_to_grid(cs2smos, SMALL)
    path = tmp_path / "regridded.nc"
    out.to_netcdf(path)
    errors, warns, text = cfcheck(path)
    assert errors == 0 and warns == 0, text[-2000:]
