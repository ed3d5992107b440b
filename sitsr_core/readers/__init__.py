"""Readers for real sea-ice products, returning CF-named datasets in the project's variable names.

Every reader returns an :class:`xarray.Dataset` with

* standard variables (whichever the product has): ``sit`` (effective thickness, m = ice volume per
  cell area, as neXtSIM ``sit``), ``sic`` (area fraction 0-1), ``sit_uncertainty`` (m),
  ``divergence`` and ``shear`` (day-1);
* 2-D ``latitude``/``longitude`` coordinates (degrees) on the product's own grid, and for projected
  products 1-D ``x``/``y`` projection coordinates in metres plus ``attrs["crs_proj4"]``;
* ``attrs``: ``product``, ``source_file``, ``grid_spacing_km`` (nominal cell spacing),
  ``effective_resolution_km`` (the scale actually resolved, coarser than the spacing), and
  ``conversions`` (a ``"; "``-separated list of what the reader changed: units, masking, ice-area to
  effective thickness...).

A length-1 ``time`` dimension is squeezed to a scalar ``time`` coordinate.

Readers
-------
:func:`~sitsr_core.readers.topaz4.read_topaz4`
    TOPAZ4 fields interpolated onto the neXtSIM-DG initial-condition grids (group ``/data``).
:func:`~sitsr_core.readers.cs2smos.read_cs2smos`
    AWI/ESA CS2SMOS L4 weekly thickness (EASE2-North 25 km).
:func:`~sitsr_core.readers.osisaf.read_osisaf_conc`
    OSI SAF sea-ice concentration (OSI-401, polar stereographic 10 km).
:func:`~sitsr_core.readers.osisaf.read_osisaf_drift`
    OSI SAF low-resolution drift (OSI-405, 62.5 km) with divergence and shear.
:func:`read_product`
    Sniffs the product from the file and calls the right reader.

Every failure on a bad file raises :class:`~sitsr_core.errors.SitsrDataError` naming the file.
"""

from __future__ import annotations

import os

import xarray as xr

from .. import fileio
from ._common import STANDARD_VARIABLES, check_netcdf_file, lonlat_from_xy, sniff_product
from .cs2smos import EASE2_NORTH_PROJ4, read_cs2smos
from .osisaf import drift_deformation, read_osisaf_conc, read_osisaf_drift
from .topaz4 import read_topaz4


def read_product(path: str | os.PathLike, **kwargs) -> xr.Dataset:
    """Read any supported product, chosen by :func:`sniff_product`.

    ``kwargs`` go to the product's reader. A neXtSIM moorings file goes to
    :func:`sitsr_core.fileio.open_moorings` (the lead's reader) and is returned as is.
    """
    kind = sniff_product(path)
    if kind == "topaz4":
        return read_topaz4(path, **kwargs)
    if kind == "cs2smos":
        return read_cs2smos(path, **kwargs)
    if kind == "osisaf_conc":
        return read_osisaf_conc(path, **kwargs)
    if kind == "osisaf_drift":
        return read_osisaf_drift(path, **kwargs)
    return fileio.open_moorings(path, **kwargs)


__all__ = [
    "EASE2_NORTH_PROJ4",
    "STANDARD_VARIABLES",
    "check_netcdf_file",
    "drift_deformation",
    "lonlat_from_xy",
    "read_cs2smos",
    "read_osisaf_conc",
    "read_osisaf_drift",
    "read_product",
    "read_topaz4",
    "sniff_product",
]
