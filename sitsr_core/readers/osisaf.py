"""EUMETSAT OSI SAF sea-ice products: concentration (OSI-401) and low-resolution drift (OSI-405).

OSI-401 sea-ice concentration
    ``ice_conc_{nh,sh}_polstere-100_multi_YYYYMMDD1200.nc``: polar stereographic 10 km grid
    (NH: 760 x 1120, ``+proj=stere +a=6378273 +b=6356889.44891 +lat_0=90 +lat_ts=70 +lon_0=-45``),
    dims ``(time, yc, xc)`` (``xc``/``yc`` in km, ``yc`` decreasing), ``ice_conc`` in % (packed
    integers, ``scale_factor`` 0.01), ``status_flag``, ``total_uncertainty`` (%), time in seconds
    since 1978-01-01. Effective resolution: the 10 km grid over-samples passive-microwave footprints
    (SSMIS 19/37 GHz), so about 25-30 km is resolved; we record 30 km.

OSI-405 low-resolution sea-ice drift
    ``ice_drift_{nh,sh}_polstere-625_multi-oi_YYYYMMDD1200-YYYYMMDD1200.nc``: polar stereographic
    62.5 km grid, ``dX``/``dY`` displacement (km, along the grid axes) over ~48 h
    (``time_bnds``; ``time`` is the *end* of the motion; ``dt0``/``dt1`` per-vector offsets in s),
    ``status_flag`` (30 nominal, 22 interpolated, 20/21 smaller window/corrected, < 20 no vector).
    Divergence and shear are finite differences over two cells, so the deformation resolves about
    125 km (recorded as its effective resolution).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import SitsrDataError
from ._common import (
    PRODUCT_LABELS,
    _inventory,
    check_not_all_nan,
    concentration_to_fraction,
    coord_to_m,
    finish,
    fresh,
    lonlat_from_xy,
    open_netcdf,
    require_variables,
    sniff_product,
    squeeze_time,
)

CONC_PRODUCT = "OSI-401"
DRIFT_PRODUCT = "OSI-405"
CONC_EFFECTIVE_KM = 30.0
DRIFT_EFFECTIVE_KM = 62.5
DEFORMATION_EFFECTIVE_KM = 125.0
#: Keep vectors with ``status_flag >= NOMINAL_FLAG`` by default (nominal quality only).
NOMINAL_FLAG = 30
GRID_MAPPING = "Polar_Stereographic_Grid"


def _check_kind(path, want: str, label: str, needs: str) -> None:
    kind = sniff_product(path)
    if kind != want:
        raise SitsrDataError(f"{path}: expected {label} ({needs}); found {PRODUCT_LABELS[kind]} ({_inventory(path)})")


def _projection(raw: xr.Dataset, path) -> str:
    gm = raw.get(GRID_MAPPING)
    if gm is None:
        names = [v for v in raw.variables if "grid_mapping_name" in raw[v].attrs]
        gm = raw[names[0]] if names else None
    if gm is None:
        raise SitsrDataError(
            f"{path}: no grid-mapping variable ({GRID_MAPPING}); variables: {', '.join(map(str, raw.variables))}"
        )
    if "proj4_string" in gm.attrs:
        return str(gm.attrs["proj4_string"])
    import pyproj

    try:
        return pyproj.CRS.from_cf(dict(gm.attrs)).to_proj4()
    except Exception as exc:
        raise SitsrDataError(f"{path}: cannot build a projection from {gm.name} attributes: {exc}") from exc


def _flag_values(da: xr.DataArray, meaning: str) -> list[int]:
    """Values of a CF flag variable whose meaning contains ``meaning`` (e.g. "land")."""
    vals = np.atleast_1d(da.attrs.get("flag_values", []))
    means = str(da.attrs.get("flag_meanings", "")).split()
    return [int(v) for v, m in zip(vals, means) if meaning in m.lower().split("_")]


def _grid_coords(raw: xr.Dataset, path, proj4: str):
    x = coord_to_m(raw["x"], path, "xc")
    y = coord_to_m(raw["y"], path, "yc")
    if "lat" in raw and "lon" in raw:
        lat = raw["lat"].values.astype(np.float32)
        lon = raw["lon"].values.astype(np.float32)
    else:
        lon, lat = lonlat_from_xy(x, y, proj4)
    coords = {
        "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}),
        "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}),
        "latitude": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "longitude": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
    }
    dx = float(np.median(np.abs(np.diff(x)))) / 1000.0 if x.size > 1 else np.nan
    return coords, x, y, dx


def _rename_xy(raw: xr.Dataset) -> xr.Dataset:
    return raw.rename({d: n for d, n in (("yc", "y"), ("xc", "x")) if d in raw.dims})


def read_osisaf_conc(path: str | os.PathLike) -> xr.Dataset:
    """Read an OSI SAF sea-ice concentration file (OSI-401, polar stereographic 10 km).

    Returns
    -------
    xarray.Dataset
        dims ``(y, x)`` in the product's order (``y`` decreasing), 1-D ``x``/``y`` (m), 2-D
        ``latitude``/``longitude``, scalar ``time``; ``sic`` (0-1, NaN on land/missing),
        ``sic_uncertainty`` (0-1, when ``total_uncertainty`` is present), ``status_flag``.
        ``attrs["crs_proj4"]`` from the ``Polar_Stereographic_Grid`` variable.
    """
    path = os.fspath(path)
    _check_kind(path, "osisaf_conc", "an OSI SAF sea-ice concentration file (OSI-401)", "variable ice_conc on xc/yc")
    raw = _rename_xy(open_netcdf(path))
    require_variables(raw, ["ice_conc", "x", "y"], path, CONC_PRODUCT)
    conversions: list[str] = ["ice_conc: packed integers/_FillValue decoded by CF rules"]
    conc = raw["ice_conc"].astype(np.float64)
    if "status_flag" in raw:
        land = _flag_values(raw["status_flag"], "land")
        if land:
            conc = conc.where(~raw["status_flag"].isin(land))
            conversions.append(f"status_flag in {land} (land) -> NaN")
    sic = concentration_to_fraction(conc, path, "ice_conc", conversions)
    check_not_all_nan(sic, path, "ice_conc")
    if float(np.nanmax(sic.values)) > 1.0 + 1e-6:
        conversions.append(f"sic clipped to 1 (max was {float(np.nanmax(sic.values)):.3f})")
    sic = sic.clip(0.0, 1.0)
    proj4 = _projection(raw, path)
    coords, x, y, dx = _grid_coords(raw, path, proj4)
    data = {
        "sic": fresh(
            sic, units="1", standard_name="sea_ice_area_fraction", long_name="sea-ice concentration",
            source_variable="ice_conc"),
    }
    if "total_uncertainty" in raw:
        unc = concentration_to_fraction(
            raw["total_uncertainty"].astype(np.float64), path, "total_uncertainty", conversions)
        data["sic_uncertainty"] = fresh(
            unc.where(np.isfinite(sic)), units="1", long_name="total uncertainty of sea-ice concentration",
            source_variable="total_uncertainty")
    if "status_flag" in raw:
        data["status_flag"] = raw["status_flag"]
    ds = xr.Dataset({k: v.drop_vars([c for c in v.coords if c != "time"]) for k, v in data.items()}, coords=coords)
    ds = squeeze_time(ds)
    return finish(
        ds, product=CONC_PRODUCT, path=path, grid_spacing_km=dx, effective_resolution_km=CONC_EFFECTIVE_KM,
        conversions=conversions, crs_proj4=proj4,
        resolution_note=f"{dx:g} km grid; passive-microwave footprints resolve ~25-30 km",
    )


def drift_deformation(u: np.ndarray, v: np.ndarray, x_km: np.ndarray,
                      y_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Divergence and shear (1/day) from velocities ``u``, ``v`` (km/day, along grid x/y), shape (ny, nx).

    Centred differences over two cells (``numpy.gradient`` with the signed coordinates, so a
    decreasing ``y`` is handled; one-sided at the array edges). A cell gets a value only if its own
    vector and all the neighbours the stencil uses are valid (NaN propagates).

    ``divergence = du/dx + dv/dy``; ``shear = sqrt((du/dx - dv/dy)**2 + (du/dy + dv/dx)**2)``.
    Distances are on the projection plane (map-scale distortion, a few % at 60-90 deg, is ignored).
    """
    u = np.array(u, dtype=np.float64)
    v = np.array(v, dtype=np.float64)
    bad = ~(np.isfinite(u) & np.isfinite(v))
    u[bad] = np.nan
    v[bad] = np.nan
    dudy, dudx = np.gradient(u, np.asarray(y_km, float), np.asarray(x_km, float))
    dvdy, dvdx = np.gradient(v, np.asarray(y_km, float), np.asarray(x_km, float))
    div = dudx + dvdy
    shear = np.sqrt((dudx - dvdy) ** 2 + (dudy + dvdx) ** 2)
    div[bad] = np.nan
    shear[bad] = np.nan
    return div, shear


def read_osisaf_drift(path: str | os.PathLike, min_status_flag: int = NOMINAL_FLAG) -> xr.Dataset:
    """Read an OSI SAF low-resolution drift file (OSI-405) and derive divergence and shear.

    Parameters
    ----------
    min_status_flag : int
        Vectors with ``status_flag < min_status_flag`` (or NaN) are left out of ``u``, ``v``,
        ``divergence`` and ``shear``. The default 30 keeps nominal-quality vectors only and drops
        the interpolated ones (22) and those from a smaller window or corrected by neighbours
        (20, 21); pass 20 to keep those too.

    Returns
    -------
    xarray.Dataset
        dims ``(y, x)`` in the product's order (``y`` decreasing); 1-D ``x``/``y`` (m), 2-D
        ``latitude``/``longitude``, scalar ``time`` (end of the motion), attrs
        ``time_coverage_start``/``time_coverage_end``. Variables: ``dX``, ``dY`` (km, every valid
        vector, as in the file), ``status_flag``, ``u``, ``v`` (km/day, kept vectors),
        ``divergence``, ``shear`` (day-1). attrs ``n_valid_vectors``, ``n_kept_vectors``,
        ``n_deformation_cells``, ``min_status_flag``.
    """
    path = os.fspath(path)
    _check_kind(path, "osisaf_drift", "an OSI SAF low-resolution drift file (OSI-405)", "variables dX, dY on xc/yc")
    raw = _rename_xy(open_netcdf(path))
    require_variables(raw, ["dX", "dY", "status_flag", "x", "y"], path, DRIFT_PRODUCT)
    conversions: list[str] = ["dX, dY: _FillValue -> NaN"]
    for name in ("dX", "dY"):
        units = str(raw[name].attrs.get("units", "km")).lower()
        if units not in ("km", "kilometers", "kilometres"):
            raise SitsrDataError(f"{path}: {name} has units {raw[name].attrs.get('units')!r}; expected km")
    dX = raw["dX"].astype(np.float64)
    dY = raw["dY"].astype(np.float64)
    check_not_all_nan(dX, path, "dX")
    flag = raw["status_flag"]

    # Duration of each vector: (end + dt1) - (start + dt0).
    if "time_bnds" in raw:
        tb = np.asarray(raw["time_bnds"].values).reshape(-1, 2)[0]
        t0, t1 = pd.Timestamp(tb[0]), pd.Timestamp(tb[1])
    else:
        t1 = pd.Timestamp(np.asarray(raw["time"].values).ravel()[0])
        t0 = t1 - pd.Timedelta(hours=48)
        conversions.append("no time_bnds: 48 h motion assumed")
    base_s = (t1 - t0).total_seconds()
    dt0 = raw["dt0"].astype(np.float64).fillna(0.0) if "dt0" in raw else 0.0
    dt1 = raw["dt1"].astype(np.float64).fillna(0.0) if "dt1" in raw else 0.0
    days = (base_s + dt1 - dt0) / 86400.0
    keep = np.isfinite(dX) & np.isfinite(dY) & (flag >= min_status_flag)
    u = (dX / days).where(keep)
    v = (dY / days).where(keep)
    conversions.append(
        f"u, v = dX, dY / duration (time_bnds {base_s / 3600:g} h corrected by dt0/dt1) -> km/day, "
        f"only status_flag >= {min_status_flag}"
    )
    proj4 = _projection(raw, path)
    coords, x, y, dx = _grid_coords(raw, path, proj4)
    if min(x.size, y.size) < 2:
        raise SitsrDataError(f"{path}: drift grid of {y.size} x {x.size} vectors is too small to compute "
                             "divergence and shear (need at least 2 x 2)")
    squeeze = lambda a: np.asarray(a.values if hasattr(a, "values") else a).reshape(a.shape[-2:])  # noqa: E731
    div, shear = drift_deformation(squeeze(u), squeeze(v), x / 1000.0, y / 1000.0)
    conversions.append("divergence, shear: centred differences of u, v (km/day) over the 62.5 km grid -> day-1")

    time_dims = [d for d in dX.dims if d not in ("y", "x")]
    sel = {d: 0 for d in time_dims}
    data = {
        "dX": (("y", "x"), dX.isel(sel).values.astype(np.float32), {**raw["dX"].attrs, "units": "km"}),
        "dY": (("y", "x"), dY.isel(sel).values.astype(np.float32), {**raw["dY"].attrs, "units": "km"}),
        "status_flag": (("y", "x"), flag.isel(sel).values,
                        {k: v for k, v in flag.attrs.items() if k not in ("grid_mapping", "standard_name")}),
        "u": (("y", "x"), squeeze(u).astype(np.float32),
              {"long_name": "ice velocity along grid x", "units": "km day-1"}),
        "v": (("y", "x"), squeeze(v).astype(np.float32),
              {"long_name": "ice velocity along grid y", "units": "km day-1"}),
        "divergence": (("y", "x"), div.astype(np.float32), {
            "standard_name": "divergence_of_sea_ice_velocity", "long_name": "sea-ice divergence"}),
        "shear": (("y", "x"), shear.astype(np.float32), {"long_name": "sea-ice maximum shear rate"}),
    }
    for k in ("dX", "dY"):
        data[k][2].pop("_FillValue", None)
        data[k][2].pop("grid_mapping", None)
        data[k][2].pop("coordinates", None)
    ds = xr.Dataset(data, coords=coords)
    ds = ds.assign_coords(time=np.datetime64(t1.to_datetime64(), "ns"))
    n_valid = int(np.isfinite(dX.values).sum())
    n_keep = int(keep.values.sum())
    if n_keep == 0:
        raise SitsrDataError(
            f"{path}: no drift vector with status_flag >= {min_status_flag} ({n_valid} valid vectors)")
    return finish(
        ds, product=DRIFT_PRODUCT, path=path, grid_spacing_km=dx, effective_resolution_km=DEFORMATION_EFFECTIVE_KM,
        conversions=conversions, crs_proj4=proj4,
        time_coverage_start=str(t0), time_coverage_end=str(t1),
        n_valid_vectors=n_valid, n_kept_vectors=n_keep, n_deformation_cells=int(np.isfinite(div).sum()),
        min_status_flag=int(min_status_flag),
        resolution_note=(f"{dx:g} km drift grid (~{DRIFT_EFFECTIVE_KM:g} km); deformation from centred differences "
                         f"over two cells: ~{DEFORMATION_EFFECTIVE_KM:g} km"),
    )
