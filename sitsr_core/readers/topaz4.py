"""TOPAZ4 fields on the neXtSIM-DG initial-condition grids (``init_25km_NH.nc``, ``init_topaz128x128.nc``).

These files hold TOPAZ4 daily fields (the TOPAZ4 ocean/sea-ice model, about 12.5 km, 2010-01-01)
interpolated bilinearly onto a neXtSIM-DG grid:

* ``nh25km``: curvilinear Arctic grid, 121 x 154 cells about 25 km apart (17-36 km);
* ``nh128x128``: polar azimuthal-equidistant square, 128 x 128 cells about 34.5 km apart.

Effective resolution: the coarser of TOPAZ4's ~12.5 km and the grid spacing, i.e. about 25 km
(nh25km) or 35 km (nh128x128); the bilinear interpolation smooths a little more.

File layout: fields in group ``/data``, float64 without attributes (no units, no ``_FillValue``, no
projection metadata); land cells hold the netCDF default fill 9.969e36, which xarray does not mask;
``mask`` is 1 on ocean; ``hice`` is the grid-cell mean thickness (= cice x ice thickness), i.e. the
same *effective* thickness as neXtSIM ``sit``; ``cice`` is a 0-1 fraction. The date is taken from
``/metadata/time/formatted`` (the int64 ``/metadata/time/time`` disagrees with it by 10 days).
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
    check_netcdf_file,
    check_not_all_nan,
    concentration_to_fraction,
    finish,
    open_netcdf,
    require_variables,
    sniff_product,
    thickness_to_m,
)

PRODUCT = "TOPAZ4"
#: Native TOPAZ4 resolution (km) before interpolation onto the neXtSIM-DG grid.
TOPAZ4_NATIVE_KM = 12.5
#: Values above this are the netCDF default fill (9.97e36) used on land.
FILL_THRESHOLD = 1e30


def curvilinear_spacing_km(lat: np.ndarray, lon: np.ndarray) -> tuple[float, float]:
    """Median and 95th percentile of the great-circle distance between neighbouring cell centres (km).

    NaN when the grid has no pair of neighbours with finite coordinates (e.g. a single cell).
    """
    R = 6371.0
    la, lo = np.radians(lat), np.radians(lon)

    def dist(a1, o1, a2, o2):
        h = np.sin((a2 - a1) / 2) ** 2 + np.cos(a1) * np.cos(a2) * np.sin((o2 - o1) / 2) ** 2
        return 2 * R * np.arcsin(np.sqrt(np.clip(h, 0, 1)))

    d = np.concatenate([
        dist(la[:, :-1], lo[:, :-1], la[:, 1:], lo[:, 1:]).ravel(),
        dist(la[:-1], lo[:-1], la[1:], lo[1:]).ravel(),
    ])
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan")
    return float(np.median(d)), float(np.percentile(d, 95))


def _read_date(path) -> pd.Timestamp | None:
    import netCDF4

    try:
        with netCDF4.Dataset(path) as nc:
            grp = nc["metadata"]["time"]
            if "formatted" in grp.variables:
                txt = grp["formatted"][...]
                txt = "".join(np.atleast_1d(txt).astype(str)) if not isinstance(txt, str) else txt
                return pd.Timestamp(str(txt).strip().rstrip("Z"))
            if "formatted" in grp.ncattrs():
                return pd.Timestamp(str(grp.getncattr("formatted")).strip().rstrip("Z"))
    except (IndexError, KeyError, ValueError, TypeError):
        return None
    return None


def read_topaz4(path: str | os.PathLike) -> xr.Dataset:
    """Read a TOPAZ4 neXtSIM-DG initial-condition file (nh25km or nh128x128).

    Returns
    -------
    xarray.Dataset
        dims ``(y, x)``; ``sit`` (m, grid-cell mean = effective thickness, NaN on land), ``sic``
        (0-1, NaN on land), ``mask`` (uint8, 1 = ocean: ``mask == 1`` and neither field fill nor NaN); 2-D
        ``latitude``/``longitude`` coordinates; scalar ``time`` when the file states its date.
        ``attrs``: ``product="TOPAZ4"``, ``grid`` (``nh25km``, ``nh128x128`` or ``curvilinear``),
        ``grid_spacing_km`` (median neighbour distance), ``max_grid_spacing_km`` (95th percentile),
        ``effective_resolution_km``, ``n_ocean_cells``, ``n_fill_cells``, ``conversions``.

    Raises
    ------
    SitsrDataError
        Not a netCDF file, truncated, another product (names what it found), missing variables,
        thickness in implausible units, no valid value, or a grid whose spacing cannot be measured.
    """
    import netCDF4

    path = check_netcdf_file(path)
    with netCDF4.Dataset(path) as nc:
        has_data = "data" in nc.groups
    if not has_data:
        try:
            kind = sniff_product(path)
        except SitsrDataError:
            kind = None
        found = PRODUCT_LABELS[kind] if kind else "no group /data"
        raise SitsrDataError(
            f"{path}: expected a TOPAZ4 / neXtSIM-DG initial-condition file (group /data with hice, cice, "
            f"mask, latitude, longitude); found {found} ({_inventory(path)})"
        )
    raw = open_netcdf(path, group="data", mask_and_scale=False, decode_times=False)
    require_variables(raw, ["hice", "cice", "mask", "latitude", "longitude"], f"{path} (group /data)", PRODUCT)

    conversions: list[str] = []
    hice = raw["hice"].astype(np.float64)
    cice = raw["cice"].astype(np.float64)
    fill = (hice.values > FILL_THRESHOLD) | (cice.values > FILL_THRESHOLD) | ~np.isfinite(hice.values) \
        | ~np.isfinite(cice.values)
    ocean = (raw["mask"].values == 1) & ~fill
    conversions.append(
        f"land = mask==0 or netCDF default fill (> {FILL_THRESHOLD:g}) -> NaN ({int(fill.sum())} fill cells, "
        f"{int(((raw['mask'].values == 0) & ~fill).sum())} extra mask==0 cells)"
    )
    hice = hice.where(ocean)
    cice = cice.where(ocean)
    check_not_all_nan(hice, path, "hice")
    check_not_all_nan(cice, path, "cice")
    sit = thickness_to_m(hice, path, "hice", conversions)
    conversions.append("hice is the grid-cell mean (effective) thickness: used as sit unchanged")
    sic = concentration_to_fraction(cice, path, "cice", conversions)
    if float(np.nanmax(sic.values)) > 1.0 + 1e-6 or float(np.nanmin(sic.values)) < -1e-6:
        raise SitsrDataError(
            f"{path}: cice outside 0-1 (min {np.nanmin(sic.values):.3g}, max {np.nanmax(sic.values):.3g})")
    sic = sic.clip(0.0, 1.0)  # rounding within the tolerance above

    lat = raw["latitude"].values.astype(np.float32)
    lon = raw["longitude"].values.astype(np.float32)
    spacing, spacing95 = curvilinear_spacing_km(lat.astype(np.float64), lon.astype(np.float64))
    ny, nx = hice.shape
    if not np.isfinite(spacing):
        raise SitsrDataError(f"{path}: cannot measure the grid spacing of {ny} x {nx} cells "
                             "(no two neighbouring cells with finite latitude/longitude)")
    grid = {(121, 154): "nh25km", (128, 128): "nh128x128"}.get((ny, nx), "curvilinear")

    ds = xr.Dataset(
        {
            "sit": (("y", "x"), sit.values.astype(np.float32), {
                "standard_name": "sea_ice_thickness",
                "long_name": "effective sea-ice thickness (ice volume per unit cell area)",
                "cell_methods": "area: mean",
                "source_variable": "hice",
            }),
            "sic": (("y", "x"), sic.values.astype(np.float32), {
                "standard_name": "sea_ice_area_fraction",
                "long_name": "sea-ice concentration",
                "source_variable": "cice",
            }),
            "mask": (("y", "x"), ocean.astype(np.uint8), {
                "long_name": "ocean mask", "flag_values": np.array([0, 1], np.uint8), "flag_meanings": "land ocean",
            }),
        },
        coords={
            "latitude": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "longitude": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )
    date = _read_date(path)
    if date is not None:
        ds = ds.assign_coords(time=np.datetime64(date.to_datetime64(), "ns"))
        conversions.append("time from /metadata/time/formatted (the int64 /metadata/time/time is not used)")
    return finish(
        ds, product=PRODUCT, path=path, grid_spacing_km=spacing,
        effective_resolution_km=max(TOPAZ4_NATIVE_KM, spacing), conversions=conversions,
        grid=grid, max_grid_spacing_km=spacing95, n_ocean_cells=int(ocean.sum()), n_fill_cells=int(fill.sum()),
        resolution_note=(
            f"TOPAZ4 (~{TOPAZ4_NATIVE_KM:g} km model) interpolated bilinearly onto a {grid} grid "
            f"(median spacing {spacing:.1f} km): effectively ~{max(TOPAZ4_NATIVE_KM, spacing):.0f} km"
        ),
    )
