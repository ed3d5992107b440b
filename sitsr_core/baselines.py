"""A linear deconvolution baseline: Tikhonov-damped least squares against the known observation operator.

The LR context of a dataset is a *linear* function of the 4 km truth plus noise
(:mod:`sitsr_core.observe`): for the ``"moving-mean"`` operator the mask-aware box mean of
``kernel_km``; for ``"product"`` the chain "kernel means on the coarse grid -> bilinear regridding
to 4 km -> ``kernel_km`` box" (noise enters on the coarse grid). :class:`LinearObservation` builds
that linear map ``A`` (and its adjoint) for a window and a mask: the regridding matrix is read off
the very function the data went through (:func:`sitsr_core.observe.to_model_grid`), probed with
unit impulses, so the baseline knows the operator exactly.

:func:`deconvolve` solves, per day, ``min |A d - (y - A y)|^2 + reg^2 |d|^2`` with
:func:`scipy.sparse.linalg.lsqr` and returns ``y + d`` (``y`` = the LR field ``sit_lr``; the LR
field is the prior, so a large ``reg`` gives back the LR field). :func:`choose_regularisation`
picks ``reg`` on validation days only; :func:`stored_regularisation` keeps it in a JSON file
beside the dataset (``NAME.deconvolution.json``) where evaluation finds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import xarray as xr
from scipy import ndimage
from scipy.sparse.linalg import LinearOperator, lsqr

from . import fileio, filters, observe
from .dataset import open_dataset
from .errors import SitsrDataError, SitsrInputError
from .grid import Grid
from .provenance import dataset_record

#: Candidate regularisations (damping of lsqr, dimensionless: the operator has unit gain at large scales).
REGS = (1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
#: lsqr iterations per day.
ITERS = 200
_CACHE: dict = {}


def _box_parts(valid: np.ndarray, kernel_km: float, dx_km: float):
    w = filters.box_kernel(kernel_km, dx_km)
    v = valid.astype(np.float64)

    def conv(a):
        for axis in (0, 1):
            a = ndimage.correlate1d(a, w, axis=axis, mode="constant", cval=0.0)
        return a

    den = conv(v)
    den = np.where(valid, den, 1.0)
    return conv, v, den


def _probe_regrid(grid: Grid, mask: np.ndarray, obs: observe.FeatureObservation, dx_km: float) -> sp.csr_matrix:
    """The regridding of coarse values to 4 km as a sparse matrix (4 km cells x coarse cells).

    Probes :func:`sitsr_core.observe.to_model_grid` with unit impulses on a stride-4 lattice of coarse
    cells (16 fields in one call): each 4 km value depends only on coarse cells within ~1.5 cells,
    so at most one impulse of a lattice reaches it, and it is the lattice cell nearest to it.
    """
    _, g = obs.cells(dx_km)
    by, bx = observe.coarse_shape(grid.shape, g)
    ok = observe.coarse_valid(mask, g)
    s = 4
    probes = np.zeros((s * s, by, bx))
    II, JJ = np.meshgrid(np.arange(by), np.arange(bx), indexing="ij")
    for a in range(s):
        for b in range(s):
            probes[a * s + b][(II % s == a) & (JJ % s == b)] = 1.0
    probes[:, ~ok] = np.nan
    y, x = observe.coarse_coords(grid, g)
    ds = xr.Dataset({"sit": (("t", "y", "x"), probes)}, coords={"x": x, "y": y},
                    attrs={"crs_proj4": observe.PROJ4, "grid_spacing_km": float(obs.grid_km)})
    hr, _, _ = observe.to_model_grid(ds, grid, ["sit"], land_mask=~mask)
    out = np.nan_to_num(hr["sit"])
    ny, nx = grid.shape
    fi = (np.arange(ny) - (g - 1) / 2) / g
    fj = (np.arange(nx) - (g - 1) / 2) / g
    rows, cols, vals = [], [], []
    for a in range(s):
        for b in range(s):
            ci = np.clip(a + s * np.round((fi - a) / s), 0, by - 1).astype(int)
            cj = np.clip(b + s * np.round((fj - b) / s), 0, bx - 1).astype(int)
            field = out[a * s + b]
            r, c = np.nonzero(field)
            rows.append(r * nx + c)
            cols.append(ci[r] * bx + cj[c])
            vals.append(field[r, c])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(ny * nx, by * bx))


class LinearObservation:
    """The noise-free part of an operator's ``sit`` observation as a linear map on a window.

    ``forward(x)`` gives the LR field (4 km, zero off :attr:`valid`) of a 4 km truth ``x`` (ocean
    cells); ``adjoint`` is its transpose. ``valid`` are the cells where the LR field is defined.
    """

    def __init__(self, operator: observe.ObservationOperator, mask: np.ndarray, grid: Grid | None = None,
                 dx_km: float = 4.0):
        self.mask = np.asarray(mask, dtype=bool)
        self.operator = operator
        if operator.name == "product":
            if grid is None:
                raise SitsrInputError("the product operator's deconvolution needs the grid")
            self.W = observe.window_matrix(self.mask, operator.sit, dx_km)
            self.R = _probe_regrid(grid, self.mask, operator.sit, dx_km)
            reached = np.asarray(abs(self.R).sum(axis=1)).ravel().reshape(self.mask.shape) > 0
            self.valid = self.mask & reached
        else:
            self.W = self.R = None
            self.valid = self.mask.copy()
        self._conv, self._v, self._den = _box_parts(self.valid, operator.kernel_km, dx_km)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.where(self.mask, x, 0.0)
        if self.W is not None:
            x = (self.R @ (self.W @ x.ravel())).reshape(self.mask.shape)
        return self._v * self._conv(self._v * x) / self._den

    def adjoint(self, y: np.ndarray) -> np.ndarray:
        x = self._v * self._conv(self._v * y / self._den)
        if self.W is not None:
            x = (self.W.T @ (self.R.T @ x.ravel())).reshape(self.mask.shape)
        return np.where(self.mask, x, 0.0)


def linear_observation(operator: observe.ObservationOperator, mask: np.ndarray, grid: Grid | None = None,
                       dx_km: float = 4.0) -> LinearObservation:
    """Cached :class:`LinearObservation` (one per operator, grid and mask)."""
    key = (operator.to_json(), grid, np.packbits(np.asarray(mask, bool)).tobytes(), np.shape(mask), dx_km)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = LinearObservation(operator, mask, grid, dx_km)
    return _CACHE[key]


def deconvolve(lr_fields, mask: np.ndarray, operator: observe.ObservationOperator, reg: float, *,
               grid: Grid | None = None, iters: int = ITERS) -> np.ndarray:
    """Tikhonov deconvolution of the LR thickness against the known operator (metres).

    Parameters
    ----------
    lr_fields : ndarray (ny, nx) or (T, ny, nx), or dict with ``sit_lr``
        The LR thickness context ``sit_lr`` (m, NaN off the ocean).
    mask : bool ndarray (ny, nx)
        Ocean cells.
    operator : ObservationOperator
        The dataset's operator (:func:`sitsr_core.observe.operator_of`).
    reg : float
        Damping (:func:`choose_regularisation`); large values give back the LR field.
    grid : Grid
        The dataset's window (:func:`window_grid`); required by the ``"product"`` operator.
    iters : int
        lsqr iterations per day.

    Returns
    -------
    ndarray like ``sit_lr``, float32: the deconvolved thickness (m), NaN off the ocean.
    """
    y = np.asarray(lr_fields["sit_lr"] if isinstance(lr_fields, dict) else lr_fields, dtype=np.float64)
    if y.ndim == 3:
        return np.stack([deconvolve(d, mask, operator, reg, grid=grid, iters=iters) for d in y])
    lin = linear_observation(operator, mask, grid)
    m, v = lin.mask, lin.valid & np.isfinite(y)
    if not v.any():
        raise SitsrInputError("the LR field has no valid ocean cell to deconvolve")
    prior = np.where(v, y, 0.0)
    if (m & ~v).any():  # ocean cells without an LR value take the nearest valid one as prior
        _, (ii, jj) = ndimage.distance_transform_edt(~v, return_indices=True)
        prior = np.where(m & ~v, prior[ii, jj], prior)
    rhs = np.where(v, y - lin.forward(prior), 0.0)[v]
    shape, n_in, n_out = m.shape, int(m.sum()), int(v.sum())

    def matvec(d):
        x = np.zeros(shape)
        x[m] = np.ravel(d)
        return lin.forward(x)[v]

    def rmatvec(r):
        z = np.zeros(shape)
        z[v] = np.ravel(r)
        return lin.adjoint(z)[m]

    A = LinearOperator((n_out, n_in), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    d = lsqr(A, rhs, damp=float(reg), iter_lim=int(iters), atol=1e-10, btol=1e-10)[0]
    out = np.full(shape, np.nan)
    out[m] = prior[m] + d
    return out.astype(np.float32)


def window_grid(ds: xr.Dataset) -> Grid:
    """The 4 km window of a dataset store (``attrs["grid_window"]``)."""
    row0, col0, ny, nx = json.loads(ds.attrs["grid_window"])
    return Grid(str(ds.attrs.get("region", "custom")), int(row0), int(col0), int(ny), int(nx))


def deconvolve_days(ds: xr.Dataset, dates, reg: float, iters: int = ITERS) -> np.ndarray:
    """:func:`deconvolve` on some days of a dataset store, shape (T, ny, nx), metres."""
    sel = ds.sel(time=list(dates))
    return deconvolve(sel["sit_lr"].values, ds["mask"].values.astype(bool), observe.operator_of(ds), reg,
                      grid=window_grid(ds), iters=iters)


def choose_regularisation(ds: xr.Dataset, split: str = "val", regs=REGS, max_days: int = 4,
                          iters: int = ITERS) -> float:
    """The damping of lowest RMSE against the truth on (at most ``max_days``, evenly spread) days of ``split``.

    Only ``val`` (or ``train``) days may be used: the test days are for the final tables.

    Raises
    ------
    SitsrInputError
        ``split="test"``, or no day in the split.
    SitsrDataError
        No finite score (no truth on those days).
    """
    if split not in ("val", "train"):
        raise SitsrInputError(f"the regularisation is chosen on val (or train) days, not {split!r}")
    labels = np.asarray(ds["split"].values).astype(str)
    dates = np.asarray(ds["time"].values)[labels == split]
    if dates.size == 0:
        raise SitsrInputError(f"the dataset has no {split} day to choose the regularisation on")
    dates = dates[np.unique(np.linspace(0, dates.size - 1, min(max_days, dates.size)).round().astype(int))]
    mask = ds["mask"].values.astype(bool)
    truth = ds["sit"].sel(time=dates).values
    scores = []
    for reg in regs:
        est = deconvolve_days(ds, dates, reg, iters)
        err = (est[:, mask] - truth[:, mask]) ** 2
        scores.append(float(np.sqrt(err[np.isfinite(err)].mean())) if np.isfinite(err).any() else np.inf)
    if not np.isfinite(scores).any():
        raise SitsrDataError(f"no finite {split} score to choose the deconvolution regularisation on")
    return float(regs[int(np.argmin(scores))])


def regularisation_path(data: str | os.PathLike) -> Path:
    """Where :func:`stored_regularisation` keeps a dataset's choice: ``NAME.deconvolution.json`` beside it."""
    data = Path(data)
    return data.with_name(data.stem + ".deconvolution.json")


def stored_regularisation(data: str | os.PathLike, **kwargs) -> float:
    """The dataset's deconvolution damping: read from :func:`regularisation_path`, else chosen on val days and saved.

    The file holds the choice with what it was made from: the dataset's fingerprint (days, splits,
    operator, statistics: :func:`sitsr_core.provenance.dataset_record`), its observation operator and the
    search settings (``kwargs`` of :func:`choose_regularisation`); a file made from anything else
    (a rebuilt store, another search) is recomputed.
    """
    path = regularisation_path(data)
    ds = open_dataset(data)
    made_from = {"split": "val", "dataset_fingerprint": dataset_record(ds, data)["fingerprint"],
                 "observation_operator": observe.operator_of(ds).to_json(),
                 "search": {k: (list(v) if isinstance(v, (tuple, list, np.ndarray)) else v) for k, v in kwargs.items()}}
    made_from = json.loads(json.dumps(made_from))  # as it reads back
    if path.exists():
        saved = json.loads(path.read_text())
        if {k: saved.get(k) for k in made_from} == made_from:
            return float(saved["reg"])
    reg = choose_regularisation(ds, "val", **kwargs)
    with fileio.atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps({"reg": reg, **made_from}))
    return reg
