"""Regridding of product fields (from :mod:`sitsr_core.readers`) onto the neXtSIM 4 km grid.

Regridding to 4 km does **not** add resolution: the output keeps the source's effective resolution
(``attrs["effective_resolution_km"]``), recorded per product by the readers:

======================  ==================  =============================================
product                 grid spacing        effective resolution
======================  ==================  =============================================
CS2SMOS L4 (weekly)     25 km (EASE2-N)     ~50 km and one week (OI composite)
OSI-401 concentration   10 km (polstere)    ~25-30 km (passive-microwave footprints)
OSI-405 drift           62.5 km (polstere)  ~62.5 km drift, ~125 km divergence/shear
TOPAZ4 (nh25km init)    ~25 km curvilinear  ~25 km (12.5 km model on a 25 km grid)
TOPAZ4 (nh128x128)      ~34.5 km            ~35 km
======================  ==================  =============================================

Methods (all mask-aware: only finite source values, and for sources with a ``mask`` variable only
``mask == 1`` cells, contribute):

``bilinear``
    Bilinear interpolation inside the quadrilateral of source cell centres that holds the target
    cell centre (exact inverse-bilinear mapping in the target projection, so curvilinear grids such
    as TOPAZ4's work). The weights of invalid corners are dropped and the rest renormalised, so a
    target next to land takes its value from the valid corners only. Where no corner is valid but a
    valid source cell lies within the radius, the nearest valid value is used
    (``fill_within_radius=True``, the default; False leaves NaN there).
``nearest``
    Value of the nearest valid source cell (``pyresample`` kd-tree, great-circle-like distances).
``mean``
    Unweighted mean of the valid source cells within the radius of influence.
``gauss``
    Gaussian-weighted mean (sigma = radius / 2) of the valid source cells within the radius.

For every method, target cells farther than the radius of influence (default: the source grid
spacing, or its 95th percentile for curvilinear grids) from any valid source cell are NaN, and
target land cells (``Grid.land_mask()``) are NaN.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .errors import SitsrDataError, SitsrInputError
from .grid import Grid, crs, grid_mapping_attrs
from .readers import STANDARD_VARIABLES, lonlat_from_xy

METHODS = ("bilinear", "nearest", "mean", "gauss")
#: At most this many neighbours are searched by the ``mean``/``gauss`` methods.
MAX_NEIGHBOURS = 64


def _source_lonlat(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    if "longitude" in ds.coords or "longitude" in ds:
        lon = np.asarray(ds["longitude"].values, dtype=np.float64)
        lat = np.asarray(ds["latitude"].values, dtype=np.float64)
        if lon.ndim == 2:
            return lon, lat
    if "x" in ds.coords and "y" in ds.coords and "crs_proj4" in ds.attrs:
        lon, lat = lonlat_from_xy(ds["x"].values, ds["y"].values, ds.attrs["crs_proj4"])
        return lon.astype(np.float64), lat.astype(np.float64)
    raise SitsrInputError(
        "source dataset has neither 2-D latitude/longitude coordinates nor 1-D x/y with attrs['crs_proj4']"
    )


def default_radius_km(ds: xr.Dataset) -> float:
    """Radius of influence (km): the source's 95th-percentile spacing if known, else its grid spacing."""
    for key in ("max_grid_spacing_km", "grid_spacing_km"):
        if key in ds.attrs and np.isfinite(float(ds.attrs[key])):
            return float(ds.attrs[key])
    raise SitsrInputError("source dataset has no attrs['grid_spacing_km']: pass radius_km")


def _crop(sx: np.ndarray, sy: np.ndarray, grid: Grid, margin_m: float):
    """Index window (j0, j1, i0, i1) of the source nodes near the target extent, or None."""
    x0, x1 = grid.x[0] - margin_m, grid.x[-1] + margin_m
    y0, y1 = grid.y[0] - margin_m, grid.y[-1] + margin_m
    near = np.isfinite(sx) & np.isfinite(sy) & (sx >= x0) & (sx <= x1) & (sy >= y0) & (sy <= y1)
    if not near.any():
        return None
    rows = np.where(near.any(axis=1))[0]
    cols = np.where(near.any(axis=0))[0]
    return max(rows[0] - 1, 0), min(rows[-1] + 2, sx.shape[0]), max(cols[0] - 1, 0), min(cols[-1] + 2, sx.shape[1])


def _cross(ax, ay, bx, by):
    return ax * by - ay * bx


def bilinear_weights(sx: np.ndarray, sy: np.ndarray, tx: np.ndarray, ty: np.ndarray):
    """Inverse-bilinear weights of target points in a logically rectangular source grid.

    Parameters
    ----------
    sx, sy : (ny, nx) arrays
        Source cell centres in a common plane (metres).
    tx, ty : (n,) arrays
        Target points in the same plane.

    Returns
    -------
    idx : (n, 4) int array
        Flat source indices of the corners of the quadrilateral holding each target (-1 if none).
    w : (n, 4) float array
        Bilinear weights (sum 1; 0 where ``idx == -1``).
    """
    from scipy.spatial import cKDTree

    ny, nx = sx.shape
    n = tx.size
    idx = np.full((n, 4), -1, dtype=np.int64)
    w = np.zeros((n, 4))
    ok_nodes = np.isfinite(sx) & np.isfinite(sy)
    flat_ok = np.flatnonzero(ok_nodes)
    if flat_ok.size == 0 or ny < 2 or nx < 2:
        return idx, w
    tree = cKDTree(np.column_stack([sx.ravel()[flat_ok], sy.ravel()[flat_ok]]))
    _, k = tree.query(np.column_stack([tx, ty]))
    nearest = flat_ok[k]
    jn, in_ = np.divmod(nearest, nx)
    found = np.zeros(n, dtype=bool)
    SX, SY = sx.ravel(), sy.ravel()
    for dj, di in ((-1, -1), (-1, 0), (0, -1), (0, 0)):
        j0, i0 = jn + dj, in_ + di
        cand = ~found & (j0 >= 0) & (j0 < ny - 1) & (i0 >= 0) & (i0 < nx - 1)
        if not cand.any():
            continue
        c = np.flatnonzero(cand)
        a_ = j0[c] * nx + i0[c]
        b_ = a_ + 1
        d_ = a_ + nx
        c_ = d_ + 1
        ax, ay = SX[a_], SY[a_]
        ex, ey = SX[b_] - ax, SY[b_] - ay
        fx, fy = SX[d_] - ax, SY[d_] - ay
        gx, gy = ax - SX[b_] + SX[c_] - SX[d_], ay - SY[b_] + SY[c_] - SY[d_]
        hx, hy = tx[c] - ax, ty[c] - ay
        k2 = _cross(gx, gy, fx, fy)
        k1 = _cross(ex, ey, fx, fy) + _cross(hx, hy, gx, gy)
        k0 = _cross(hx, hy, ex, ey)
        scale = np.abs(_cross(ex, ey, fx, fy)) + 1e-30
        with np.errstate(divide="ignore", invalid="ignore"):
            lin = np.abs(k2) < 1e-9 * scale
            disc = np.sqrt(np.where(lin, 0.0, k1 * k1 - 4 * k0 * k2))
            roots = [np.where(lin, -k0 / k1, (-k1 - disc) / (2 * k2)), np.where(lin, -k0 / k1, (-k1 + disc) / (2 * k2))]
            best_u = np.full(c.size, np.nan)
            best_v = np.full(c.size, np.nan)
            for v in roots:
                denx, deny = ex + gx * v, ey + gy * v
                u = np.where(np.abs(denx) >= np.abs(deny), (hx - fx * v) / denx, (hy - fy * v) / deny)
                good = np.isfinite(u) & np.isfinite(v) & (u >= -1e-9) & (u <= 1 + 1e-9) & (v >= -1e-9) & (v <= 1 + 1e-9)
                take = good & ~np.isfinite(best_u)
                best_u[take], best_v[take] = u[take], v[take]
        ok = np.isfinite(best_u) & np.isfinite(SX[c_]) & np.isfinite(SX[b_]) & np.isfinite(SX[d_]) & np.isfinite(ax)
        u = np.clip(best_u[ok], 0, 1)
        v = np.clip(best_v[ok], 0, 1)
        rows = c[ok]
        idx[rows] = np.column_stack([a_[ok], b_[ok], c_[ok], d_[ok]])
        w[rows] = np.column_stack([(1 - u) * (1 - v), u * (1 - v), u * v, (1 - u) * v])
        found[rows] = True
    return idx, w


def _apply_bilinear(values: np.ndarray, valid: np.ndarray, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bilinear sample with invalid corners dropped and the remaining weights renormalised."""
    flat_v = values.ravel()
    flat_ok = valid.ravel()
    have = idx >= 0
    safe = np.where(have, idx, 0)
    wk = np.where(have & flat_ok[safe], w, 0.0)
    num = (wk * np.where(wk > 0, flat_v[safe], 0.0)).sum(axis=1)
    den = wk.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, num / den, np.nan)


def _kd_neighbours(lon, lat, valid, tgt_def, radius_m, k):
    """pyresample neighbour search from the valid source cells; returns (index, distance) of shape (n_tgt, k)."""
    from pyresample import geometry, kd_tree

    src = geometry.SwathDefinition(lons=lon[valid], lats=lat[valid])
    n_tgt = tgt_def.size
    vin, vout, index, dist = kd_tree.get_neighbour_info(src, tgt_def, radius_m, neighbours=k, nprocs=1)
    src_ids = np.flatnonzero(valid.ravel())[np.flatnonzero(vin)]
    index = np.asarray(index).reshape(-1, k)
    dist = np.asarray(dist, dtype=np.float64).reshape(-1, k)
    full_idx = np.full((n_tgt, k), -1, dtype=np.int64)
    full_dist = np.full((n_tgt, k), np.inf)
    good = index < src_ids.size
    out_rows = np.flatnonzero(vout)
    mapped = np.where(good, src_ids[np.where(good, index, 0)], -1)
    full_idx[out_rows] = mapped
    full_dist[out_rows] = np.where(good, dist, np.inf)
    return full_idx, full_dist


def regrid_to_grid(ds: xr.Dataset, grid: Grid, variables=None, method: str = "bilinear",
                   radius_km: float | None = None, land_mask: np.ndarray | bool = True,
                   fill_within_radius: bool = True) -> xr.Dataset:
    """Regrid a reader's output onto a window of the neXtSIM 4 km grid.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of a :mod:`sitsr_core.readers` reader: 2-D ``latitude``/``longitude`` (or 1-D
        ``x``/``y`` and ``attrs["crs_proj4"]``), variables on the last two dims, optionally a
        ``mask`` (1 = valid source cell), attrs ``grid_spacing_km``, ``product``...
    grid : Grid
        Target window (:func:`sitsr_core.grid.get_grid`).
    variables : sequence of str, optional
        Variables to regrid. Default: those of ``sit``, ``sic``, ``sit_uncertainty``,
        ``divergence``, ``shear`` the dataset has.
    method : {"bilinear", "nearest", "mean", "gauss"}
        See the module docstring.
    radius_km : float, optional
        Radius of influence; default :func:`default_radius_km` (the source grid spacing).
    land_mask : bool or (ny, nx) bool array
        True: set the grid's land cells (``grid.land_mask()``) to NaN; an array: use it as the land
        mask; False: keep values on land.
    fill_within_radius : bool
        ``bilinear`` only: where the bilinear value is undefined (all four corners invalid, e.g. a
        coastal target whose surrounding source cells are land, or a target outside the source
        quadrilaterals) but a valid source cell lies within the radius, take that nearest value.
        False gives strict bilinear (NaN there).

    Returns
    -------
    xarray.Dataset
        dims ``(y, x)`` (plus any leading dims of the source variables, e.g. ``time``) with the
        grid's ``x``/``y`` (m), ``latitude``/``longitude``, the variables (float32, NaN where no
        value), ``land_mask`` (int8, 1 = land) and a ``polar_stereographic`` grid-mapping variable.
        attrs: ``source_product``, ``source_file``, ``source_conversions``, ``method``,
        ``radius_of_influence_km``, ``source_grid_spacing_km``, ``effective_resolution_km``, ``region``.

    Raises
    ------
    SitsrInputError
        Unknown method, or a requested variable missing (names those present).
    SitsrDataError
        The source has no valid value near the target window (e.g. a Southern Hemisphere product).
    """
    import pyproj
    from pyresample import geometry

    if method not in METHODS:
        raise SitsrInputError(f"unknown regridding method {method!r}; choose one of {', '.join(METHODS)}")
    if variables is None:
        variables = [v for v in STANDARD_VARIABLES if v in ds.data_vars]
        if not variables:
            raise SitsrInputError(
                f"source dataset has none of {', '.join(STANDARD_VARIABLES)}; "
                f"variables: {', '.join(map(str, ds.data_vars))}"
            )
    elif isinstance(variables, str):
        variables = [variables]
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise SitsrInputError(
            f"variable(s) {', '.join(missing)} not in the source dataset "
            f"({ds.attrs.get('product', 'unknown product')}); variables: {', '.join(map(str, ds.data_vars))}"
        )
    radius_km = float(radius_km) if radius_km is not None else default_radius_km(ds)
    radius_m = radius_km * 1000.0
    src_label = ds.attrs.get("product", "source")

    lon, lat = _source_lonlat(ds)
    tr = pyproj.Transformer.from_crs("EPSG:4326", crs(), always_xy=True)
    with np.errstate(all="ignore"):
        sx, sy = tr.transform(lon, lat, errcheck=False)
    sx = np.where(np.isfinite(sx) & (np.abs(sx) < 1e8), sx, np.nan)
    sy = np.where(np.isfinite(sy) & (np.abs(sy) < 1e8), sy, np.nan)
    spacing_m = float(ds.attrs.get("max_grid_spacing_km", ds.attrs.get("grid_spacing_km", radius_km))) * 1000.0
    win = _crop(sx, sy, grid, radius_m + 2 * spacing_m)
    if win is None:
        raise SitsrDataError(
            f"{ds.attrs.get('source_file', src_label)}: the {src_label} grid does not reach the {grid.name} window "
            "of the neXtSIM grid (another hemisphere or region?)"
        )
    j0, j1, i0, i1 = win
    ydim, xdim = ds[variables[0]].dims[-2:]
    sub = ds.isel({ydim: slice(j0, j1), xdim: slice(i0, i1)})
    lon, lat, sx, sy = (a[j0:j1, i0:i1] for a in (lon, lat, sx, sy))
    src_mask = np.ones(lon.shape, dtype=bool)
    if "mask" in sub.data_vars and sub["mask"].ndim == 2:
        src_mask = np.asarray(sub["mask"].values) == 1
    src_mask &= np.isfinite(lon) & np.isfinite(lat)

    tlon, tlat = (a.astype(np.float64) for a in grid.lonlat())
    tgt_def = geometry.SwathDefinition(lons=tlon, lats=tlat)
    X, Y = np.meshgrid(grid.x, grid.y)
    if land_mask is True:
        land = grid.land_mask()
    elif land_mask is False or land_mask is None:
        land = np.zeros(grid.shape, dtype=bool)
    else:
        land = np.asarray(land_mask, dtype=bool)
        if land.shape != grid.shape:
            raise SitsrInputError(f"land_mask has shape {land.shape}, the grid {grid.shape}")

    bil = None
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    if method in ("nearest", "bilinear"):
        k = 1
    else:  # enough neighbours for every source cell within the radius (with margin)
        k = int(np.clip(np.ceil(1.5 * np.pi * (radius_m / max(spacing_m, 1.0)) ** 2) + 4, 4, MAX_NEIGHBOURS))
    out_vars = {}
    for name in variables:
        da = sub[name]
        if da.dims[-2:] != (ydim, xdim):
            raise SitsrInputError(f"variable {name} has dims {da.dims}; expected (..., {ydim}, {xdim})")
        lead = da.shape[:-2]
        vals = np.asarray(da.values, dtype=np.float64).reshape((-1,) + da.shape[-2:])
        res = np.full((vals.shape[0],) + grid.shape, np.nan)
        for t in range(vals.shape[0]):
            field = vals[t]
            valid = np.isfinite(field) & src_mask
            if not valid.any():
                continue
            key = np.packbits(valid).tobytes()
            if key not in cache:
                cache[key] = _kd_neighbours(lon, lat, valid, tgt_def, radius_m, k)
            nidx, ndist = cache[key]
            within = (nidx[:, 0] >= 0) & (ndist[:, 0] <= radius_m)
            if method == "bilinear":
                if bil is None:
                    bil = bilinear_weights(sx, sy, X.ravel(), Y.ravel())
                out = _apply_bilinear(field, valid, *bil)
                if fill_within_radius:
                    near = field.ravel()[np.maximum(nidx[:, 0], 0)]
                    out = np.where(np.isnan(out) & within, near, out)
            elif method == "nearest":
                out = np.where(nidx[:, 0] >= 0, field.ravel()[np.maximum(nidx[:, 0], 0)], np.nan)
            else:
                ok = (nidx >= 0) & (ndist <= radius_m)
                wts = np.where(ok, 1.0, 0.0) if method == "mean" else np.where(
                    ok, np.exp(-0.5 * (ndist / (radius_m / 2.0)) ** 2), 0.0)
                v = np.where(ok, field.ravel()[np.maximum(nidx, 0)], 0.0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out = np.where(wts.sum(1) > 0, (wts * v).sum(1) / wts.sum(1), np.nan)
            out = np.where(within, out, np.nan).reshape(grid.shape)
            out[land] = np.nan
            res[t] = out
        attrs = {k_: v_ for k_, v_ in da.attrs.items() if k_ not in ("grid_mapping", "coordinates", "_FillValue")}
        attrs["grid_mapping"] = "polar_stereographic"
        attrs["regrid_method"] = method + (" (nearest valid within radius where undefined)"
                                           if method == "bilinear" and fill_within_radius else "")
        dims = da.dims[:-2] + ("y", "x")
        out_vars[name] = (dims, res.reshape(lead + grid.shape).astype(np.float32), attrs)
        if not np.isfinite(res).any():
            raise SitsrDataError(
                f"{ds.attrs.get('source_file', src_label)}: no valid {name} value of {src_label} within "
                f"{radius_km:g} km of the ocean cells of the {grid.name} window"
            )

    out_vars["land_mask"] = (("y", "x"), land.astype(np.int8), {
        "long_name": "land mask", "flag_values": np.array([0, 1], np.int8), "flag_meanings": "ocean land"})
    out_vars["polar_stereographic"] = ((), np.int32(0), grid_mapping_attrs())
    tlon32, tlat32 = grid.lonlat()
    coords = {
        "x": ("x", grid.x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}),
        "y": ("y", grid.y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}),
        "latitude": (("y", "x"), tlat32, {"standard_name": "latitude", "units": "degrees_north"}),
        "longitude": (("y", "x"), tlon32, {"standard_name": "longitude", "units": "degrees_east"}),
    }
    for c in ds.coords:
        if c not in coords and c not in (ydim, xdim) and not set(ds[c].dims) & {ydim, xdim}:
            coords[c] = ds[c]
    out = xr.Dataset(out_vars, coords=coords)
    if "time" in out.coords:
        out["time"].attrs.update(standard_name="time", long_name=out["time"].attrs.get("long_name", "time"))
    out.attrs = {
        "Conventions": "CF-1.8",
        "source_product": src_label,
        "source_file": ds.attrs.get("source_file", ""),
        "source_conversions": ds.attrs.get("conversions", ""),
        "method": method,
        "radius_of_influence_km": radius_km,
        "source_grid_spacing_km": float(ds.attrs.get("grid_spacing_km", np.nan)),
        "effective_resolution_km": float(ds.attrs.get("effective_resolution_km", np.nan)),
        "region": grid.name,
        "grid_window": f"row0={grid.row0} col0={grid.col0} ny={grid.ny} nx={grid.nx}",
    }
    return out
