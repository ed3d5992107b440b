"""Helpers shared by the product readers: file checks, unit conversions, CF clean-up and sniffing.

The package :mod:`sitsr_core.readers` and each reader module import from here (never from the
package), so the readers form no import cycle.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import SitsrDataError
from ..fileio import check_netcdf_file, open_netcdf  # noqa: F401 - re-exported for the readers

#: Variables a reader may return, with their units.
STANDARD_VARIABLES = {
    "sit": "m",
    "sic": "1",
    "sit_uncertainty": "m",
    "divergence": "day-1",
    "shear": "day-1",
}

#: Above this (metres), a "thickness" is taken to be in centimetres (or garbage).
MAX_PLAUSIBLE_THICKNESS_M = 20.0


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------

def _inventory(path) -> str:
    import netCDF4

    try:
        with netCDF4.Dataset(path) as nc:
            parts = []
            if nc.variables:
                parts.append("variables " + ", ".join(sorted(nc.variables)))
            for name, grp in nc.groups.items():
                parts.append(f"group /{name}" + (": " + ", ".join(sorted(grp.variables)) if grp.variables else ""))
            return "; ".join(parts) or "no variables"
    except Exception as exc:  # pragma: no cover - only used in messages
        return f"unreadable: {exc}"


def require_variables(ds: xr.Dataset, names, path, product: str) -> None:
    """Raise SitsrDataError naming the file, the missing variables and those present."""
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise SitsrDataError(
            f"{path}: {product} file lacks variable(s) {', '.join(missing)}; "
            f"variables present: {', '.join(sorted(map(str, ds.variables))) or 'none'}"
        )


def thickness_to_m(da: xr.DataArray, path, name: str, conversions: list[str]) -> xr.DataArray:
    """Return a thickness in metres, converting from cm when the units say so.

    Without units, or with metre units, values whose 99th percentile exceeds
    :data:`MAX_PLAUSIBLE_THICKNESS_M` (or whose maximum exceeds 5 times that) are rejected: they look
    like centimetres, and guessing would silently be wrong by a factor of 100.
    """
    units = str(da.attrs.get("units", "")).strip().lower()
    vals = np.asarray(da.values, dtype=np.float64)
    finite = vals[np.isfinite(vals)]
    if units in ("cm", "centimeter", "centimeters", "centimetre", "centimetres"):
        da = da / 100.0
        conversions.append(f"{name}: cm -> m (/100)")
        return da.assign_attrs(units="m")
    if units not in ("", "m", "meter", "meters", "metre", "metres"):
        raise SitsrDataError(f"{path}: variable {name} has units {da.attrs.get('units')!r}; expected m or cm")
    if finite.size:
        p99, vmax = float(np.percentile(finite, 99)), float(finite.max())
        if p99 > MAX_PLAUSIBLE_THICKNESS_M or vmax > 5 * MAX_PLAUSIBLE_THICKNESS_M:
            said = f"units {da.attrs['units']!r}" if units else "no units attribute"
            raise SitsrDataError(
                f"{path}: variable {name} has {said} but implausible thickness values for metres "
                f"(99th percentile {p99:.3g}, max {vmax:.3g}; > {MAX_PLAUSIBLE_THICKNESS_M:g} m): "
                "centimetres? Fix the units attribute to 'cm' to have it converted"
            )
        if finite.min() < -0.01:
            raise SitsrDataError(f"{path}: variable {name} has negative thickness (min {finite.min():.3g} m)")
    return da.assign_attrs(units="m")


def concentration_to_fraction(da: xr.DataArray, path, name: str, conversions: list[str]) -> xr.DataArray:
    """Return a concentration as a 0-1 fraction, converting from percent (units ``%``/``percent``)."""
    units = str(da.attrs.get("units", "")).strip().lower()
    vals = np.asarray(da.values, dtype=np.float64)
    vmax = float(np.nanmax(vals)) if np.isfinite(vals).any() else 0.0
    if units in ("%", "percent", "percentage"):
        da = da / 100.0
        conversions.append(f"{name}: % -> fraction (/100)")
    elif units in ("", "1", "fraction", "0-1"):
        if vmax > 1.5:
            if units:
                raise SitsrDataError(
                    f"{path}: variable {name} has units {da.attrs['units']!r} but values up to {vmax:.3g}: percent?"
                )
            da = da / 100.0
            conversions.append(f"{name}: no units and values up to {vmax:.3g}, taken as % -> fraction (/100)")
    else:
        raise SitsrDataError(f"{path}: variable {name} has units {da.attrs.get('units')!r}; expected % or 1")
    return da.assign_attrs(units="1")


def check_not_all_nan(da: xr.DataArray, path, name: str) -> None:
    """Raise SitsrDataError when a variable holds no valid value."""
    if not np.isfinite(np.asarray(da.values, dtype=np.float64)).any():
        raise SitsrDataError(f"{path}: variable {name} has no valid (finite, non-fill) value")


def squeeze_time(ds: xr.Dataset) -> xr.Dataset:
    """Squeeze a length-1 ``time`` dimension to a scalar coordinate."""
    if "time" in ds.dims and ds.sizes["time"] == 1:
        ds = ds.isel(time=0)
    return ds


def lonlat_from_xy(x_m: np.ndarray, y_m: np.ndarray, proj4: str) -> tuple[np.ndarray, np.ndarray]:
    """2-D lon/lat (float32, degrees) of projection cell centres ``x_m``, ``y_m`` (metres)."""
    import pyproj

    tr = pyproj.Transformer.from_crs(pyproj.CRS.from_proj4(proj4), "EPSG:4326", always_xy=True)
    X, Y = np.meshgrid(x_m, y_m)
    lon, lat = tr.transform(X, Y)
    return lon.astype(np.float32), lat.astype(np.float32)


def coord_to_m(da: xr.DataArray, path, name: str) -> np.ndarray:
    """A 1-D projection coordinate in metres (accepts units km or m)."""
    units = str(da.attrs.get("units", "m")).strip().lower()
    vals = np.asarray(da.values, dtype=np.float64)
    if units in ("km", "kilometer", "kilometers", "kilometre", "kilometres"):
        return vals * 1000.0
    if units in ("m", "meter", "meters", "metre", "metres"):
        return vals
    raise SitsrDataError(f"{path}: coordinate {name} has units {da.attrs.get('units')!r}; expected km or m")


def finish(ds: xr.Dataset, *, product: str, path, grid_spacing_km: float, effective_resolution_km: float,
           conversions: list[str], crs_proj4: str | None = None, **extra) -> xr.Dataset:
    """Set the common attributes of a reader's output."""
    ds.attrs = {
        "Conventions": "CF-1.8",
        "product": product,
        "source_file": Path(path).name,
        "grid_spacing_km": float(grid_spacing_km),
        "effective_resolution_km": float(effective_resolution_km),
        "conversions": "; ".join(conversions) if conversions else "none",
        **({"crs_proj4": crs_proj4} if crs_proj4 else {}),
        **extra,
    }
    for name, units in STANDARD_VARIABLES.items():
        if name in ds:
            ds[name].attrs["units"] = units
    if "time" in ds.coords:
        ds["time"].attrs.pop("bounds", None)  # time_bnds is not carried (see time_coverage_* attrs)
        ds["time"].encoding.pop("bounds", None)
        ds["time"].attrs.update(standard_name="time", long_name="reference time of product")
    return ds


def fresh(da: xr.DataArray, **attrs) -> xr.DataArray:
    """``da`` as float32 with exactly ``attrs`` (no attributes inherited through arithmetic)."""
    out = da.astype(np.float32)
    out.attrs = dict(attrs)
    out.encoding = {}
    return out


# --------------------------------------------------------------------------------------------------
# Product sniffing and dispatch
# --------------------------------------------------------------------------------------------------

PRODUCT_LABELS = {
    "topaz4": "a TOPAZ4 / neXtSIM-DG initial-condition file",
    "cs2smos": "a CS2SMOS L4 thickness file",
    "osisaf_conc": "an OSI SAF sea-ice concentration file (OSI-401)",
    "osisaf_drift": "an OSI SAF low-resolution drift file (OSI-405)",
    "nextsim_moorings": "a neXtSIM moorings file",
}


def sniff_product(path: str | os.PathLike) -> str:
    """Recognise a product from a file's variables and attributes.

    Returns one of ``"topaz4"``, ``"cs2smos"``, ``"osisaf_conc"``, ``"osisaf_drift"``,
    ``"nextsim_moorings"``.

    Raises
    ------
    SitsrDataError
        Not a (complete) netCDF file, or none of the known products.
    """
    import netCDF4

    path = check_netcdf_file(path)
    with netCDF4.Dataset(path) as nc:
        names = set(nc.variables)
        groups = set(nc.groups)
        pid = str(getattr(nc, "product_id", "")).upper()
        title = str(getattr(nc, "title", "")).lower()
        data_vars = set(nc.groups["data"].variables) if "data" in groups else set()
    if {"hice", "cice"} <= data_vars:
        return "topaz4"
    if "analysis_sea_ice_thickness" in names:
        return "cs2smos"
    if pid.startswith("OSI-405") or {"dX", "dY"} <= names:
        return "osisaf_drift"
    if pid.startswith("OSI-401") or ("ice_conc" in names and "concentration" in title) or "ice_conc" in names:
        return "osisaf_conc"
    if {"sit", "sic"} <= names and ("x" in names or "y" in names):
        return "nextsim_moorings"
    inv = _inventory(path)
    raise SitsrDataError(
        f"{path}: not a known product (expected TOPAZ4 /data hice+cice, CS2SMOS analysis_sea_ice_thickness, "
        f"OSI SAF ice_conc or dX/dY, or neXtSIM moorings sit+sic); found {inv}"
    )
