"""Dataset constitution: 4 km fields -> (LR context, HR target, interpolation baseline) per day.

Step 1 of the slides, made honest: observe the neXtSIM 4 km fields ``sit``, ``sic``,
``divergence``, ``shear`` through an observation operator (:mod:`sitsr_core.observe`; default
``"product"``: each variable as a real product would see it -- smoothed, on its coarse grid, with
noise -- then regridded and box-filtered like a real product (120 km; sea-ice concentration 24 km);
``"moving-mean"``: the slides' noise-free 120 km moving box mean), keep the land mask, and split the days
into training / validation / test date windows separated by gap days (consecutive
days are correlated, so a gap avoids leakage between splits).

The store layout is described in ``notes/CONTRACTS.md``; :func:`open_dataset`
opens it lazily and :func:`norm_stats` returns the normalisation statistics
(ocean cells of training days only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from . import fileio, filters, observe
from .errors import SitsrDataError, SitsrInputError
from .grid import Grid
from .observe import ObservationOperator

LR_FEATURES = ("sit_lr", "sic_lr", "divergence_lr", "shear_lr")
SPLITS = ("train", "val", "test", "gap")
#: Days observed together by :func:`constitute` (one regridding per product grid and chunk).
CHUNK_DAYS = 30


#: Default days excluded on each side of every val/test window. The fine-scale field ``sit - sit_lr``
#: of the synthetic winters keeps a day-to-day correlation of 0.77-0.88 at 1 day, 0.35 at 4, 0.11-0.26 at 7
#: and 0.05-0.10 at 10 days (:func:`sitsr_core.metrics.lag_correlation`, issue 14), so a training day
#: closer than 10 days to an evaluation day would share part of its fine-scale pattern.
GAP_DAYS = 10
#: Purpose that :func:`split_days` requires before it hands out the test days: only the final table
#: (:func:`sitsr_core.evaluate` on ``split="test"``) reads them; every choice is made on ``val`` days.
FINAL_TABLE = "final-table"


@dataclass(frozen=True)
class SplitSpec:
    """Date windows of the validation and test splits; every other day trains.

    Attributes
    ----------
    val : tuple of (start, end) date strings, inclusive
        Validation windows (the slides use two windows of 6 days).
    test : tuple of (start, end) date strings, inclusive
        Held-out test windows.
    gap_days : int
        Days on each side of every val/test window excluded from training (default
        :data:`GAP_DAYS`, the decorrelation time of the fine-scale field).
    """

    val: tuple[tuple[str, str], ...] = ()
    test: tuple[tuple[str, str], ...] = ()
    gap_days: int = GAP_DAYS


def default_splits(dates: pd.DatetimeIndex, gap_days: int = GAP_DAYS) -> SplitSpec:
    """Slides-like splits for a series of days.

    Two validation windows of 6 days at 35 % and 70 % of the period, and a
    test window made of the last 12 % of the days (at least 6), each with
    ``gap_days`` gap days on both sides. The default winter (180 days) keeps
    96 training days, 12 validation days and 22 test days.
    """
    n = len(dates)
    if n < 3 * (6 + 2 * gap_days):
        raise SitsrInputError(
            f"{n} days are too few for default splits with {gap_days} gap days; give --val/--test windows")
    ntest = max(6, int(round(0.12 * n)))
    val = []
    for frac in (0.35, 0.70):
        i = int(frac * n)
        val.append((str(dates[i].date()), str(dates[i + 5].date())))
    test = [(str(dates[n - ntest].date()), str(dates[-1].date()))]
    return SplitSpec(tuple(val), tuple(test), gap_days)


def assign_splits(dates: pd.DatetimeIndex, spec: SplitSpec) -> np.ndarray:
    """Label each day ``train``, ``val``, ``test`` or ``gap``.

    Parameters
    ----------
    dates : DatetimeIndex, length T
    spec : SplitSpec

    Returns
    -------
    ndarray of str, shape (T,)

    Raises
    ------
    SitsrInputError
        If a window is reversed, outside the data, or overlaps another window
        (including its gap days).
    """
    dates = pd.DatetimeIndex(dates).normalize()
    labels = np.full(len(dates), "train", dtype="<U5")
    taken = np.zeros(len(dates), dtype=bool)
    for kind in ("val", "test"):
        for start, end in getattr(spec, kind):
            s, e = pd.Timestamp(start), pd.Timestamp(end)
            if e < s:
                raise SitsrInputError(f"{kind} window {start}..{end} ends before it starts")
            if s < dates[0] or e > dates[-1]:
                raise SitsrInputError(
                    f"{kind} window {start}..{end} lies outside the data ({dates[0].date()}..{dates[-1].date()})")
            inside = (dates >= s) & (dates <= e)
            near = (dates >= s - pd.Timedelta(days=spec.gap_days)) & (dates <= e + pd.Timedelta(days=spec.gap_days))
            if (taken & inside).any():
                raise SitsrInputError(f"{kind} window {start}..{end} overlaps another split window or its gap days")
            labels[near & ~taken & ~inside] = "gap"
            labels[inside] = kind
            taken |= near
    if not (labels == "train").any():
        raise SitsrInputError("the split windows leave no training day")
    return labels


def constitute_day(day: dict[str, np.ndarray], mask: np.ndarray, kernel_km: float = 120.0,
                   sic_kernel_km: float = 24.0, dx_km: float = 4.0, operator: ObservationOperator | None = None,
                   grid: Grid | None = None, date=None) -> dict[str, np.ndarray]:
    """Observe one day's 4 km fields into the LR context and the interpolation baseline.

    Parameters
    ----------
    day : dict of str -> ndarray, shape (ny, nx)
        ``sit``, ``sic``, ``divergence``, ``shear`` (NaN on land).
    mask : ndarray of bool, shape (ny, nx)
        True on ocean cells.
    kernel_km, sic_kernel_km : float
        Training box filters (used when ``operator`` is None).
    operator : ObservationOperator, optional
        How the LR context is observed (:mod:`sitsr_core.observe`); default: the noise-free
        moving mean of ``kernel_km``/``sic_kernel_km`` (the slides' operator).
    grid, date
        The window and the day (needed by the ``"product"`` operator).

    Returns
    -------
    dict of float32 arrays, shape (ny, nx): ``sit``, ``sit_lr``, ``sic_lr``,
    ``divergence_lr``, ``shear_lr``, ``sit_interp`` (and ``sit_obs``, shape (by, bx), with the
    ``"product"`` operator).
    """
    if operator is None:
        operator = ObservationOperator("moving-mean", kernel_km=kernel_km, sic_kernel_km=sic_kernel_km)
    out = {"sit": np.where(mask, day["sit"], np.nan).astype(np.float32)}
    out.update(observe.observe_day(day, mask, operator.validate(), grid, date, dx_km))
    return out


def _stats(sums: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    out = {}
    for name, (n, s, s2) in sums.items():
        mean = s / n
        out[name] = {"mean": float(mean), "std": float(np.sqrt(max(s2 / n - mean**2, 1e-12)))}
    return out


def constitute(moorings, out: str | os.PathLike, kernel_km: float = 120.0, sic_kernel_km: float = 24.0,
               splits: SplitSpec | None = None, start: str | None = None, end: str | None = None,
               mapping: dict[str, str] | None = None, allow_gaps: bool = False, overwrite: bool = False,
               progress: bool = True, operator: str | ObservationOperator = "product", seed: int = 0) -> Path:
    """Build the dataset store from moorings files.

    Parameters
    ----------
    moorings : str, path or sequence
        Moorings files or glob patterns (read lazily, one day at a time).
    out : path
        Output zarr store (``.zarr``) or netCDF file (``.nc``); written to a
        temporary name and renamed when complete.
    kernel_km, sic_kernel_km : float
        Box-filter widths (km) for sit/divergence/shear and for sic.
    splits : SplitSpec, optional
        Date windows; default :func:`default_splits`.
    start, end : str, optional
        Restrict to these dates (inclusive).
    mapping, allow_gaps
        Passed to :func:`sitsr_core.fileio.open_moorings`.
    overwrite : bool
        Replace an existing output.
    progress : bool
        Show a tqdm bar.
    operator : {"product", "moving-mean"} or ObservationOperator
        How the LR context is observed (:mod:`sitsr_core.observe`; a name takes that operator's
        defaults with ``kernel_km``, ``sic_kernel_km`` and ``seed``; an operator object carries its
        own, which then replace those arguments everywhere, attributes included). Saved as JSON in
        ``attrs["observation_operator"]``.
    seed : int
        Seed of the observation noise (each day draws from ``(seed, day)``).

    Returns
    -------
    Path of the store.
    """
    out = Path(out)
    if out.suffix not in (".zarr", ".nc"):
        raise SitsrInputError(f"{out}: output must end in .zarr or .nc")
    fileio.check_output(out, overwrite)
    if isinstance(operator, str):
        operator = ObservationOperator(operator, seed, kernel_km, sic_kernel_km)
    operator = operator.validate()
    # the operator is the one source of the training filters (an operator object overrides the arguments)
    kernel_km, sic_kernel_km = operator.kernel_km, operator.sic_kernel_km
    filters.box_kernel(kernel_km)
    filters.box_kernel(sic_kernel_km)
    src, grid = fileio.open_moorings(moorings, mapping=mapping, allow_gaps=allow_gaps)
    if start or end:
        src = src.sel(time=slice(start, end))
        if src.sizes["time"] == 0:
            raise SitsrInputError(f"no day of the moorings lies between {start} and {end}")
    dates = pd.DatetimeIndex(src["time"].values)
    spec = splits or default_splits(dates)
    labels = assign_splits(dates, spec)
    mask = np.asarray(src["mask"].values, dtype=bool)
    if not mask.any():
        raise SitsrDataError(f"{src.attrs.get('source_files')}: the land mask leaves no ocean cell")

    names = ("sit", "sic") + LR_FEATURES + ("sit_interp",)  # sic: the 4 km truth of the heat-flux diagnostic
    arrays = {n: np.empty((len(dates),) + grid.shape, dtype=np.float32) for n in names}
    if operator.name == "product":
        _, g = operator.sit.cells()
        arrays["sit_obs"] = np.empty((len(dates),) + observe.coarse_shape(grid.shape, g), dtype=np.float32)
    sums: dict[str, list[float]] = {}
    files = src.attrs.get("source_files", "moorings")
    # closed on error too, so that a user error is the last line printed
    with tqdm(total=len(dates), desc="constitute", unit="day", disable=not progress) as bar:
        for c0 in range(0, len(dates), CHUNK_DAYS):  # a chunk of days shares one regridding per product grid
            idx = range(c0, min(c0 + CHUNK_DAYS, len(dates)))
            checked = [fileio.check_day({v: src[v].isel(time=i).values for v in fileio.VARIABLES}, mask,
                                    f"{files} {dates[i].date()}") for i in idx]
            obs = observe.observe_days({v: np.stack([d[v] for d in checked]) for v in fileio.VARIABLES}, mask, operator,
                                       grid, dates[c0:idx.stop])
            for j, i in enumerate(idx):
                fields = {v: np.where(mask, checked[j][v], np.nan).astype(np.float32) for v in ("sit", "sic")}
                fields.update({k: a[j] for k, a in obs.items()})
                for n in arrays:
                    arrays[n][i] = fields[n]
                if labels[i] == "train":
                    fields["anomaly"] = fields["sit"] - fields["sit_lr"]
                    for n in ("sit",) + LR_FEATURES + ("anomaly",):
                        v = fields[n][mask]
                        v = v[np.isfinite(v)].astype(np.float64)
                        acc = sums.setdefault(n, [0.0, 0.0, 0.0])
                        acc[0] += v.size
                        acc[1] += v.sum()
                        acc[2] += (v**2).sum()
            bar.update(len(idx))

    attrs_lr = {
        "sit": {"long_name": "sea ice effective thickness, 4 km (target)", "units": "m"},
        "sic": {"long_name": "sea ice concentration, 4 km (truth of the heat-flux diagnostic, never a model input)",
                "units": "1"},
        "sit_lr": {"long_name": f"sea ice effective thickness observed by the {operator.name} operator, "
                              f"{kernel_km:g} km box mean", "units": "m"},
        "sic_lr": {"long_name": f"sea ice concentration, {sic_kernel_km:g} km box mean", "units": "1"},
        "divergence_lr": {"long_name": f"sea ice divergence, {kernel_km:g} km box mean", "units": "day-1"},
        "shear_lr": {"long_name": f"sea ice shear, {kernel_km:g} km box mean", "units": "day-1"},
        "sit_interp": {"long_name": f"{kernel_km:g} km block means of sit bilinearly interpolated to 4 km "
                                   "(interpolation baseline)", "units": "m"},
    }
    ds = xr.Dataset(
        {n: (("time", "y", "x"), arrays[n], attrs_lr[n]) for n in names},
        coords={"time": dates, "x": ("x", grid.x, {"units": "m"}), "y": ("y", grid.y, {"units": "m"})},
    )
    for c in ("latitude", "longitude"):
        if c in src.coords:
            ds = ds.assign_coords({c: (("y", "x"), np.asarray(src[c].values, dtype=np.float32))})
    if "sit_obs" in arrays:
        y_obs, x_obs = observe.coarse_coords(grid, operator.sit.cells()[1])
        ds["sit_obs"] = (("time", "y_obs", "x_obs"), arrays["sit_obs"], {
            "long_name": f"sea ice effective thickness observed on the {operator.sit.grid_km:g} km product grid "
                         "(with its noise; NaN where not observed)", "units": "m"})
        ds = ds.assign_coords(y_obs=("y_obs", y_obs, {"units": "m"}), x_obs=("x_obs", x_obs, {"units": "m"}))
    ds["mask"] = (("y", "x"), mask.astype(np.uint8), {"long_name": "model domain (1 = ocean, 0 = land)"})
    ds["split"] = ("time", labels.astype("<U5"), {"long_name": "split of each day: train, val, test or gap"})
    ds.attrs = {
        "title": "sitsr super-resolution dataset",
        "source": files,
        "source_attrs": json.dumps({k: str(v) for k, v in src.attrs.items() if k != "source_files"}),
        "kernel_km": float(kernel_km),
        "sic_kernel_km": float(sic_kernel_km),
        "observation_operator": operator.to_json(),
        "seed": int(operator.seed),
        "region": grid.name,
        "grid_window": json.dumps([grid.row0, grid.col0, grid.ny, grid.nx]),
        "splits": json.dumps({"val": spec.val, "test": spec.test, "gap_days": spec.gap_days}),
        "norm_stats": json.dumps(_stats(sums)),
    }
    with fileio.atomic_output(out, overwrite=overwrite) as tmp:
        if out.suffix == ".zarr":
            ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True)
        else:
            ds.to_netcdf(tmp)
    return out


def open_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Open a dataset store lazily and check its layout.

    Raises
    ------
    SitsrDataError
        If the store is missing or lacks a required variable.
    """
    path = Path(path)
    if not path.exists():
        raise SitsrInputError(f"{path}: dataset not found (build it with `sitsr dataset`)")
    try:
        if path.suffix == ".zarr" or path.is_dir():
            ds = xr.open_zarr(path, consolidated=True)
        else:
            ds = xr.open_dataset(path, chunks={"time": 1})
    except Exception as exc:  # noqa: BLE001 - any backend failure is a bad store for the user
        raise SitsrDataError(f"{path}: cannot be opened as a sitsr dataset ({exc.__class__.__name__}: {exc})") from None
    need = ("sit",) + LR_FEATURES + ("sit_interp", "mask", "split")
    missing = [v for v in need if v not in ds.variables]
    if missing or "norm_stats" not in ds.attrs:
        raise SitsrDataError(f"{path}: not a sitsr dataset (missing {missing or ['norm_stats attribute']})")
    return ds


def norm_stats(ds: xr.Dataset) -> dict[str, dict[str, float]]:
    """Normalisation statistics ``{name: {"mean", "std"}}`` stored with the dataset."""
    return json.loads(ds.attrs["norm_stats"])


def split_days(ds: xr.Dataset, split: str, purpose: str | None = None) -> pd.DatetimeIndex:
    """Dates of one split (``train``, ``val``, ``test``, ``gap``).

    The test days are handed out only with ``purpose=FINAL_TABLE``, which only the final
    evaluation passes (``sitsr evaluate --split test``): defaults, sweep rankings and
    regularisations are chosen on ``val`` days (``tests/test_protocol.py`` checks the code for it).

    Raises
    ------
    SitsrInputError
        Unknown split, or the test split asked for without ``purpose=FINAL_TABLE``.
    """
    if split not in SPLITS:
        raise SitsrInputError(f"unknown split {split!r}; choose one of {SPLITS}")
    if split == "test" and purpose != FINAL_TABLE:
        raise SitsrInputError("the test split is read only by the final evaluation (sitsr evaluate --split test); "
                              "make choices on the 'val' split")
    labels = np.asarray(ds["split"].values).astype(str)
    return pd.DatetimeIndex(ds["time"].values[labels == split])
