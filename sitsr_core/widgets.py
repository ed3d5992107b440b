"""Interactive explorer of the generated ensembles (ipywidgets + matplotlib, inline backend).

:class:`Explorer` opens a folder of ``sit_hrai_YYYYMMDD.nc`` files written by
``sitsr downscale`` (layout in ``notes/CONTRACTS.md``) and, optionally, the
dataset store for the 4 km truth ``sit`` of the same dates. It offers a date
picker, a view selector (one member, the ensemble mean or standard deviation,
the truth, the LR context, the interpolation baseline, the error of the mean),
a region zoom, a transect tool and the isotropic spectrum of the zoomed view.

Figures are drawn by plain matplotlib and sent to ``ipywidgets.Output`` areas
as PNG images, so the explorer works with ``%matplotlib inline`` (no ipympl)
and its last state survives in an executed notebook and in the offline book.
Everything the widget shows is computed by methods that run headlessly:
:meth:`Explorer.state` (the field on screen and its metadata),
:meth:`Explorer.render` (map and spectrum) and :meth:`Explorer.render_transect`.

Each output file is read once per date (and the truth once per date) and kept
in a small cache: moving the member slider, changing the view or the zoom never
reads a file again. :attr:`Explorer.reads` counts the reads.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from scipy import ndimage

from . import plotting, spectra
from .dataset import open_dataset
from .downscale import parse_output_name
from .errors import SitsrDataError, SitsrInputError
from .fileio import check_netcdf_file
from .grid import Grid, cartopy_crs, grid_from_xy
from .plotting import setup_cartopy

#: Views of the explorer: value -> (label, field kind for colour map and scale).
VIEWS: dict[str, tuple[str, str]] = {
    "member": ("member", "sit"),
    "mean": ("ensemble mean", "sit"),
    "std": ("ensemble std", "std"),
    "truth": ("truth (4 km)", "sit"),
    "lr": ("LR context", "sit"),
    "interp": ("interpolation", "sit"),
    "error": ("error (mean - truth)", "error"),
}

#: Colour-bar labels of the field kinds.
COLORBAR_LABELS = {"sit": "sea-ice thickness (m)", "std": "ensemble std of thickness (m)",
                   "error": "ensemble mean - truth (m)"}

#: Smallest zoom window (cells per side) whose spectrum is drawn.
MIN_SPECTRUM_CELLS = 8


def output_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The ensemble outputs of a folder, by date.

    Parameters
    ----------
    folder : path
        Folder holding ``sit_hrai_YYYYMMDD.nc`` files (other files are ignored).

    Returns
    -------
    dict of str -> Path
        ``YYYY-MM-DD`` -> file, sorted by date.

    Raises
    ------
    SitsrInputError
        If the folder is missing or holds no output file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SitsrInputError(f"{folder}: no such folder (write ensembles there with `sitsr downscale`)")
    found = {}
    for p in folder.iterdir():
        date = parse_output_name(p.name)
        if date is not None:
            found[str(date.date())] = p
    if not found:
        raise SitsrInputError(f"{folder}: no sit_hrai_YYYYMMDD.nc file (write them with `sitsr downscale`)")
    return dict(sorted(found.items()))


def transect(field: np.ndarray, start, end, n: int | None = None, dx_km: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Sample fields along a straight line by bilinear interpolation.

    Parameters
    ----------
    field : ndarray, shape (..., ny, nx)
        One field or a stack (e.g. ensemble members on the leading axis). NaN marks land.
    start, end : (row, col)
        End points in grid cells (fractional allowed), ``0 <= row <= ny - 1``, ``0 <= col <= nx - 1``.
    n : int, optional
        Number of sample points (at least 2); default one per cell of length, plus one.
    dx_km : float
        Grid spacing (km).

    Returns
    -------
    distance : ndarray, shape (n,)
        Distance from ``start`` (km).
    values : ndarray, shape (..., n)
        Bilinear interpolation (:func:`scipy.ndimage.map_coordinates`, order 1); NaN where
        any of the cells with a non-zero weight is NaN.

    Raises
    ------
    SitsrInputError
        If an end point lies outside the grid or ``n < 2``.
    """
    a = np.asarray(field, dtype=np.float64)
    if a.ndim < 2:
        raise SitsrInputError(f"transect: field must be at least 2-D (got shape {a.shape})")
    ny, nx = a.shape[-2:]
    p0 = np.asarray(start, dtype=np.float64).reshape(-1)
    p1 = np.asarray(end, dtype=np.float64).reshape(-1)
    for name, p in (("start", p0), ("end", p1)):
        if p.size != 2 or not (0 <= p[0] <= ny - 1 and 0 <= p[1] <= nx - 1):
            raise SitsrInputError(f"transect: {name} {tuple(p)} must be (row, col) inside the "
                                  f"{ny} x {nx} grid")
    length = float(np.hypot(*(p1 - p0)))
    n = max(2, int(np.ceil(length)) + 1) if n is None else int(n)
    if n < 2:
        raise SitsrInputError(f"transect: need at least 2 points (got n={n})")
    t = np.linspace(0.0, 1.0, n)
    coords = p0[:, None] + (p1 - p0)[:, None] * t[None, :]
    flat = a.reshape((-1, ny, nx))
    out = np.empty((flat.shape[0], n))
    for i, f in enumerate(flat):
        valid = np.isfinite(f)
        vals = ndimage.map_coordinates(np.where(valid, f, 0.0), coords, order=1, mode="nearest")
        if valid.all():
            out[i] = vals
        else:
            w = ndimage.map_coordinates(valid.astype(np.float64), coords, order=1, mode="nearest")
            out[i] = np.where(w > 1.0 - 1e-9, vals, np.nan)
    return length * dx_km * t, out.reshape(a.shape[:-2] + (n,))


def _limits(values: np.ndarray, q: float = 99.5, symmetric: bool = False) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return (-1.0, 1.0) if symmetric else (0.0, 1.0)
    if symmetric:
        lim = float(np.percentile(np.abs(v), q)) or 1.0
        return -lim, lim
    hi = float(np.percentile(v, q))
    return 0.0, hi if hi > 0 else 1.0


class Explorer:
    """Interactive view of generated ensembles against the truth, for ``%matplotlib inline``.

    Parameters
    ----------
    outputs : path
        Folder of ``sit_hrai_YYYYMMDD.nc`` files (``sitsr downscale``).
    dataset : path, optional
        Dataset store (``sitsr dataset``) providing the truth ``sit`` of each date; without it
        the ``truth`` and ``error`` views are not offered.
    date : str, optional
        Initial date ``YYYY-MM-DD`` (default: the first output).
    member : int
        Initial member.
    view : str
        Initial view, a key of :data:`VIEWS`.
    cache_size : int
        Number of dates kept in memory.
    figsize : (float, float)
        Size of the map-and-spectrum figure (inches).

    Attributes
    ----------
    dates : list of str
        Dates with an output file, ``YYYY-MM-DD``.
    grid : Grid or None
        The 4 km window of the outputs (None when ``x``/``y`` are not a neXtSIM window: plain axes).
    reads : int
        Number of file reads so far (one per output file, one per truth date).
    draws : int
        Number of redraws of the live widget.
    date, view, member : ipywidgets.Dropdown, ipywidgets.Dropdown, ipywidgets.IntSlider
        Date picker, view selector, member slider.
    rows, cols : ipywidgets.IntRangeSlider
        Zoom window, inclusive cell ranges (rows from south to north, columns from west to east).
    start_row, start_col, end_row, end_col : ipywidgets.IntSlider
        Transect end points A and B (grid cells of the full window).
    widget : ipywidgets.VBox
        The assembled explorer (built and drawn on first access).
    """

    def __init__(self, outputs: str | os.PathLike, dataset: str | os.PathLike | None = None, date: str = "",
                 member: int = 0, view: str = "mean", cache_size: int = 8, figsize=(11.0, 4.6)):
        import ipywidgets as w

        self.files = output_files(outputs)
        self.dates = list(self.files)
        self.reads = 0
        self.draws = 0
        self.figsize = tuple(figsize)
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._cache_size = max(1, int(cache_size))
        self._ds = None
        if dataset:
            self._ds = open_dataset(dataset)
        self.kernel_km = float(self._ds.attrs.get("kernel_km", 120.0)) if self._ds is not None else 120.0
        try:
            first = str(pd.Timestamp(date).date()) if date else self.dates[0]
        except ValueError:
            raise SitsrInputError(f"date {date!r} is not a date (YYYY-MM-DD)") from None
        if first not in self.files:
            raise SitsrInputError(f"no output for {date} in {outputs} (have {', '.join(self.dates)})")
        d = self._load(first)
        self.grid = d["grid"]
        if self.grid is not None:
            setup_cartopy()  # coastlines from the local Natural Earth data, never a download
        views = [k for k in VIEWS if self._ds is not None or k not in ("truth", "error")]
        if view not in views:
            raise SitsrInputError(f"unknown or unavailable view {view!r}; choose one of {views}")
        nm, (ny, nx) = d["members"].shape[0], d["mask"].shape
        if not 0 <= member < nm:
            raise SitsrInputError(f"member {member} out of range (the {first} output has {nm} members)")

        wide = {"style": {"description_width": "initial"}}
        self.date = w.Dropdown(options=self.dates, value=first, description="date", layout=w.Layout(width="230px"))
        self.view = w.Dropdown(options=[(VIEWS[k][0], k) for k in views], value=view, description="view",
                               layout=w.Layout(width="240px"))
        self.member = w.IntSlider(value=member, min=0, max=nm - 1, description="member", continuous_update=False)
        self.rows = w.IntRangeSlider(value=(0, ny - 1), min=0, max=ny - 1, description="rows (S to N)",
                                     continuous_update=False, **wide)
        self.cols = w.IntRangeSlider(value=(0, nx - 1), min=0, max=nx - 1, description="cols (W to E)",
                                     continuous_update=False, **wide)
        self.reset_zoom = w.Button(description="full window", layout=w.Layout(width="110px"))
        a, b = self._default_transect(ny, nx)
        self.start_row = w.IntSlider(value=a[0], min=0, max=ny - 1, description="A row", continuous_update=False)
        self.start_col = w.IntSlider(value=a[1], min=0, max=nx - 1, description="A col", continuous_update=False)
        self.end_row = w.IntSlider(value=b[0], min=0, max=ny - 1, description="B row", continuous_update=False)
        self.end_col = w.IntSlider(value=b[1], min=0, max=nx - 1, description="B col", continuous_update=False)
        self._map_out = w.Output()
        self._transect_out = w.Output()
        self._box = None
        self._live = False
        self._hold = False

        self.date.observe(self._on_date, names="value")
        self.view.observe(lambda _: self._changed(map_=True), names="value")
        self.member.observe(lambda _: self._changed(map_=True, transect_=True), names="value")
        for s in (self.rows, self.cols):
            s.observe(lambda _: self._changed(map_=True), names="value")
        for s in (self.start_row, self.start_col, self.end_row, self.end_col):
            s.observe(lambda _: self._changed(map_=True, transect_=True), names="value")
        self.reset_zoom.on_click(lambda _: self._reset_zoom())

    # ------------------------------------------------------------------ data
    @staticmethod
    def _default_transect(ny: int, nx: int) -> tuple[tuple[int, int], tuple[int, int]]:
        return (int(0.2 * (ny - 1)), int(0.2 * (nx - 1))), (int(0.8 * (ny - 1)), int(0.8 * (nx - 1)))

    def _read_output(self, path: Path) -> dict:
        self.reads += 1
        with xr.open_dataset(check_netcdf_file(path)) as f:
            missing = [v for v in ("sit_ai", "sit_ai_mean", "sit_ai_std", "sit_lr", "mask") if v not in f.variables]
            if missing:
                raise SitsrDataError(f"{path}: not a sitsr ensemble output (missing {missing})")
            out = {k: np.asarray(f[v].transpose(*dims).values, dtype=np.float32) for k, v, dims in (
                ("members", "sit_ai", ("member", "y", "x")), ("mean", "sit_ai_mean", ("y", "x")),
                ("std", "sit_ai_std", ("y", "x")), ("lr", "sit_lr", ("y", "x")))}
            out["interp"] = (np.asarray(f["sit_interp"].transpose("y", "x").values, dtype=np.float32)
                             if "sit_interp" in f.variables else None)
            out["mask"] = np.asarray(f["mask"].values) > 0
            out["x"] = np.asarray(f["x"].values, dtype=np.float64) if "x" in f.variables else None
            out["y"] = np.asarray(f["y"].values, dtype=np.float64) if "y" in f.variables else None
            out["attrs"] = dict(f.attrs)
        return out

    def _read_truth(self, date: str, need_interp: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Truth ``sit`` (and ``sit_interp`` when asked) of one date from the dataset store, shape (ny, nx)."""
        if self._ds is None:
            return None, None
        times = pd.DatetimeIndex(self._ds["time"].values)
        match = np.flatnonzero(times.normalize() == pd.Timestamp(date))
        if match.size == 0:
            return None, None
        self.reads += 1
        names = ["sit"] + (["sit_interp"] if need_interp and "sit_interp" in self._ds else [])
        snap = self._ds[names].isel(time=int(match[0])).load()
        interp = np.asarray(snap["sit_interp"].values, dtype=np.float32) if "sit_interp" in names else None
        return np.asarray(snap["sit"].values, dtype=np.float32), interp

    def _load(self, date: str) -> dict:
        """All arrays of one date (read once, then cached), shapes (M, ny, nx) and (ny, nx)."""
        if date in self._cache:
            self._cache.move_to_end(date)
            return self._cache[date]
        d = self._read_output(self.files[date])
        mask = d["mask"]
        truth, interp = self._read_truth(date, need_interp=d["interp"] is None)
        if truth is not None and truth.shape != mask.shape:
            raise SitsrDataError(f"{self.files[date]}: grid {mask.shape} differs from the dataset's {truth.shape}")
        d["truth"] = truth
        if d["interp"] is None:
            d["interp"] = interp
        for k in ("mean", "std", "lr", "interp", "truth"):
            if d[k] is not None:
                d[k] = np.where(mask, d[k], np.nan).astype(np.float32)
        d["members"] = np.where(mask, d["members"], np.nan).astype(np.float32)
        thick = d["members"][:, mask]
        if truth is not None:
            thick = np.concatenate([thick.ravel(), d["truth"][mask]])
        d["limits"] = {"sit": _limits(thick), "std": _limits(d["std"], 99.0)}
        d["limits"]["error"] = _limits(d["mean"] - truth, 99.0, symmetric=True) if truth is not None else (-1.0, 1.0)
        try:
            d["grid"] = grid_from_xy(d["x"], d["y"]) if d["x"] is not None and d["y"] is not None else None
        except SitsrInputError:
            d["grid"] = None
        self._cache[date] = d
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return d

    def _full_field(self, d: dict, view: str, member: int) -> np.ndarray | None:
        if view == "member":
            return d["members"][member]
        if view == "error":
            return None if d["truth"] is None else d["mean"] - d["truth"]
        return d[view]

    def state(self, date: str | None = None, view: str | None = None, member: int | None = None,
              rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None) -> dict:
        """What the explorer shows (the widgets' values, each overridable).

        Parameters
        ----------
        date, view, member, rows, cols : optional
            Override the widget values (``rows``/``cols`` are inclusive cell ranges).

        Returns
        -------
        dict with keys
            ``date`` (str), ``view`` (str), ``member`` (int), ``n_members`` (int),
            ``field`` (ndarray, shape (r1 - r0 + 1, c1 - c0 + 1), m, NaN on land or when the view is
            unavailable), ``mask`` (bool ndarray, same shape, True on ocean), ``rows`` ``(r0, r1)``,
            ``cols`` ``(c0, c1)``, ``kind`` (``sit``, ``std`` or ``error``), ``vmin``/``vmax``
            (colour limits shared by the views of that kind on that date), ``label`` and ``title``
            (str, naming the view, member and date), ``grid`` (Grid of the zoom window, or None),
            ``available`` (bool, False when the truth is missing for ``truth``/``error``),
            ``start``/``end`` (transect end points, (row, col) in full-window cells).
        """
        date = date or self.date.value
        view = view or self.view.value
        member = self.member.value if member is None else int(member)
        r0, r1 = rows or self.rows.value
        c0, c1 = cols or self.cols.value
        if view not in VIEWS:
            raise SitsrInputError(f"unknown view {view!r}; choose one of {list(VIEWS)}")
        d = self._load(date)
        nm = d["members"].shape[0]
        member = min(max(member, 0), nm - 1)
        full = self._full_field(d, view, member)
        available = full is not None
        if full is None:
            full = np.full(d["mask"].shape, np.nan, dtype=np.float32)
        ny, nx = full.shape
        r0, r1 = sorted((min(max(int(r0), 0), ny - 1), min(max(int(r1), 0), ny - 1)))
        c0, c1 = sorted((min(max(int(c0), 0), nx - 1), min(max(int(c1), 0), nx - 1)))
        kind = VIEWS[view][1]
        vmin, vmax = d["limits"][kind]
        label = {"member": f"member {member} of {nm}", "mean": f"ensemble mean ({nm} members)",
                 "std": f"ensemble std ({nm} members)"}.get(view, VIEWS[view][0])
        missing = " (no interpolation in the output or dataset)" if view == "interp" else " (no truth for this date)"
        title = f"{label} · {date}" + ("" if available else missing)
        grid = d["grid"]
        sub = None if grid is None else Grid(grid.name, grid.row0 + r0, grid.col0 + c0, r1 - r0 + 1, c1 - c0 + 1)
        return {"date": date, "view": view, "member": member, "n_members": nm,
                "field": full[r0:r1 + 1, c0:c1 + 1], "mask": d["mask"][r0:r1 + 1, c0:c1 + 1],
                "rows": (r0, r1), "cols": (c0, c1), "kind": kind, "vmin": vmin, "vmax": vmax,
                "label": label, "title": title, "grid": sub, "available": available,
                "start": (self.start_row.value, self.start_col.value), "end": (self.end_row.value, self.end_col.value)}

    def current_field(self) -> np.ndarray:
        """The zoomed field on screen, shape (r1 - r0 + 1, c1 - c0 + 1), m."""
        return self.state()["field"]

    def transect_data(self, date: str | None = None) -> dict:
        """Thickness along the transect A-B for every member, the mean, truth, LR and interpolation.

        Returns
        -------
        dict
            ``distance`` (ndarray, shape (n,), km), ``members`` (shape (M, n)), ``mean``, ``truth``,
            ``lr``, ``interp`` (shape (n,), or None when unavailable), all in m; ``start``, ``end``
            (row, col); ``date``.
        """
        date = date or self.date.value
        d = self._load(date)
        start, end = (self.start_row.value, self.start_col.value), (self.end_row.value, self.end_col.value)
        dist, members = transect(d["members"], start, end)
        out = {"distance": dist, "members": members, "start": start, "end": end, "date": date}
        for k in ("mean", "truth", "lr", "interp"):
            out[k] = None if d[k] is None else transect(d[k], start, end)[1]
        return out

    # ------------------------------------------------------------------ figures
    @staticmethod
    def _extent(grid: Grid | None, shape) -> tuple[float, float, float, float]:
        if grid is None:
            return (-0.5, shape[1] - 0.5, -0.5, shape[0] - 0.5)
        h = grid.dx / 2
        return (grid.x[0] - h, grid.x[-1] + h, grid.y[0] - h, grid.y[-1] + h)

    def _cell_to_xy(self, rc) -> tuple[float, float]:
        """Full-window (row, col) -> map coordinates (projection metres, or cells without a grid)."""
        g = self.grid
        if g is None:
            return float(rc[1]), float(rc[0])
        return float(g.x[0] + rc[1] * g.dx), float(g.y[0] + rc[0] * g.dx)

    def _draw_map(self, fig: Figure, spec, s: dict, colorbar: bool = True, transect_line: bool = True,
                  colorbar_location: str = "right"):
        extent = self._extent(s["grid"], s["field"].shape)
        if s["grid"] is not None:
            ax = fig.add_subplot(spec, projection=cartopy_crs())
            plotting.polar_map(ax, s["field"], s["grid"], s["title"], s["kind"], vmin=s["vmin"], vmax=s["vmax"],
                               colorbar=False)
            ax.set_facecolor("0.85")  # cells masked as land by the model look like the coastline's land
        else:
            ax = fig.add_subplot(spec)
            r0, c0 = s["rows"][0], s["cols"][0]
            ny, nx = s["field"].shape
            extent = (c0 - 0.5, c0 + nx - 0.5, r0 - 0.5, r0 + ny - 0.5)
            ax.imshow(np.ma.masked_invalid(s["field"]), origin="lower", cmap=plotting.cmap(s["kind"]),
                      vmin=s["vmin"], vmax=s["vmax"], interpolation="nearest", extent=extent)
            ax.set_title(s["title"], fontsize=9)
            ax.set_xlabel("column")
            ax.set_ylabel("row")
        if colorbar:
            cb = fig.colorbar(ax.images[0], ax=ax, shrink=0.8, pad=0.02, location=colorbar_location)
            cb.set_label(COLORBAR_LABELS[s["kind"]])
        if transect_line:
            # The map's data coordinates are the grid's projection coordinates (or cells without a grid).
            (xa, ya), (xb, yb) = self._cell_to_xy(s["start"]), self._cell_to_xy(s["end"])
            ax.plot([xa, xb], [ya, yb], color="crimson", lw=1.4)
            for (x, y), name in (((xa, ya), "A"), ((xb, yb), "B")):
                ax.plot([x], [y], "o", color="crimson", ms=3.5)
                ax.annotate(name, (x, y), xytext=(3, 3), textcoords="offset points", color="crimson",
                            fontsize=9, fontweight="bold", annotation_clip=True)
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
        return ax

    def render(self, figsize=None) -> Figure:
        """Draw the current view: the map of the zoom window and its isotropic spectrum.

        Returns
        -------
        matplotlib.figure.Figure
            ``axes[0]`` is the map (its first image holds :meth:`state` ``["field"]``), then the
            colour bar, then the spectrum (the view, the truth and the LR context over the same window).
        """
        s = self.state()
        fig = Figure(figsize=figsize or self.figsize, layout="constrained")
        gs = fig.add_gridspec(1, 2, width_ratios=[1.2, 1.0])
        self._draw_map(fig, gs[0, 0], s)
        ax = fig.add_subplot(gs[0, 1])
        d = self._load(s["date"])
        (r0, r1), (c0, c1) = s["rows"], s["cols"]
        zoom = (slice(r0, r1 + 1), slice(c0, c1 + 1))
        curves = {}
        if s["available"]:
            colour = {"sit": "C0", "std": "C4", "error": "C3"}[s["kind"]]
            curves[s["label"]] = (s["field"], {"color": colour, "lw": 2})
        if d["truth"] is not None and s["view"] != "truth":
            curves["truth (4 km)"] = (d["truth"][zoom], {"color": "k", "lw": 1.2})
        if s["view"] != "lr":
            curves["LR context"] = (d["lr"][zoom], {"color": "C1", "lw": 1.2, "ls": "--"})
        ny, nx = s["field"].shape
        note = None
        if min(ny, nx) < MIN_SPECTRUM_CELLS:
            note = f"zoom of {ny} x {nx} cells: too small for a spectrum"
        else:
            try:
                k, psd = spectra.isotropic_spectrum(np.stack([c[0] for c in curves.values()]), s["mask"],
                                                    dx=(self.grid.dx / 1000.0 if self.grid else 4.0))
            except ValueError:
                note = "no ocean cell in the zoom window"
        if note:
            ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        else:
            kernel = self.kernel_km if self.kernel_km <= 1.0 / k[0] else None
            plotting.spectra_plot(ax, k, {lab: dict(c[1], psd=p) for (lab, c), p in zip(curves.items(), psd)},
                                  kernel_km=kernel, dx_km=self.grid.dx / 1000.0 if self.grid else 4.0)
            ax.set_title(f"spectrum of rows {r0}-{r1}, cols {c0}-{c1}", fontsize=9)
            if s["kind"] != "sit":
                ax.set_ylabel("power spectral density (m$^2$ km)")
        return fig

    def render_transect(self, figsize=(10.0, 3.6)) -> Figure:
        """Draw thickness along the transect A-B: every member (thin grey), the highlighted member,
        the mean, the truth, the LR context and the interpolation.

        Returns
        -------
        matplotlib.figure.Figure
            One axes: distance (km) against thickness (m).
        """
        t = self.transect_data()
        fig = Figure(figsize=figsize, layout="constrained")
        ax = fig.add_subplot()
        dist = t["distance"]
        for i, m in enumerate(t["members"]):
            ax.plot(dist, m, color="0.6", lw=0.6, alpha=0.7, label="members" if i == 0 else None)
        m = min(self.member.value, len(t["members"]) - 1)
        ax.plot(dist, t["members"][m], color="C2", lw=1.0, label=f"member {m}")
        ax.plot(dist, t["mean"], color="C0", lw=2.0, label="ensemble mean")
        if t["truth"] is not None:
            ax.plot(dist, t["truth"], color="k", lw=1.4, label="truth (4 km)")
        ax.plot(dist, t["lr"], color="C1", lw=1.4, ls="--", label="LR context")
        if t["interp"] is not None:
            ax.plot(dist, t["interp"], color="C5", lw=1.0, ls=":", label="interpolation")
        (ra, ca), (rb, cb) = t["start"], t["end"]
        ax.set_title(f"transect A (row {ra}, col {ca}) to B (row {rb}, col {cb}) · {t['date']}", fontsize=9)
        ax.set_xlabel("distance from A (km)")
        ax.set_ylabel("sea-ice thickness (m)")
        ax.set_xlim(dist[0], dist[-1])
        ax.grid(alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        return fig

    def render_panels(self, views=("truth", "lr", "mean", "member", "std", "error"), ncols: int = 3,
                      panel_size: float = 3.3) -> Figure:
        """Small multiples of several views of the current date and zoom, thickness views on one colour scale.

        The thickness views share the colour bar on the right; the spread and error views have their own
        colour bars below them.

        Parameters
        ----------
        views : sequence of str
            Keys of :data:`VIEWS` (views that need the truth are skipped without a dataset).
        ncols : int
            Panels per row.
        panel_size : float
            Width of one panel (inches).

        Returns
        -------
        matplotlib.figure.Figure
        """
        views = [v for v in views if v in [o[1] for o in self.view.options]]
        nrows = -(-len(views) // ncols)
        fig = Figure(figsize=(panel_size * ncols + 0.8, panel_size * 1.1 * nrows), layout="constrained")
        gs = fig.add_gridspec(nrows, ncols)
        sit_axes, last_sit = [], None
        for i, v in enumerate(views):
            s = self.state(view=v)
            ax = self._draw_map(fig, gs[i // ncols, i % ncols], s, colorbar=s["kind"] != "sit", transect_line=False,
                                colorbar_location="bottom")
            if s["kind"] == "sit":
                sit_axes.append(ax)
                last_sit = ax
        if sit_axes:
            cb = fig.colorbar(last_sit.images[0], ax=sit_axes, shrink=0.8, pad=0.02)
            cb.set_label("sea-ice thickness (m)")
        return fig

    # ------------------------------------------------------------------ widget
    def _on_date(self, change) -> None:
        d = self._load(change["new"])
        nm, (ny, nx) = d["members"].shape[0], d["mask"].shape
        self._hold = True
        try:
            self.member.max = nm - 1
            if (self.rows.max, self.cols.max) != (ny - 1, nx - 1):
                self.grid = d["grid"]
                a, b = self._default_transect(ny, nx)
                for s, n, v in ((self.rows, ny, None), (self.cols, nx, None), (self.start_row, ny, a[0]),
                                (self.start_col, nx, a[1]), (self.end_row, ny, b[0]), (self.end_col, nx, b[1])):
                    s.max = n - 1
                    s.value = (0, n - 1) if v is None else v
        finally:
            self._hold = False
        self._changed(map_=True, transect_=True)

    def _reset_zoom(self) -> None:
        self._hold = True
        try:
            self.rows.value = (0, self.rows.max)
            self.cols.value = (0, self.cols.max)
        finally:
            self._hold = False
        self._changed(map_=True)

    def _changed(self, map_: bool = False, transect_: bool = False) -> None:
        if self._live and not self._hold:
            self.refresh(map_=map_, transect_=transect_)

    @staticmethod
    def _show(out, fig: Figure) -> None:
        from IPython.display import Image, display

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        with out:
            out.clear_output(wait=True)
            display(Image(data=buf.getvalue(), format="png"))

    def refresh(self, map_: bool = True, transect_: bool = True) -> None:
        """Redraw the widget's figures (map and spectrum, transect) into their output areas."""
        self.draws += 1
        if map_:
            self._show(self._map_out, self.render())
        if transect_:
            self._show(self._transect_out, self.render_transect())

    @property
    def widget(self):
        """The explorer as an ``ipywidgets.VBox`` (controls above the figures); drawn on first access."""
        if self._box is None:
            import ipywidgets as w

            controls = w.VBox([
                w.HBox([self.date, self.view, self.member]),
                w.HBox([self.rows, self.cols, self.reset_zoom]),
                w.HTML("<b>transect</b> A &rarr; B (grid cells of the full window)"),
                w.HBox([self.start_row, self.start_col]),
                w.HBox([self.end_row, self.end_col]),
            ])
            self._box = w.VBox([controls, self._map_out, self._transect_out])
            self._live = True
            self.refresh()
        return self._box

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
