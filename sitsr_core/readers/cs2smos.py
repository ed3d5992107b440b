"""AWI/ESA CS2SMOS L4 merged CryoSat-2 + SMOS weekly sea-ice thickness (Northern Hemisphere).

File names ``W_XX-ESA,SMOS_CS2,NH_25KM_EASE2_YYYYMMDD_YYYYMMDD_[r|o]_vVVV_01_l4sit.nc``.

Grid: EASE2-North 25 km (EPSG:6931, Lambert azimuthal equal-area on WGS84), 432 x 432 cells with
edges at +-5387500 m; ``xc``/``yc`` cell centres (km in the product), ``yc`` decreasing (row 0 is
the top of the map). Dims ``(time, yc, xc)`` with ``time`` of length 1 (centre of the 7-day window,
``time_bnds`` its bounds).

Variables used: ``analysis_sea_ice_thickness`` (m, **per ice-covered area**, i.e. the mean
thickness of the ice floes), ``analysis_sea_ice_thickness_unc`` (m) and ``sea_ice_concentration``
(%); older versions store them packed as integers with ``scale_factor``/``_FillValue``, which
xarray decodes.

Effective resolution: the grid spacing is 25 km, but each map is a 7-day composite of CryoSat-2
tracks and daily SMOS swaths merged by optimal interpolation, so features smaller than about 50 km
(two cells) and a week are not resolved; we record 50 km.

Conversion: neXtSIM ``sit`` is the effective thickness (ice volume per cell area), so
``sit = analysis_sea_ice_thickness x sea_ice_concentration / 100``; likewise the uncertainty
(the concentration's own uncertainty is not propagated). The per-ice-area thickness is kept as
``sit_ice``.
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
    thickness_to_m,
)

PRODUCT = "CS2SMOS"
#: EASE2-North (EPSG:6931).
EASE2_NORTH_PROJ4 = "+proj=laea +lat_0=90 +lon_0=0 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"
EASE2_NORTH_EPSG = 6931
EASE2_N25_SHAPE = (432, 432)
EASE2_N25_EDGE_M = 5387500.0
GRID_SPACING_KM = 25.0
EFFECTIVE_RESOLUTION_KM = 50.0

THICKNESS = "analysis_sea_ice_thickness"
THICKNESS_UNC = "analysis_sea_ice_thickness_unc"
CONCENTRATION = "sea_ice_concentration"


def ease2_north_25km_xy() -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre ``x`` (increasing) and ``y`` (decreasing) of the full EASE2-North 25 km grid (m)."""
    n = EASE2_N25_SHAPE[1]
    x = -EASE2_N25_EDGE_M + (np.arange(n) + 0.5) * 25000.0
    return x, x[::-1].copy()



def read_cs2smos(path: str | os.PathLike) -> xr.Dataset:
    """Read a CS2SMOS L4 weekly thickness file.

    Returns
    -------
    xarray.Dataset
        dims ``(y, x)`` in the product's order (``y`` decreasing); 1-D ``x``/``y`` (m, EASE2-North);
        2-D ``latitude``/``longitude``; scalar ``time`` (centre of the week) and attrs
        ``time_coverage_start``/``time_coverage_end``. Variables ``sit`` (m, effective = per-ice-area
        thickness x concentration), ``sit_ice`` (m, per ice area, as in the file), ``sic`` (0-1) and
        ``sit_uncertainty`` (m, effective, when the file has it). ``attrs["crs_proj4"]`` is
        EASE2-North.

    Raises
    ------
    SitsrDataError
        Not netCDF / truncated, another product, missing variable, implausible units, or no valid
        thickness.
    """
    path = os.fspath(path)
    kind = sniff_product(path)
    if kind != "cs2smos":
        raise SitsrDataError(
            f"{path}: expected a CS2SMOS L4 thickness file (variables {THICKNESS}, {CONCENTRATION} on "
            f"EASE2-North 25 km); found {PRODUCT_LABELS[kind]} ({_inventory(path)})"
        )
    raw = open_netcdf(path)
    require_variables(raw, [THICKNESS, CONCENTRATION, "xc", "yc"], path, PRODUCT)
    raw = raw.rename({d: n for d, n in (("yc", "y"), ("xc", "x")) if d in raw.dims})
    conversions: list[str] = [f"{THICKNESS}, {CONCENTRATION}: packed integers/_FillValue decoded by CF rules"]

    sit_ice = thickness_to_m(raw[THICKNESS].astype(np.float64), path, THICKNESS, conversions)
    check_not_all_nan(sit_ice, path, THICKNESS)
    sic = concentration_to_fraction(raw[CONCENTRATION].astype(np.float64), path, CONCENTRATION, conversions)
    check_not_all_nan(sic, path, CONCENTRATION)
    sic = sic.clip(0.0, 1.0)
    sit = sit_ice * sic
    n_lost = int((np.isfinite(sit_ice.values) & ~np.isfinite(sic.values)).sum())
    conversions.append(
        f"sit = {THICKNESS} (per ice area) x {CONCENTRATION}/100 -> effective thickness (volume per cell area)"
        + (f"; {n_lost} cells with thickness but no concentration set to NaN" if n_lost else "")
    )
    out = {
        "sit": fresh(
            sit, units="m", standard_name="sea_ice_thickness",
            long_name="effective sea-ice thickness (ice volume per unit cell area)",
            cell_methods="area: mean", source_variable=f"{THICKNESS} * {CONCENTRATION}/100",
        ),
        "sit_ice": fresh(
            sit_ice, standard_name="sea_ice_thickness", long_name="sea-ice thickness per ice-covered area",
            cell_methods="area: mean where sea_ice", source_variable=THICKNESS, units="m",
        ),
        "sic": fresh(
            sic, units="1", standard_name="sea_ice_area_fraction", long_name="sea-ice concentration",
            source_variable=CONCENTRATION,
        ),
    }
    if THICKNESS_UNC in raw:
        unc = thickness_to_m(raw[THICKNESS_UNC].astype(np.float64), path, THICKNESS_UNC, conversions)
        out["sit_uncertainty"] = fresh(
            unc * sic, units="m",
            long_name="uncertainty of the effective sea-ice thickness (concentration uncertainty not propagated)",
            source_variable=f"{THICKNESS_UNC} * {CONCENTRATION}/100",
        )
        conversions.append(f"sit_uncertainty = {THICKNESS_UNC} x {CONCENTRATION}/100")

    x = coord_to_m(raw["x"], path, "xc")
    y = coord_to_m(raw["y"], path, "yc")
    if str(raw["x"].attrs.get("units", "m")).lower().startswith("k"):
        conversions.append("xc, yc: km -> m")
    proj4 = EASE2_NORTH_PROJ4
    gm = raw.get("Lambert_Azimuthal_Grid")
    if gm is not None and "proj4_string" in gm.attrs:
        file_proj = str(gm.attrs["proj4_string"])
        if "+proj=laea" not in file_proj or "lat_0=90" not in file_proj.replace(" ", ""):
            raise SitsrDataError(f"{path}: grid mapping is {file_proj!r}, expected EASE2-North (+proj=laea +lat_0=90)")
    dx = float(np.median(np.abs(np.diff(x)))) / 1000.0 if x.size > 1 else GRID_SPACING_KM
    if abs(dx - GRID_SPACING_KM) > 0.5:
        raise SitsrDataError(f"{path}: xc spacing {dx:g} km, expected {GRID_SPACING_KM:g} km (EASE2-North 25 km)")
    if "lat" in raw and "lon" in raw:
        lat = raw["lat"].values.astype(np.float32)
        lon = raw["lon"].values.astype(np.float32)
    else:
        lon, lat = lonlat_from_xy(x, y, proj4)

    ds = xr.Dataset(
        {k: v.drop_vars([c for c in v.coords if c not in ("time",)]) for k, v in out.items()},
        coords={
            "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}),
            "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}),
            "latitude": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "longitude": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )
    extra = {}
    if "time_bnds" in raw:
        b = np.asarray(raw["time_bnds"].values).ravel()
        if b.size >= 2 and np.issubdtype(b.dtype, np.datetime64):
            extra = {"time_coverage_start": str(pd.Timestamp(b[0])), "time_coverage_end": str(pd.Timestamp(b[-1]))}
    ds = squeeze_time(ds)
    return finish(
        ds, product=PRODUCT, path=path, grid_spacing_km=GRID_SPACING_KM,
        effective_resolution_km=EFFECTIVE_RESOLUTION_KM, conversions=conversions, crs_proj4=proj4,
        crs_epsg=EASE2_NORTH_EPSG,
        resolution_note=(
            "EASE2-North 25 km grid; weekly (7-day) optimal-interpolation composite of CryoSat-2 and SMOS: "
            f"effective resolution ~{EFFECTIVE_RESOLUTION_KM:g} km and one week"
        ),
        **extra,
    )
