"""neXtSIM moorings files: writing (synthetic data) and validated, lazy reading.

A moorings file ``Moorings_YYYYmMM.nc`` holds daily fields ``sit`` (effective
thickness, m), ``sic`` (1), ``divergence`` and ``shear`` (day-1) on the 4 km
polar stereographic grid (dims ``time, y, x``; ``time`` in days since
1900-01-01), plus ``latitude``, ``longitude``, ``land_mask`` and the
``polar_stereographic`` grid mapping. Synthetic and real model output enter the
same reader, :func:`open_moorings`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import warnings
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

from . import grid as gridmod
from .errors import SitsrDataError, SitsrInputError

TIME_UNITS = "days since 1900-01-01"
VARIABLES = ("sit", "sic", "divergence", "shear")

#: CF attributes of each moorings variable.
ATTRS = {
    "sit": {"long_name": "sea ice effective thickness (ice volume per grid-cell area)",
            "standard_name": "sea_ice_thickness", "units": "m"},
    "sic": {"long_name": "sea ice concentration", "standard_name": "sea_ice_area_fraction", "units": "1"},
    "divergence": {"long_name": "sea ice divergence rate", "standard_name": "divergence_of_sea_ice_velocity",
                   "units": "day-1"},
    "shear": {"long_name": "sea ice shear rate", "units": "day-1"},
}

#: Names under which real neXtSIM outputs may store the same quantities.
ALIASES = {
    "sit": ("sit", "thickness", "hice"),
    "sic": ("sic", "concentration", "cice"),
    "divergence": ("divergence", "div", "dvg"),
    "shear": ("shear", "deformation", "shr"),
}


class SitsrDataWarning(UserWarning):
    """Suspicious but usable data (e.g. a few negative thickness values)."""


#: Testing hook: when this environment variable equals an output's file name, :func:`atomic_output`
#: SIGKILLs the process once the temporary file is complete, before the rename (a crash mid-write).
KILL_BEFORE_RENAME_ENV = "SITSR_TEST_KILL_BEFORE_RENAME"

_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.(?P<kind>tmp|old)-(?P<host>.+)-(?P<pid>\d+)(?P<suffix>\.[^.]*)?$")


def atomic_path(path: str | os.PathLike) -> Path:
    """Temporary sibling of ``path`` (same suffix, hidden, named after this host and process) for write-then-rename."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{socket.gethostname()}-{os.getpid()}{path.suffix}")


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        pass
    return True


def remove_stale_temporaries(folder: str | os.PathLike, output: str | os.PathLike | None = None) -> list[Path]:
    """Remove the temporary siblings that killed processes of this host left in ``folder``.

    A SIGKILL (or a power cut) during :func:`atomic_output` leaves its hidden temporary file or
    folder behind; the temporaries of live processes (other ranks writing now) and of other hosts
    are kept, and so is the previous version of a replaced folder (``.NAME.old-*``) while ``NAME``
    itself is missing (a kill between the two renames: it is the copy to recover by hand).

    Parameters
    ----------
    folder : path
    output : path, optional
        Only the temporaries of this output (default: of every output).

    Returns
    -------
    list of Path, the removed entries.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    host = socket.gethostname()
    stale = []
    for entry in folder.iterdir():
        m = _TEMPORARY.match(entry.name)
        if m is None or m["host"] != host:
            continue
        if output is not None and m["stem"] + (m["suffix"] or "") != Path(output).name:
            continue
        if _alive(int(m["pid"])) or (m["kind"] == "old" and not (folder / m["stem"]).exists()):
            continue
        _remove(entry)
        stale.append(entry)
    return stale


# ----------------------------------------------------------------------------- netCDF input files

_NETCDF3_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def check_netcdf_file(path: str | os.PathLike) -> Path:
    """Check that ``path`` exists and is a complete netCDF-3 or netCDF-4/HDF5 file.

    A netCDF-3 file that was cut short opens without error and reads the missing part as zeros or
    fill values, so its size is compared with the bytes its variables need.

    Raises
    ------
    SitsrDataError
        Missing file, not netCDF, or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise SitsrDataError(f"{path}: no such file")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] in _NETCDF3_MAGIC:
        kind = "netCDF-3"
    elif head[:8] == _HDF5_MAGIC:
        kind = "netCDF-4/HDF5"
    else:
        raise SitsrDataError(
            f"{path}: not a netCDF file (first bytes {head[:8]!r}, size {size} bytes; "
            "expected 'CDF' or the HDF5 signature)"
        )
    try:
        with netCDF4.Dataset(path) as nc:
            if kind == "netCDF-3":
                need = sum(int(np.prod(v.shape, dtype=np.int64)) * v.dtype.itemsize for v in nc.variables.values())
                if size < need:
                    raise SitsrDataError(
                        f"{path}: truncated netCDF-3 file: {size} bytes on disk but its variables need "
                        f"at least {need} bytes (the missing part would read back as zeros)"
                    )
    except SitsrDataError:
        raise
    except Exception as exc:  # netCDF4 raises OSError / RuntimeError with C-library messages
        raise SitsrDataError(f"{path}: cannot open as {kind} (truncated or corrupt?): {exc}") from exc
    return path


def open_netcdf(path: str | os.PathLike, group: str | None = None, **kwargs) -> xr.Dataset:
    """Open (and load) a netCDF file or group with xarray, turning every failure into SitsrDataError."""
    path = check_netcdf_file(path)
    try:
        with xr.open_dataset(path, group=group, engine="netcdf4", **kwargs) as ds:
            return ds.load()
    except Exception as exc:
        where = f" (group /{group})" if group else ""
        raise SitsrDataError(f"{path}{where}: cannot read with xarray (truncated or corrupt?): {exc}") from exc


def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an existing output (unless ``overwrite``) or a missing / read-only folder, before any work."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise SitsrInputError(f"{path}: output exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise SitsrInputError(f"{path}: output folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise SitsrInputError(f"{path}: output folder {path.parent} is not writable")
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary path; on success fsync it and rename it onto ``path``, on failure remove it.

    The one write-then-rename mechanism of the package (netCDF, zarr stores, checkpoints, JSON,
    CSV): the temporary sibling (:func:`atomic_path`) is in the same folder, so the rename is
    atomic, and a reader sees either the old output or the complete new one, never a partial file.
    Works for files and directories (zarr stores). Refuses an existing ``path`` unless
    ``overwrite``. Temporaries of ``path`` left by killed processes are removed first.
    Testing hook: :data:`KILL_BEFORE_RENAME_ENV`.
    """
    path = check_output(path, overwrite)
    remove_stale_temporaries(path.parent, path)
    tmp = atomic_path(path)
    if tmp.exists():
        _remove(tmp)
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        if os.environ.get(KILL_BEFORE_RENAME_ENV) == path.name:
            os.kill(os.getpid(), signal.SIGKILL)
        if path.is_dir():
            old = path.with_name(f".{path.name}.old-{socket.gethostname()}-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            _remove(tmp)
        raise



def write_text_if_changed(path: str | os.PathLike, text: str) -> bool:
    """Write ``text`` atomically (:func:`atomic_output`) unless ``path`` already holds it; True when written.

    An unchanged file keeps its modification time, so make and Sphinx see nothing new.
    """
    path = Path(path)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return True

def moorings_dataset(grid: gridmod.Grid, times, fields: dict[str, np.ndarray], attrs: dict | None = None) -> xr.Dataset:
    """Assemble a moorings-format Dataset.

    Parameters
    ----------
    grid : Grid
    times : sequence of datetime-like, length T
    fields : dict of str -> ndarray, shape (T, ny, nx)
        ``sit``, ``sic``, ``divergence``, ``shear`` (NaN on land).
    attrs : dict, optional
        Global attributes to add.
    """
    lon, lat = grid.lonlat()
    land = grid.land_mask()
    ds = xr.Dataset(
        {name: (("time", "y", "x"), np.asarray(fields[name], dtype=np.float32),
                {**ATTRS[name], "grid_mapping": "polar_stereographic"}) for name in VARIABLES},
        coords={
            "time": ("time", pd.DatetimeIndex(times).values),
            "x": ("x", grid.x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}),
            "y": ("y", grid.y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}),
            "latitude": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "longitude": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )
    ds["land_mask"] = (("y", "x"), land.astype(np.int8),
                       {"long_name": "land mask", "flag_values": np.array([0, 1], np.int8),
                        "flag_meanings": "ocean land", "grid_mapping": "polar_stereographic"})
    ds["polar_stereographic"] = ((), np.int32(0), gridmod.grid_mapping_attrs())
    ds["time"].attrs.update({"standard_name": "time", "axis": "T"})
    ds.attrs.update({"Conventions": "CF-1.8", "title": "neXtSIM-format moorings", "grid_region": grid.name,
                     "grid_window": f"row0={grid.row0} col0={grid.col0} ny={grid.ny} nx={grid.nx}"})
    ds.attrs.update(attrs or {})
    return ds


def write_moorings(path: str | os.PathLike, ds: xr.Dataset, overwrite: bool = False) -> Path:
    """Write a moorings Dataset to netCDF atomically (``time`` in days since 1900-01-01)."""
    enc = {name: {"zlib": True, "complevel": 1, "_FillValue": np.float32(np.nan),
                  "chunksizes": (1,) + ds[name].shape[1:]} for name in VARIABLES if name in ds}
    enc["time"] = {"units": TIME_UNITS, "calendar": "standard", "dtype": "float64"}
    with atomic_output(path, overwrite=overwrite) as tmp:
        ds.to_netcdf(tmp, encoding=enc, format="NETCDF4")
    return Path(path)


def _expand(paths) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    for p in paths:
        matches = sorted(glob.glob(str(p)))
        if not matches:
            raise SitsrInputError(f"{p}: no moorings file matches this path")
        out.extend(Path(m) for m in matches)
    return out


def _check_file(path: Path, mapping: dict[str, str] | None
                ) -> tuple[dict[str, str], tuple[int, int], np.ndarray, np.ndarray]:
    """Open one file's metadata and check variables, dims and coordinates."""
    try:
        with xr.open_dataset(path, decode_times=True) as ds:
            present = sorted(ds.data_vars)
            names = {}
            for var in VARIABLES:
                candidates = (mapping[var],) if mapping and var in mapping else ALIASES[var]
                found = next((c for c in candidates if c in ds.variables), None)
                if found is None:
                    raise SitsrDataError(
                        f"{path}: missing variable {var!r} (looked for {list(candidates)}); "
                        f"variables present: {present}")
                if ds[found].dims != ("time", "y", "x"):
                    raise SitsrDataError(f"{path}: variable {found!r} has dims {ds[found].dims}, "
                                         "expected ('time', 'y', 'x')")
                names[var] = found
            if "x" not in ds.variables or "y" not in ds.variables:
                raise SitsrDataError(f"{path}: missing x/y projection coordinates; variables present: {present}")
            if not np.issubdtype(ds["time"].dtype, np.datetime64):
                raise SitsrDataError(f"{path}: time is not decodable as dates "
                                     f"(units: {ds['time'].attrs.get('units')!r})")
            units = {v: ds[names[v]].attrs.get("units") for v in VARIABLES}
            if units["sit"] in ("cm", "centimeters", "centimetres"):
                raise SitsrDataError(f"{path}: variable {names['sit']!r} is in cm; convert thickness to metres")
            return names, (ds.sizes["y"], ds.sizes["x"]), ds["x"].values, ds["y"].values
    except (OSError, ValueError, RuntimeError) as exc:
        if isinstance(exc, SitsrInputError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise SitsrDataError(f"{path}: cannot be read as netCDF ({exc.__class__.__name__}: {first})") from None


def open_moorings(paths, mapping: dict[str, str] | None = None, allow_gaps: bool = False,
                  chunks: dict | None = None) -> tuple[xr.Dataset, gridmod.Grid]:
    """Open and validate moorings files lazily (dask chunks of one day).

    Parameters
    ----------
    paths : str, path or sequence of them
        Files or glob patterns (``'data/moorings/Moorings_*.nc'``).
    mapping : dict, optional
        Variable names in the files for ``sit``, ``sic``, ``divergence``, ``shear``
        when they differ from the neXtSIM defaults (:data:`ALIASES` are tried).
    allow_gaps : bool
        Accept missing days in the daily series.
    chunks : dict, optional
        Dask chunks (default one day per chunk).

    Returns
    -------
    ds : xr.Dataset
        Variables ``sit``, ``sic``, ``divergence``, ``shear`` (time, y, x) and ``mask``
        (y, x; True = ocean), time sorted.
    grid : Grid
        The 4 km window the files cover.

    Raises
    ------
    SitsrDataError
        Missing variable (naming the file, the variable and those present), wrong
        dims, files on different grids, duplicate days or (unless ``allow_gaps``)
        gaps in the daily series.
    """
    files = _expand(paths)
    ref = None
    for path in files:
        names, shape, x, y = _check_file(path, mapping)
        if ref is None:
            ref = (names, shape, x, y, path)
        elif shape != ref[1] or not (np.allclose(x, ref[2]) and np.allclose(y, ref[3])):
            raise SitsrDataError(f"{path}: grid {shape} differs from {ref[4]} {ref[1]}; all files must share one grid")
    names, shape, x, y, _ = ref
    grid = gridmod.grid_from_xy(x, y)
    ds = xr.open_mfdataset([str(f) for f in files], combine="nested", concat_dim="time",
                           data_vars="minimal", coords="minimal", compat="override",
                           chunks=chunks or {"time": 1}, parallel=False)
    ds = ds.rename({v: k for k, v in names.items() if k != v})
    ds = ds.sortby("time")
    times = pd.DatetimeIndex(ds["time"].values).normalize()
    if times.has_duplicates:
        dup = times[times.duplicated()][0]
        raise SitsrDataError(f"{files[0].parent}: day {dup.date()} appears in more than one record")
    if len(times) > 1 and not allow_gaps:
        steps = np.diff(times.values).astype("timedelta64[D]").astype(int)
        if (steps != 1).any():
            i = int(np.argmax(steps != 1))
            raise SitsrDataError(
                f"{files[0].parent}: time gap between {times[i].date()} and {times[i + 1].date()} "
                f"({steps[i]} days); pass allow_gaps=True (--allow-gaps) to accept gaps")
    ds = ds.assign_coords(time=times)
    if "land_mask" in ds:
        land_mask = ds["land_mask"].isel(time=0) if "time" in ds["land_mask"].dims else ds["land_mask"]
        land = np.asarray(land_mask).astype(bool)
    else:
        land = ~np.isfinite(np.asarray(ds["sit"].isel(time=0)))
    out = ds[list(VARIABLES)]
    out["mask"] = (("y", "x"), ~land)
    for extra in ("latitude", "longitude"):
        if extra in ds.variables:
            out = out.assign_coords({extra: ds[extra].isel(time=0) if "time" in ds[extra].dims else ds[extra]})
    out.attrs = {k: v for k, v in ds.attrs.items()}
    out.attrs["source_files"] = ", ".join(f.name for f in files)
    return out, grid


def check_day(day: dict[str, np.ndarray], mask: np.ndarray, where: str) -> dict[str, np.ndarray]:
    """Mask NaN/fill values, report negative thickness, and return cleaned fields.

    Parameters
    ----------
    day : dict of str -> ndarray, shape (ny, nx)
        ``sit``, ``sic``, ``divergence``, ``shear`` of one day.
    mask : ndarray of bool, shape (ny, nx)
        True on ocean cells.
    where : str
        File and date, for messages.

    Returns
    -------
    dict of cleaned float32 arrays: NaN on land, fill values (|v| > 1e30) masked,
    negative ``sit``/``sic`` set to 0 (with a :class:`SitsrDataWarning`).

    Raises
    ------
    SitsrDataError
        If the day has no valid ocean cell.
    """
    out = {}
    for name, arr in day.items():
        a = np.asarray(arr, dtype=np.float32).copy()
        a[~np.isfinite(a) | (np.abs(a) > 1e30)] = np.nan
        a[~mask] = np.nan
        if name in ("sit", "sic"):
            neg = a < 0
            if neg.any():
                warnings.warn(f"{where}: {int(neg.sum())} negative {name} values (min {np.nanmin(a):.3g}) set to 0",
                              SitsrDataWarning, stacklevel=2)
                a[neg] = 0.0
        out[name] = a
    if not np.isfinite(out["sit"]).any():
        raise SitsrDataError(f"{where}: no valid sit value on ocean cells (all NaN, fill or land)")
    return out
