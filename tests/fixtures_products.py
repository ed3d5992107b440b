"""Builders of small, exact-format product files, written at test time (never committed).

Layouts follow the real products (variable names, dims, dtypes, packing, attributes):

* CS2SMOS L4 weekly thickness (no real sample available). Names and dims
  ``analysis_sea_ice_thickness``, ``analysis_sea_ice_thickness_unc``, ``sea_ice_concentration`` (%),
  ``lat``, ``lon``, ``xc``, ``yc``, ``time``, ``time_bnds``, ``Lambert_Azimuthal_Grid`` are those read
  by public consumers of the product (e.g. NERSC's enkf-c ``reader_cs2smos.c`` reads
  ``(time, yc, xc)`` integers with ``scale_factor``/``_FillValue``; the Copernicus catalogue lists the
  same variable set). The grid is the real EASE2-North 25 km grid (EPSG:6931, 432 x 432, edges
  +-5387500 m, ``yc`` decreasing); the builders write a window of it. Global attributes are
  representative, not byte-exact.
* OSI-401 sea-ice concentration (the real samples are truncated): NH polar stereographic 10 km grid
  (760 x 1120, ``xc`` -3845..3745 km, ``yc`` 5845..-5345 km), ``ice_conc`` int32 % with
  ``scale_factor`` 0.01 and ``_FillValue`` -32767, ``status_flag``, ``total_uncertainty``; global
  attributes in the style of the real OSI-405 sample (``product_id``...).
* OSI-405 drift: same variables and attributes as ``osisaf_sh_drift_lr_20160913-20160915.nc``, on a
  chosen 62.5 km NH window, with a prescribed velocity field.
* TOPAZ4 init: rewritten from the real sample (group ``/data``, float64 without attributes,
  default-fill land), optionally with modified thickness.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pyproj

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"  # checked by the conftest fixture `samples`
TOPAZ_25KM = SAMPLES / "topaz4_nh25km_20100101_init.nc"
TOPAZ_128 = SAMPLES / "topaz4_nh128x128_20100101_init.nc"
OSI_DRIFT_SH = SAMPLES / "osisaf_sh_drift_lr_20160913-20160915.nc"

EPOCH_1978 = pd.Timestamp("1978-01-01")
EASE2_PROJ4 = "+proj=laea +lon_0=0 +datum=WGS84 +ellps=WGS84 +lat_0=90.0"
OSI_NH_PROJ4 = "+proj=stere +a=6378273 +b=6356889.44891 +lat_0=90 +lat_ts=70 +lon_0=-45"
MODEL_PROJ4 = "+proj=stere +a=6378273 +b=6356889.449 +lat_0=90 +lat_ts=60 +lon_0=-45 +units=m +no_defs"

#: Default windows (row slice, column slice) of the full product grids: they cover the "central"
#: and "small" regions of the neXtSIM grid with a margin, and stay small.
CS2SMOS_WINDOW = (slice(150, 250), slice(150, 250))
OSI_CONC_WINDOW = (slice(480, 700), slice(200, 420))


def smooth_thickness(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """A smooth positive field (m) defined on the Earth (via model-projection coordinates)."""
    tr = pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS.from_proj4(MODEL_PROJ4), always_xy=True)
    x, y = tr.transform(lon, lat)
    return 2.0 + 0.8 * np.sin(x / 700e3) * np.cos(y / 500e3) + 0.3 * (y / 2e6)


def smooth_concentration(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """A smooth 0.3-1 concentration field."""
    return np.clip(0.65 + 0.35 * np.cos(np.radians(lon)) * np.sin(np.radians(3 * (lat - 60))), 0.3, 1.0)


def land_on(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Natural Earth 50 m land (the model grid's land geometry) at lon/lat points."""
    import shapely

    from sitsr_core.grid import _land_geometry

    tr = pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS.from_proj4(MODEL_PROJ4), always_xy=True)
    x, y = tr.transform(lon, lat)
    return shapely.contains_xy(_land_geometry(), x, y)


def _lonlat(proj4: str, x_m: np.ndarray, y_m: np.ndarray):
    tr = pyproj.Transformer.from_crs(pyproj.CRS.from_proj4(proj4), "EPSG:4326", always_xy=True)
    X, Y = np.meshgrid(x_m, y_m)
    lon, lat = tr.transform(X, Y)
    return lon, lat


def _time_vars(nc, start: pd.Timestamp, end: pd.Timestamp, centre: pd.Timestamp, comment: str | None = None):
    nc.createDimension("time", 1)
    nc.createDimension("nv", 2)
    t = nc.createVariable("time", "f8", ("time",))
    t.setncatts({"axis": "T", "long_name": "reference time of product", "standard_name": "time",
                 "units": "seconds since 1978-01-01 00:00:00", "calendar": "standard", "bounds": "time_bnds"})
    if comment:
        t.comment = comment
    t[:] = [(centre - EPOCH_1978).total_seconds()]
    tb = nc.createVariable("time_bnds", "f8", ("time", "nv"))
    tb.units = "seconds since 1978-01-01 00:00:00"
    tb[:] = [[(start - EPOCH_1978).total_seconds(), (end - EPOCH_1978).total_seconds()]]


def _xy_vars(nc, xc_km: np.ndarray, yc_km: np.ndarray, lon, lat, dtype="f8"):
    nc.createDimension("xc", xc_km.size)
    nc.createDimension("yc", yc_km.size)
    for name, vals, axis, what in (("xc", xc_km, "X", "x"), ("yc", yc_km, "Y", "y")):
        v = nc.createVariable(name, dtype, (name,))
        v.setncatts({"axis": axis, "units": "km",
                     "long_name": f"{what} coordinate of projection ({'eastings' if what == 'x' else 'northings'})",
                     "standard_name": f"projection_{what}_coordinate"})
        v[:] = vals
    la = nc.createVariable("lat", "f4", ("yc", "xc"))
    la.setncatts({"long_name": "latitude coordinate", "standard_name": "latitude", "units": "degrees_north"})
    la[:] = lat
    lo = nc.createVariable("lon", "f4", ("yc", "xc"))
    lo.setncatts({"long_name": "longitude coordinate", "standard_name": "longitude", "units": "degrees_east"})
    lo[:] = lon


# --------------------------------------------------------------------------------------------------
# CS2SMOS
# --------------------------------------------------------------------------------------------------

def cs2smos_name(start="2020-11-16") -> str:
    s = pd.Timestamp(start)
    e = s + pd.Timedelta(days=6)
    return f"W_XX-ESA,SMOS_CS2,NH_25KM_EASE2_{s:%Y%m%d}_{e:%Y%m%d}_r_v206_01_l4sit.nc"


def write_cs2smos(folder: Path, *, start="2020-11-16", window=CS2SMOS_WINDOW, thickness=smooth_thickness,
                  concentration=smooth_concentration, packed: bool = True, thickness_units: str = "m",
                  thickness_factor: float = 1.0, drop: tuple[str, ...] = (), all_missing: bool = False,
                  with_land: bool = True) -> Path:
    """Write a CS2SMOS L4 weekly file (a window of the real EASE2-North 25 km grid) into ``folder``.

    ``thickness``/``concentration`` are callables ``(lon, lat) -> values`` (m per ice area; 0-1).
    ``packed``: int16 + ``scale_factor`` (as versions read by enkf-c) or float32 with ``_FillValue``.
    ``thickness_units``/``thickness_factor`` let tests write cm. ``drop``: variables to leave out.
    Returns the file path.
    """
    folder = Path(folder)
    path = folder / cs2smos_name(start)
    n = 432
    edge = 5387500.0
    x_full = -edge + (np.arange(n) + 0.5) * 25000.0
    y_full = x_full[::-1]
    rows, cols = window
    x_m, y_m = x_full[cols], y_full[rows]
    lon, lat = _lonlat(EASE2_PROJ4, x_m, y_m)
    sic = concentration(lon, lat) * 100.0
    sit = thickness(lon, lat) * thickness_factor
    unc = 0.1 * thickness(lon, lat) * thickness_factor + 0.05 * thickness_factor
    land = land_on(lon, lat) if with_land else np.zeros(lon.shape, bool)
    sic[land] = np.nan
    sit[land] = np.nan
    unc[land] = np.nan
    if all_missing:
        sit[:] = np.nan
        unc[:] = np.nan
    s = pd.Timestamp(start)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncatts({
            "Conventions": "CF-1.6", "title": "Weekly Arctic sea-ice thickness from merged CryoSat-2 and SMOS data",
            "product_id": "CS2SMOS_L4", "platform": "CryoSat-2, SMOS", "sensor": "SIRAL, MIRAS",
            "institution": "Alfred Wegener Institute (AWI); University of Hamburg", "grid": "EASE2-North 25 km",
            "product_version": "2.06", "time_coverage_start": f"{s:%Y-%m-%dT00:00:00Z}",
            "time_coverage_end": f"{s + pd.Timedelta(days=6):%Y-%m-%dT23:59:59Z}",
            "comment": "test fixture (sitsr): layout of the real product, synthetic values",
        })
        gm = nc.createVariable("Lambert_Azimuthal_Grid", "i4")
        gm.setncatts({"grid_mapping_name": "lambert_azimuthal_equal_area", "longitude_of_projection_origin": 0.0,
                      "latitude_of_projection_origin": 90.0, "false_easting": 0.0, "false_northing": 0.0,
                      "semi_major_axis": 6378137.0, "inverse_flattening": 298.257223563,
                      "proj4_string": EASE2_PROJ4})
        _time_vars(nc, s, s + pd.Timedelta(days=7), s + pd.Timedelta(days=3, hours=12))
        _xy_vars(nc, x_m / 1000.0, y_m / 1000.0, lon, lat)

        def field(name, values, units, long_name, standard_name=None):
            if name in drop:
                return
            if packed:
                v = nc.createVariable(name, "i2", ("time", "yc", "xc"), fill_value=np.int16(-32767), zlib=True)
                v.scale_factor = np.float32(0.01)
                v.add_offset = np.float32(0.0)
            else:
                v = nc.createVariable(name, "f4", ("time", "yc", "xc"), fill_value=np.float32(np.nan), zlib=True)
            v.setncatts({"units": units, "long_name": long_name, "grid_mapping": "Lambert_Azimuthal_Grid",
                         "coordinates": "lat lon"})
            if standard_name:
                v.standard_name = standard_name
            ok = np.isfinite(values)
            v[0] = np.ma.array(np.where(ok, values, 0.0), mask=~ok)

        field("analysis_sea_ice_thickness", sit, thickness_units, "CS2SMOS merged sea ice thickness",
              "sea_ice_thickness")
        field("analysis_sea_ice_thickness_unc", unc, thickness_units, "CS2SMOS merged sea ice thickness uncertainty")
        field("background_sea_ice_thickness", sit, thickness_units, "background sea ice thickness")
        field("sea_ice_concentration", sic, "%", "sea ice concentration", "sea_ice_area_fraction")
        if "sea_ice_type" not in drop:
            st = nc.createVariable("sea_ice_type", "i1", ("time", "yc", "xc"), fill_value=np.int8(-1))
            st.setncatts({"long_name": "sea ice type", "flag_values": np.array([1, 2, 3, 4], np.int8),
                          "flag_meanings": "open_water first_year_ice multi_year_ice ambiguous"})
            st[0] = np.where(land, -1, np.where(sic > 15, 3, 1)).astype(np.int8)
    return path


# --------------------------------------------------------------------------------------------------
# OSI SAF
# --------------------------------------------------------------------------------------------------

_OSI_GLOBAL = {
    "northernmost_latitude": 90.0, "southernmost_latitude": 30.98, "easternmost_longitude": 180.0,
    "westernmost_longitude": -180.0, "area": "Northern Hemisphere", "project_name": "EUMETSAT OSI SAF",
    "institution": "EUMETSAT OSI SAF", "PI_name": "OSI SAF", "contact": "osisaf-manager@met.no",
    "distribution_statement": "Free", "copyright_statement": "Copyright EUMETSAT", "Conventions": "CF-1.4",
    "netcdf_version": "3.6.3",
}


def _grid_mapping_stere(nc, proj4: str, lat0: float, lat_ts: float, lon0: float):
    gm = nc.createVariable("Polar_Stereographic_Grid", "i4")
    gm.setncatts({"grid_mapping_name": "polar_stereographic", "straight_vertical_longitude_from_pole": lon0,
                  "latitude_of_projection_origin": lat0, "standard_parallel": lat_ts, "false_easting": 0.0,
                  "false_northing": 0.0, "semi_major_axis": 6378273.0, "semi_minor_axis": 6356889.44891,
                  "proj4_string": proj4})


def write_osisaf_conc(folder: Path, *, date="2020-11-20", window=OSI_CONC_WINDOW,
                      concentration=smooth_concentration, drop: tuple[str, ...] = ()) -> Path:
    """Write an OSI-401 NH 10 km concentration file (a window of the real 760 x 1120 grid)."""
    folder = Path(folder)
    d = pd.Timestamp(date)
    path = folder / f"ice_conc_nh_polstere-100_multi_{d:%Y%m%d}1200.nc"
    xc = -3845.0 + 10.0 * np.arange(760)
    yc = 5845.0 - 10.0 * np.arange(1120)
    rows, cols = window
    xk, yk = xc[cols], yc[rows]
    lon, lat = _lonlat(OSI_NH_PROJ4, xk * 1000, yk * 1000)
    land = land_on(lon, lat)
    conc = np.round(concentration(lon, lat) * 100.0, 2)
    flag = np.where(land, 1, 0).astype(np.int8)
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.setncatts({"title": "Daily Sea Ice Concentration Analysis from OSI SAF EUMETSAT", "product_id": "OSI-401-b",
                      "product_name": "osi_saf_ice_conc", "product_status": "operational",
                      "start_date": f"{d - pd.Timedelta(hours=12):%Y-%m-%d %H:%M:%S}",
                      "stop_date": f"{d + pd.Timedelta(hours=36):%Y-%m-%d %H:%M:%S}", "product_version": "1.4",
                      **_OSI_GLOBAL})
        _grid_mapping_stere(nc, OSI_NH_PROJ4, 90.0, 70.0, -45.0)
        _time_vars(nc, d, d + pd.Timedelta(days=1), d + pd.Timedelta(hours=12))
        _xy_vars(nc, xk, yk, lon, lat)
        if "ice_conc" not in drop:
            v = nc.createVariable("ice_conc", "i4", ("time", "yc", "xc"), fill_value=np.int32(-32767))
            v.setncatts({"long_name": "concentration of sea ice", "standard_name": "sea_ice_area_fraction",
                         "units": "%", "valid_min": np.int32(0), "valid_max": np.int32(10000),
                         "grid_mapping": "Polar_Stereographic_Grid", "coordinates": "lat lon",
                         "scale_factor": np.float32(0.01)})
            v[0] = np.ma.masked_where(land, conc)
        if "total_uncertainty" not in drop:
            u = nc.createVariable("total_uncertainty", "i4", ("time", "yc", "xc"), fill_value=np.int32(-32767))
            u.setncatts({"long_name": "total uncertainty (one standard deviation) of concentration of sea ice",
                         "units": "%", "grid_mapping": "Polar_Stereographic_Grid", "coordinates": "lat lon",
                         "scale_factor": np.float32(0.01)})
            u[0] = np.ma.masked_where(land, np.full(lon.shape, 5.0))
        s = nc.createVariable("status_flag", "i1", ("time", "yc", "xc"))
        s.setncatts({"long_name": "status flag for sea ice concentration retrieval",
                     "standard_name": "sea_ice_area_fraction status_flag",
                     "flag_values": np.array([0, 1, 2, 4, 8], np.int8),
                     "flag_meanings": "nominal_quality land lake open_water_filtered missing_input_data",
                     "grid_mapping": "Polar_Stereographic_Grid", "coordinates": "lat lon"})
        s[0] = flag
    return path


def write_osisaf_drift(folder: Path, *, velocity, rows=slice(70, 110), cols=slice(30, 70),
                       date="2020-11-20", flags=None) -> Path:
    """Write an OSI-405 NH 62.5 km drift file with velocity ``velocity(x_km, y_km) -> (u, v)`` in km/day.

    Grid: ``xc = -3781.25 + 62.5 i``, ``yc = 5281.25 - 62.5 j`` (decreasing), a window of it.
    ``flags``: optional (ny, nx) int8 status flags (default 30 everywhere, 1 on land); vectors with
    flag < 20 are written as fill.
    """
    folder = Path(folder)
    d1 = pd.Timestamp(date) + pd.Timedelta(hours=12)
    d0 = d1 - pd.Timedelta(hours=48)
    path = folder / f"ice_drift_nh_polstere-625_multi-oi_{d0:%Y%m%d%H%M}-{d1:%Y%m%d%H%M}.nc"
    xc = (-3781.25 + 62.5 * np.arange(121))[cols]
    yc = (5281.25 - 62.5 * np.arange(177))[rows]
    lon, lat = _lonlat(OSI_NH_PROJ4, xc * 1000, yc * 1000)
    X, Y = np.meshgrid(xc, yc)
    u, v = velocity(X, Y)
    if flags is None:
        flags = np.where(land_on(lon, lat), 1, 30).astype(np.int8)
    bad = flags < 20
    with netCDF4.Dataset(OSI_DRIFT_SH) as ref, netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.setncatts({k: ref.getncattr(k) for k in ref.ncattrs()})
        nc.setncatts({"area": "Northern Hemisphere", "start_date": f"{d0:%Y-%m-%d %H:%M:%S}",
                      "stop_date": f"{d1:%Y-%m-%d %H:%M:%S}"})
        _grid_mapping_stere(nc, OSI_NH_PROJ4, 90.0, 70.0, -45.0)
        _time_vars(nc, d0, d1, d1, comment=ref["time"].comment)
        _xy_vars(nc, xc, yc, lon, lat)
        for name, dtype, values in (("dt0", "i4", np.zeros(X.shape)), ("lon1", "f4", lon), ("lat1", "f4", lat),
                                    ("dt1", "i4", np.zeros(X.shape)), ("dX", "f4", u * 2.0), ("dY", "f4", v * 2.0)):
            src = ref[name]
            var = nc.createVariable(name, dtype, ("time", "yc", "xc"), fill_value=src.getncattr("_FillValue"))
            var.setncatts({k: src.getncattr(k) for k in src.ncattrs() if k != "_FillValue"})
            var[0] = np.ma.masked_where(bad, values)
        src = ref["status_flag"]
        var = nc.createVariable("status_flag", "i1", ("time", "yc", "xc"))
        var.setncatts({k: src.getncattr(k) for k in src.ncattrs()})
        var[0] = flags
    return path


# --------------------------------------------------------------------------------------------------
# TOPAZ4
# --------------------------------------------------------------------------------------------------

def write_topaz4(path: Path, *, source: Path = TOPAZ_25KM, hice_factor: float = 1.0, hice_units: str | None = None,
                 drop: tuple[str, ...] = (), all_land: bool = False) -> Path:
    """Rewrite a real TOPAZ4 init file (group /data, float64, default-fill land) with modifications.

    ``hice_factor`` scales the ocean values of ``hice`` (100 -> centimetres); ``hice_units`` adds a
    units attribute (the real files have none); ``drop`` leaves variables out; ``all_land`` fills
    every cell.
    """
    path = Path(path)
    fill = netCDF4.default_fillvals["f8"]
    with netCDF4.Dataset(source) as src, netCDF4.Dataset(path, "w", format="NETCDF4") as dst:
        for gname in ("structure", "metadata"):
            g = dst.createGroup(gname)
            g.setncatts({k: src[gname].getncattr(k) for k in src[gname].ncattrs()})
        tg = dst["metadata"].createGroup("time")
        t = tg.createVariable("time", "i8")
        t[...] = src["metadata"]["time"]["time"][...]
        f = tg.createVariable("formatted", str)
        f[...] = src["metadata"]["time"]["formatted"][...]
        dst["metadata"].createGroup("configuration")
        sd, dd = src["data"], dst.createGroup("data")
        for name, dim in sd.dimensions.items():
            dd.createDimension(name, len(dim))
        for name, var in sd.variables.items():
            if name in drop:
                continue
            out = dd.createVariable(name, var.dtype, var.dimensions)
            var.set_auto_mask(False)
            vals = np.array(var[...])
            if name == "hice":
                ocean = vals < 1e30
                vals = np.where(ocean, vals * hice_factor, vals)
                if hice_units:
                    out.units = hice_units
            if all_land and name not in ("longitude", "latitude", "coords", "grid_azimuth"):
                vals = np.full_like(vals, fill)
            out[...] = vals
    return path
