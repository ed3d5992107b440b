"""LR features from an observed (or modelled) product, for inference with a trained run.

A trained model expects its context exactly as :func:`sitsr_core.dataset.constitute_day` made it:
fields on the 4 km neXtSIM grid, filtered by a 120 km box (``sit``, ``divergence``, ``shear``) or
a 24 km box (``sic``) over the ocean cells. :func:`product_features` builds that context from a
reader's output (:mod:`sitsr_core.readers`):

1. regrid the product onto the model's 4 km window (:func:`sitsr_core.regrid.regrid_to_grid`;
   mask-aware, no extrapolation across land, the grid's land mask);
2. keep the cells where the grid has ocean *and* the product has a valid ``sit`` and ``sic``
   (``mask``);
3. apply the training filters (:func:`sitsr_core.filters.box_filter`, same kernels), and the
   interpolation baseline ``sit_interp`` (:func:`sitsr_core.filters.interp_baseline`).

Resolution. Regridding to 4 km adds no detail: a product keeps its effective resolution
(``attrs["effective_resolution_km"]``, e.g. ~25 km for TOPAZ4 nh25km, ~50 km for CS2SMOS). The
training LR fields were box means of 4 km fields; a product coarser than 4 km is smoother than
those fields at scales between its resolution and the kernel. The box filter removes those scales
anyway, so for ``sit`` (and deformation) at 120 km the features have the scales the model was
trained on. Where the product's resolution is close to or coarser than a kernel (TOPAZ4 ``sic``
at ~25 km vs the 24 km ``sic`` kernel; OSI-405 deformation at ~125 km vs 120 km) the feature is
smoother than in training; this is recorded in ``attrs["resolution_note"]``.

Edges. As in training (the dataset is filtered on the regional window itself), the filters see
only the window: the box mean near the window border is over the cells inside it.

:func:`write_features` writes the features file read by ``sitsr downscale --lr-file``;
:func:`check_run_features` refuses a run that needs features the product lacks (a four-feature
model on a product without deformation); :func:`downscale_product` does both and downscales;
:func:`ice_volume` compares the total volume of a product and of the generated ensemble.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from . import downscale, fileio
from .checkpoint import run_features
from .config import FEATURES, Config
from .errors import SitsrDataError, SitsrInputError
from .grid import PROJ4, Grid
from .observe import model_context, to_model_grid

#: Product variable -> LR feature.
PRODUCT_VARIABLES = {"sit": "sit_lr", "sic": "sic_lr", "divergence": "divergence_lr", "shear": "shear_lr"}
#: Features every run uses (the context always starts with them; post-processing needs ``sic_lr``).
REQUIRED = ("sit_lr", "sic_lr")
UNITS = {"sit": "m", "sic": "1", "divergence": "day-1", "shear": "day-1"}


def product_features(ds: xr.Dataset, grid: Grid, kernel_km: float = 120.0, sic_kernel_km: float = 24.0,
                     method: str = "bilinear", radius_km: float | None = None) -> xr.Dataset:
    """Regrid a product onto the model's 4 km window and filter it as in dataset constitution.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of a :mod:`sitsr_core.readers` reader with at least ``sit`` (effective thickness, m)
        and ``sic`` (0-1); ``divergence`` and ``shear`` (day-1) are used when present.
    grid : Grid
        The model's window (:func:`sitsr_core.grid.get_grid`).
    kernel_km, sic_kernel_km : float
        Box widths of the training filters (the dataset's ``kernel_km``/``sic_kernel_km``).
    method, radius_km
        Passed to :func:`sitsr_core.regrid.regrid_to_grid`.

    Returns
    -------
    xarray.Dataset
        On ``(y, x)``: ``sit_lr``, ``sic_lr`` (and ``divergence_lr``, ``shear_lr`` when the
        product has them), ``sit_interp`` (block means of ``kernel_km`` interpolated back),
        ``{sit,sic,...}_regridded`` (the product on the 4 km grid before filtering), ``mask``
        (int8, 1 = ocean cell of the grid where the product has valid ``sit`` and ``sic``), the
        ``polar_stereographic`` grid mapping; coordinates ``x``, ``y`` (m), ``latitude``,
        ``longitude`` and the product's scalar ``time`` if it has one. Features are NaN where
        ``mask`` is 0. ``attrs``: ``product``, ``source_file``, ``conversions`` (the reader's),
        ``processing`` (this function's steps), ``effective_resolution_km``, ``kernel_km``,
        ``sic_kernel_km``, ``features``, ``region``, ``grid_window``, ``resolution_note``...

    Raises
    ------
    SitsrInputError
        The product has no ``sit`` or no ``sic`` (names the variables it has).
    SitsrDataError
        The product does not reach the window, or leaves no valid ocean cell.
    """
    missing = [v for v in ("sit", "sic") if v not in ds.data_vars]
    if missing:
        raise SitsrInputError(
            f"{ds.attrs.get('source_file', 'product')}: {ds.attrs.get('product', 'the product')} has no "
            f"{' and no '.join(missing)}; the model needs both sea-ice thickness and concentration "
            f"(variables: {', '.join(map(str, ds.data_vars))})")
    names = [v for v in PRODUCT_VARIABLES if v in ds.data_vars]
    hr, ocean, rg = to_model_grid(ds, grid, names, method=method, radius_km=radius_km)
    valid = ocean & np.isfinite(hr["sit"]) & np.isfinite(hr["sic"])
    if not valid.any():
        raise SitsrDataError(f"{ds.attrs.get('source_file', 'product')}: no ocean cell of the {grid.name} window "
                             "has both sit and sic")
    eff = float(ds.attrs.get("effective_resolution_km", np.nan))
    lr = model_context(hr, valid, kernel_km, sic_kernel_km)
    out, notes = {}, []
    for v in names:
        k = sic_kernel_km if v == "sic" else kernel_km
        out[PRODUCT_VARIABLES[v]] = (lr[PRODUCT_VARIABLES[v]], dict(
            long_name=f"{ds.attrs.get('product', 'product')} {v}, regridded to 4 km and {k:g} km box mean",
            units=UNITS[v], kernel_km=float(k)))
        out[f"{v}_regridded"] = (np.where(ocean, hr[v], np.nan).astype(np.float32), dict(
            long_name=f"{ds.attrs.get('product', 'product')} {v} regridded to 4 km (not filtered)", units=UNITS[v]))
        if np.isfinite(eff) and eff >= 0.8 * k:
            notes.append(f"{v}: product resolution ~{eff:.0f} km is close to or coarser than the {k:g} km kernel, "
                         "so the feature is smoother than the training LR fields")
    out["sit_interp"] = (lr["sit_interp"], dict(
        long_name=f"{kernel_km:g} km block means of the regridded sit interpolated to 4 km (baseline)", units="m"))
    notes.append(f"sit: the product (~{eff:.0f} km) is smoother than the 4 km training fields at scales between "
                 f"{eff:.0f} and {kernel_km:g} km, which the {kernel_km:g} km box removes")

    data = {n: (("y", "x"), a.astype(np.float32), dict(at, grid_mapping="polar_stereographic"))
            for n, (a, at) in out.items()}
    data["mask"] = (("y", "x"), valid.astype(np.int8), dict(
        long_name="valid cells (1 = ocean cell of the grid where the product has sit and sic)",
        flag_values=np.array([0, 1], np.int8), flag_meanings="invalid valid", grid_mapping="polar_stereographic"))
    data["polar_stereographic"] = rg["polar_stereographic"]
    coords = {c: rg[c] for c in ("x", "y", "latitude", "longitude")}
    if "time" in rg.coords and rg["time"].size == 1:
        coords["time"] = ((), np.datetime64(np.asarray(rg["time"].values).reshape(()), "ns"),
                          dict(standard_name="time"))
    feats = [PRODUCT_VARIABLES[v] for v in names]
    attrs = {
        "Conventions": "CF-1.8",
        "title": f"sitsr LR features from {ds.attrs.get('product', 'a product')}",
        "product": str(ds.attrs.get("product", "")),
        "source_file": str(ds.attrs.get("source_file", "")),
        "file_name": Path(str(ds.attrs.get("source_file", ""))).name,
        "conversions": str(ds.attrs.get("conversions", "none")),
        "processing": (f"regridded with {rg.attrs['method']} (radius {rg.attrs['radius_of_influence_km']:.1f} km) onto "
                       f"the 4 km {grid.name} window, grid land mask; mask = ocean & finite sit & finite sic; "
                       f"box filter {kernel_km:g} km (sit, divergence, shear) and {sic_kernel_km:g} km (sic) over "
                       "mask cells (sitsr_core.filters.box_filter, as sitsr_core.dataset.constitute_day)"),
        "effective_resolution_km": eff,
        "source_grid_spacing_km": float(ds.attrs.get("grid_spacing_km", np.nan)),
        "kernel_km": float(kernel_km),
        "sic_kernel_km": float(sic_kernel_km),
        "features": ",".join(feats),
        "missing_features": ",".join(f for f in FEATURES if f not in feats),
        "region": grid.name,
        "grid_window": rg.attrs["grid_window"],
        "n_valid_cells": int(valid.sum()),
        "n_ocean_cells_without_product": int((ocean & ~valid).sum()),
        "resolution_note": "; ".join(notes),
    }
    attrs.update({k: str(ds.attrs[k]) for k in ("time_coverage_start", "time_coverage_end") if k in ds.attrs})
    return xr.Dataset(data, coords=coords, attrs=attrs)


def write_features(ds: xr.Dataset, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write features (from :func:`product_features`) as the netCDF read by ``sitsr downscale --lr-file``.

    The file is written to a temporary sibling and renamed when complete
    (:func:`sitsr_core.fileio.atomic_output`).

    Raises
    ------
    SitsrInputError
        Missing ``sit_lr``/``sic_lr``/``mask``, or an existing ``path`` without ``overwrite``.
    """
    missing = [v for v in REQUIRED + ("mask",) if v not in ds.variables]
    if missing:
        raise SitsrInputError(f"{path}: features lack {', '.join(missing)} (build them with product_features)")
    path = Path(path)
    enc = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars if ds[v].ndim == 2}
    with fileio.atomic_output(path, overwrite=overwrite) as tmp:
        ds.to_netcdf(tmp, encoding=enc, format="NETCDF4")
    return path


def check_run_features(run, available, product: str = "this product") -> tuple[str, ...]:
    """Check that a product provides every feature a run was trained on.

    Parameters
    ----------
    run : path or Config
        Training run folder (its ``config.json``) or its configuration.
    available : Dataset, path of a features file, or iterable of feature names
    product : str
        Name used in the message.

    Returns
    -------
    tuple of str: the run's features.

    Raises
    ------
    SitsrInputError
        Naming the missing features; for missing divergence/shear, suggesting the sit+sic model.
    """
    needed = tuple(run.data.features) if isinstance(run, Config) else run_features(run)
    if isinstance(available, (str, os.PathLike)):
        with xr.open_dataset(fileio.check_netcdf_file(available)) as f:
            have = set(map(str, f.variables))
    elif isinstance(available, xr.Dataset):
        have = set(map(str, available.variables))
    else:
        have = set(available)
    missing = [f for f in needed if f not in have]
    if missing:
        where = "" if isinstance(run, Config) else f" ({run})"
        msg = (f"the model{where} reads the features {','.join(needed)}, "
               f"but {product} gives no {', '.join(missing)}")
        if set(missing) <= {"divergence_lr", "shear_lr"}:
            msg += ("; this product gives no divergence/shear: use a model trained with "
                    "data.features=sit_lr,sic_lr (`make book` builds runs/sitsic-{profile}-{region})")
        raise SitsrInputError(msg)
    return needed


def downscale_product(run_dir, lr_file, out_path, **kwargs) -> Path:
    """Check a features file against a run (:func:`check_run_features`), then downscale it.

    ``kwargs`` go to :func:`sitsr_core.downscale.downscale` (members, steps, conserve, overwrite,
    device, progress...). The check runs before the model is loaded, so a run that needs features
    the product lacks fails at once, with the message naming the model to use.
    """
    lr_file = Path(lr_file)
    if not lr_file.exists():
        raise SitsrInputError(f"{lr_file}: LR features file not found")
    with xr.open_dataset(fileio.check_netcdf_file(lr_file)) as f:
        product = f.attrs.get("product") or str(lr_file)
        have = [v for v in FEATURES if v in f.variables]
    check_run_features(run_dir, have, product)
    return downscale.downscale(run_dir, None, None, out_path=out_path, lr_file=lr_file, **kwargs)


def cell_area_km2(grid: Grid) -> np.ndarray:
    """True (ellipsoidal) area of each 4 km cell, km², shape (ny, nx).

    The stereographic grid is true to scale at 60 N only: a 4 km x 4 km cell covers
    ``16 / areal_scale`` km² (about 15 % more than 16 km² at the pole).
    """
    import pyproj

    lon, lat = grid.lonlat()
    f = pyproj.Proj(PROJ4).get_factors(lon.astype(np.float64), lat.astype(np.float64))
    return (grid.dx / 1000.0) ** 2 / np.asarray(f.areal_scale)


def ice_volume(sit, mask=None, dx_km: float = 4.0, area_km2=None):
    """Total ice volume (km³): the sum of effective thickness x cell area over valid cells.

    Parameters
    ----------
    sit : array, shape (..., ny, nx)
        Effective thickness (m); NaN cells do not count.
    mask : array, shape (ny, nx), optional
        True/1 on the cells to count.
    dx_km : float
        Grid spacing: each cell counts ``dx_km**2`` km² (nominal area).
    area_km2 : array, shape (ny, nx), optional
        Cell areas (e.g. :func:`cell_area_km2`) instead of ``dx_km**2``.

    Returns
    -------
    float, or an array over the leading dimensions (e.g. one volume per ensemble member).
    """
    a = np.asarray(sit, dtype=np.float64)
    valid = np.isfinite(a)
    if mask is not None:
        valid &= np.asarray(mask).astype(bool)
    area = dx_km**2 if area_km2 is None else np.asarray(area_km2, dtype=np.float64)
    vol = (np.where(valid, a, 0.0) * area).sum(axis=(-2, -1)) * 1e-3  # m x km² = 1e-3 km³
    return float(vol) if np.ndim(vol) == 0 else vol
