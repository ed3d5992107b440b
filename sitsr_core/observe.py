"""Observation operators: how the LR context is made from the 4 km truth.

Two named operators, set in a frozen :class:`ObservationOperator` saved with the dataset
(``attrs["observation_operator"]``, JSON):

``"product"`` (default)
    Each feature is *observed like a real product* and then goes through the same code path as a
    real product (:func:`sitsr_core.to_model_grid` then
    :func:`sitsr_core.model_context`, exactly what
    :func:`sitsr_core.features.product_features` does). Per feature (:class:`FeatureObservation`):

    1. smoothing: the mean of the truth over a ``kernel_km`` square centred on each cell of the
       product's coarse grid (ocean cells only) -- the product's own resolution;
    2. the coarse grid: cells of ``grid_km`` anchored at the window's corner (a cell is observed
       when its block holds at least one ocean cell);
    3. observation noise: Gaussian, std ``noise_std`` (physical units), spatially correlated with an
       e-folding length ``noise_corr_km`` (0: white on the coarse grid), seeded per day from
       ``(seed, day)`` so a dataset is reproducible; values are clipped to the physical range;
    4. the product is regridded bilinearly back to 4 km and box-filtered with the training kernels
       (``kernel_km``; ``sic``: ``sic_kernel_km``), as for a real product.

    Defaults and why (they must carry no more information than a product does):

    * ``sit`` like CS2SMOS L4 (weekly composite on a 25 km EASE2 grid, uncertainty 0.1-0.5 m,
      errors correlated by the optimal interpolation): a 120 km mean on a 24 km grid with 0.2 m
      noise correlated over 48 km. The 120 km scale is that of the information a daily field gets
      from it: CryoSat-2 tracks and SMOS footprints are merged over a week during which the ice
      drifts 35-70 km, so the product does not place 50-120 km features of a given day (its
      nominal ~50 km resolution is that of the weekly mean). After the training filter (the same
      120 km box as for a real product) the context is a ~120 km-scale field; the box leaves
      ~0.1 m of the noise, at the 50-250 km scales a deconvolution would have to amplify.
      Measured on the default synthetic ``central`` winter (2021-03-25, the issue's 196 x 196 core;
      damping chosen on val days): a linear deconvolution (:mod:`sitsr_core.baselines`) takes the
      LR error from 0.57 to 0.20 m with the moving mean, from 0.63 to 0.57 m with this operator;
      with a 48 km ``sit`` kernel it still went from 0.59 to 0.45 m.
    * ``sic`` like OSI SAF (OSI-401, ~25 km footprints): a 24 km block mean on a 24 km grid with
      3 % white noise (winter consolidated ice errors are 2-5 %), clipped to [0, 1].
    * ``divergence`` and ``shear`` like deformation from OSI-405 drift (62.5 km grid, ~125 km
      resolution): a 128 km mean on a 64 km grid with white noise of 0.01 day-1 (drift errors of
      ~1-2 km/day over ~125 km), ``shear`` clipped at 0.

``"moving-mean"``
    The slides' operator: the noise-free ``kernel_km`` moving box mean of the truth at every 4 km
    cell (:func:`sitsr_core.model_context` on the truth). A linear deconvolution nearly
    inverts it (issue 14: 0.25 m against 0.57 m for the LR field), so it holds far more than any
    product; it is kept so the book can show both.

:func:`observe_day` (:func:`observe_days`) applies an operator; :func:`coarse_observe` is steps
1-3 (the product's values on its coarse grid, ``sit_obs`` in the store); :func:`window_matrix` is
step 1-2 as a sparse matrix (used by the deconvolution baseline of :mod:`sitsr_core.baselines`).
:func:`observation_constraint` and :func:`conserve_observed` make fields agree with what was
observed, within its noise (``--conserve``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr
from scipy import ndimage

from . import filters
from .errors import SitsrInputError
from .grid import PROJ4, Grid
from .regrid import regrid_to_grid

OPERATORS = ("product", "moving-mean")
VARIABLES = ("sit", "sic", "divergence", "shear")
#: Physical range each observed variable is clipped to (None: unbounded).
BOUNDS = {"sit": (0.0, None), "sic": (0.0, 1.0), "divergence": (None, None), "shear": (0.0, None)}


@dataclass(frozen=True)
class FeatureObservation:
    """How one variable is observed by its product.

    Attributes
    ----------
    kernel_km : float
        Width of the square the product averages over, centred on each coarse cell (km).
    grid_km : float
        Spacing of the product's coarse grid (km).
    noise_std : float
        Standard deviation of the observation noise, physical units.
    noise_corr_km : float
        e-folding length of the noise correlation (km); 0 gives white noise on the coarse grid.
    """

    kernel_km: float
    grid_km: float
    noise_std: float = 0.0
    noise_corr_km: float = 0.0

    def cells(self, dx_km: float = 4.0) -> tuple[int, int]:
        """``(kernel cells, grid cells)`` on the 4 km grid; both integers of the same parity."""
        k, g = self.kernel_km / dx_km, self.grid_km / dx_km
        if min(k, g) < 1 or abs(k - round(k)) > 1e-6 or abs(g - round(g)) > 1e-6:
            raise SitsrInputError(f"observation kernel {self.kernel_km:g} km and grid {self.grid_km:g} km must be "
                                  f"positive multiples of {dx_km:g} km")
        k, g = int(round(k)), int(round(g))
        if (k - g) % 2:
            raise SitsrInputError(f"observation kernel {self.kernel_km:g} km and grid {self.grid_km:g} km must span "
                                  "cell counts of the same parity (the kernel is centred on each coarse cell)")
        if self.noise_std < 0 or self.noise_corr_km < 0:
            raise SitsrInputError("observation noise std and correlation length must be >= 0")
        return k, g


SIT_CS2SMOS = FeatureObservation(kernel_km=120.0, grid_km=24.0, noise_std=0.2, noise_corr_km=48.0)
SIC_OSISAF = FeatureObservation(kernel_km=24.0, grid_km=24.0, noise_std=0.03, noise_corr_km=0.0)
DEFORMATION_OSI405 = FeatureObservation(kernel_km=128.0, grid_km=64.0, noise_std=0.01, noise_corr_km=0.0)


@dataclass(frozen=True)
class ObservationOperator:
    """The LR observation operator of a dataset (saved as JSON in ``attrs["observation_operator"]``).

    Attributes
    ----------
    name : {"product", "moving-mean"}
    seed : int
        Noise seed; each day's noise is drawn from ``(seed, day number, variable)``.
    kernel_km, sic_kernel_km : float
        The training box filters applied to the 4 km (regridded) fields.
    sit, sic, divergence, shear : FeatureObservation
        The products (used by ``"product"`` only).
    """

    name: str = "product"
    seed: int = 0
    kernel_km: float = 120.0
    sic_kernel_km: float = 24.0
    sit: FeatureObservation = SIT_CS2SMOS
    sic: FeatureObservation = SIC_OSISAF
    divergence: FeatureObservation = DEFORMATION_OSI405
    shear: FeatureObservation = DEFORMATION_OSI405

    def validate(self) -> "ObservationOperator":
        """Check the names and grids; return self."""
        if self.name not in OPERATORS:
            raise SitsrInputError(f"unknown observation operator {self.name!r}; choose one of {', '.join(OPERATORS)}")
        for v in VARIABLES:
            getattr(self, v).cells()
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ObservationOperator":
        d = dict(d)
        for v in VARIABLES:
            if v in d:
                d[v] = FeatureObservation(**d[v])
        return cls(**d).validate()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def to_model_grid(ds: xr.Dataset, grid: Grid, names, method: str = "bilinear",
                  radius_km: float | None = None, land_mask=True) -> tuple[dict, np.ndarray, xr.Dataset]:
    """Regrid product fields onto the model's 4 km window (step 1 of :func:`sitsr_core.features.product_features`).

    One code path for real products and for the synthetic products of
    this module: :func:`sitsr_core.regrid.regrid_to_grid` with the grid's land mask.

    Returns
    -------
    hr : dict of str -> float64 ndarray (ny, nx)
        The regridded fields (NaN on land and where the product has no value).
    ocean : bool ndarray (ny, nx)
        True on the grid's ocean cells.
    rg : xarray.Dataset
        The regridding output (coordinates, grid mapping, attributes).
    """
    rg = regrid_to_grid(ds, grid, list(names), method=method, radius_km=radius_km, land_mask=land_mask)
    ocean = rg["land_mask"].values == 0
    return {v: np.asarray(rg[v].values, dtype=np.float64) for v in names}, ocean, rg


def model_context(fields: dict[str, np.ndarray], valid: np.ndarray, kernel_km: float = 120.0,
                  sic_kernel_km: float = 24.0, dx_km: float = 4.0) -> dict[str, np.ndarray]:
    """The training filters: 4 km fields -> LR features and the interpolation baseline.

    The one filtering step shared by :func:`sitsr_core.features.product_features` (regridded products), the synthetic
    products of this module and the moving-mean operator (the 4 km truth itself):
    a ``kernel_km`` box mean (``sic``: ``sic_kernel_km``) over the ``valid`` cells
    (:func:`sitsr_core.filters.box_filter`), and ``sit_interp``, the ``kernel_km`` block means of
    ``sit`` interpolated back (:func:`sitsr_core.filters.interp_baseline`).

    Parameters
    ----------
    fields : dict of str -> ndarray (ny, nx)
        Any of ``sit``, ``sic``, ``divergence``, ``shear`` (``sit`` required).
    valid : bool ndarray (ny, nx)

    Returns
    -------
    dict of float32 arrays: ``{name}_lr`` for each field, and ``sit_interp``; NaN off ``valid``.
    """
    out = {}
    for v, a in fields.items():
        k = sic_kernel_km if v == "sic" else kernel_km
        field = np.where(valid, a, np.nan)
        out[f"{v}_lr"] = filters.box_filter(field, valid & np.isfinite(field), k, dx_km)
    out["sit_interp"] = filters.interp_baseline(np.where(valid, fields["sit"], np.nan), valid, kernel_km, dx_km)
    return out


def operator_of(ds: xr.Dataset) -> ObservationOperator:
    """The operator a dataset store was made with (stores older than the attribute: moving mean)."""
    if "observation_operator" in ds.attrs:
        return ObservationOperator.from_dict(json.loads(ds.attrs["observation_operator"]))
    return ObservationOperator("moving-mean", 0, float(ds.attrs.get("kernel_km", 120.0)),
                               float(ds.attrs.get("sic_kernel_km", 24.0)))


def coarse_shape(shape: tuple[int, int], grid_cells: int) -> tuple[int, int]:
    """Shape of the coarse grid covering a window (partial cells at the upper edges count)."""
    return (-(-shape[0] // grid_cells), -(-shape[1] // grid_cells))


def window_slices(n: int, kernel_cells: int, grid_cells: int) -> list[slice]:
    """4 km cells (clipped to ``[0, n)``) averaged by each coarse cell along one axis.

    Coarse cell ``I`` covers cells ``[I g, (I + 1) g)``; its kernel, centred on it, covers
    ``[I g - (k - g) / 2, I g + (k + g) / 2)``.
    """
    half = (kernel_cells - grid_cells) // 2
    return [slice(max(i * grid_cells - half, 0), min(i * grid_cells - half + kernel_cells, n))
            for i in range(-(-n // grid_cells))]


def _window_sums(a: np.ndarray, kernel_cells: int, grid_cells: int) -> np.ndarray:
    """Sums of ``a`` over the kernel windows of the coarse cells (summed-area table)."""
    ny, nx = a.shape
    sat = np.zeros((ny + 1, nx + 1))
    sat[1:, 1:] = np.cumsum(np.cumsum(a, axis=0), axis=1)
    ry, rx = window_slices(ny, kernel_cells, grid_cells), window_slices(nx, kernel_cells, grid_cells)
    y0, y1 = np.array([s.start for s in ry]), np.array([s.stop for s in ry])
    x0, x1 = np.array([s.start for s in rx]), np.array([s.stop for s in rx])
    return sat[y1][:, x1] - sat[y0][:, x1] - sat[y1][:, x0] + sat[y0][:, x0]


def coarse_valid(mask: np.ndarray, grid_cells: int) -> np.ndarray:
    """Coarse cells observed by the product: those whose block holds at least one ocean cell."""
    return filters.block_sum(np.asarray(mask, dtype=np.float64), grid_cells) > 0


def coarse_mean(field: np.ndarray, mask: np.ndarray, obs: FeatureObservation, dx_km: float = 4.0) -> np.ndarray:
    """Noise-free product values: mean of the truth over each coarse cell's kernel (ocean cells).

    Returns
    -------
    ndarray (by, bx), float64; NaN on coarse cells that are not observed (:func:`coarse_valid`).
    """
    k, g = obs.cells(dx_km)
    valid = np.asarray(mask, dtype=bool) & np.isfinite(field)
    num = _window_sums(np.where(valid, field, 0.0), k, g)
    den = _window_sums(valid.astype(np.float64), k, g)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    return np.where(coarse_valid(mask, g) & (den > 0), out, np.nan)


def day_rng(seed: int, date, variable: str) -> np.random.Generator:
    """Generator of one day's noise for one variable, from ``(seed, day number, variable index)``."""
    day = int((pd.Timestamp(date).normalize() - pd.Timestamp("1970-01-01")).days)
    return np.random.default_rng(np.random.SeedSequence([int(seed), day, VARIABLES.index(variable)]))


def correlated_noise(shape: tuple[int, int], std: float, corr_cells: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary Gaussian noise of standard deviation ``std`` with e-folding length ``corr_cells``.

    White noise smoothed by a Gaussian of sigma ``corr_cells / 2`` (the correlation of the result is
    ``exp(-r^2 / (4 sigma^2))``), normalised by the kernel's L2 norm (so the variance is exact in
    expectation); drawn on a padded grid so edges have the same statistics as the interior.
    """
    if corr_cells <= 0:
        return std * rng.standard_normal(shape)
    sigma = corr_cells / 2.0
    r = int(np.ceil(4 * sigma))
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    g /= np.sqrt((g**2).sum())
    white = rng.standard_normal((shape[0] + 2 * r, shape[1] + 2 * r))
    out = ndimage.correlate1d(ndimage.correlate1d(white, g, axis=0, mode="constant"), g, axis=1, mode="constant")
    return std * out[r:r + shape[0], r:r + shape[1]]


def coarse_observe(field: np.ndarray, mask: np.ndarray, obs: FeatureObservation, variable: str,
                   rng: np.random.Generator | None, dx_km: float = 4.0) -> np.ndarray:
    """A product's values on its coarse grid: :func:`coarse_mean` + noise, clipped to the physical range.

    ``rng=None`` gives the noise-free values (clipped).
    """
    values = coarse_mean(field, mask, obs, dx_km)
    if rng is not None and obs.noise_std > 0:
        values = values + correlated_noise(values.shape, obs.noise_std, obs.noise_corr_km / obs.grid_km, rng)
    lo, hi = BOUNDS[variable]
    return np.clip(values, lo, hi)


def coarse_coords(grid: Grid, grid_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Projection coordinates (m) of the coarse cell centres, ``(y, x)``."""
    by, bx = coarse_shape(grid.shape, grid_cells)
    y = grid.y[0] + (np.arange(by) * grid_cells + (grid_cells - 1) / 2) * grid.dx
    x = grid.x[0] + (np.arange(bx) * grid_cells + (grid_cells - 1) / 2) * grid.dx
    return y, x


def product_dataset(values: dict[str, np.ndarray], grid: Grid, obs: FeatureObservation,
                    dx_km: float = 4.0) -> xr.Dataset:
    """Coarse values ((by, bx) or (T, by, bx)) as a product dataset for :func:`to_model_grid`.

    x/y are the coarse cell centres in the grid's projection.
    """
    _, g = obs.cells(dx_km)
    y, x = coarse_coords(grid, g)
    return xr.Dataset({v: (("time", "y", "x")[-a.ndim:], a) for v, a in values.items()}, coords={"x": x, "y": y},
                      attrs={"crs_proj4": PROJ4, "grid_spacing_km": float(obs.grid_km),
                             "effective_resolution_km": float(obs.kernel_km), "product": "synthetic"})


def observe_day(day: dict[str, np.ndarray], mask: np.ndarray, operator: ObservationOperator,
                grid: Grid | None = None, date=None, dx_km: float = 4.0) -> dict[str, np.ndarray]:
    """Apply an observation operator to one day of 4 km truth (:func:`observe_days` for one day).

    Parameters
    ----------
    day : dict of str -> ndarray (ny, nx)
        ``sit``, ``sic``, ``divergence``, ``shear`` (NaN on land).
    mask : bool ndarray (ny, nx)
        True on ocean cells.
    operator : ObservationOperator
    grid : Grid
        The window (``"product"`` regrids through its projection coordinates).
    date : date-like
        The day (seeds the noise of ``"product"``).

    Returns
    -------
    dict of float32 (ny, nx): ``sit_lr``, ``sic_lr``, ``divergence_lr``, ``shear_lr``,
    ``sit_interp``; with ``"product"`` also ``sit_obs`` (float32 (by, bx), the observed coarse
    ``sit`` values, NaN where not observed).
    """
    out = observe_days({v: np.asarray(a)[None] for v, a in day.items()}, mask, operator, grid,
                       None if date is None else [date], dx_km)
    return {k: a[0] for k, a in out.items()}


def observe_days(days: dict[str, np.ndarray], mask: np.ndarray, operator: ObservationOperator,
                 grid: Grid | None = None, dates=None, dx_km: float = 4.0) -> dict[str, np.ndarray]:
    """Apply an observation operator to several days at once (one regridding per product grid).

    ``days`` maps variables to (T, ny, nx) arrays, ``dates`` has length T; returns the outputs of
    :func:`observe_day` stacked on a leading day axis.
    """
    mask = np.asarray(mask, dtype=bool)
    names = [v for v in VARIABLES if v in days]
    n = len(next(iter(days.values())))
    if operator.name == "moving-mean":
        per_day = [model_context({v: days[v][t] for v in names}, mask, operator.kernel_km, operator.sic_kernel_km,
                                 dx_km) for t in range(n)]
        return {k: np.stack([d[k] for d in per_day]) for k in per_day[0]}
    if grid is None or dates is None:
        raise SitsrInputError("the product observation operator needs the grid and the dates")
    hr, obs_sit = {}, None
    groups: dict[float, list[str]] = {}  # variables on the same product grid are regridded together
    for v in names:
        groups.setdefault(getattr(operator, v).grid_km, []).append(v)
    for vs in groups.values():
        values = {v: np.stack([coarse_observe(np.asarray(days[v][t], np.float64), mask, getattr(operator, v), v,
                                              day_rng(operator.seed, dates[t], v), dx_km) for t in range(n)])
                  for v in vs}
        if "sit" in values:
            obs_sit = values["sit"]
        regridded, _, _ = to_model_grid(product_dataset(values, grid, getattr(operator, vs[0]), dx_km), grid, vs,
                                        land_mask=~mask)
        hr.update(regridded)
    out: dict[str, list] = {}
    for t in range(n):
        valid = mask & np.isfinite(hr["sit"][t]) & np.isfinite(hr["sic"][t])
        for k, a in model_context({v: hr[v][t] for v in names}, valid, operator.kernel_km, operator.sic_kernel_km,
                                  dx_km).items():
            out.setdefault(k, []).append(a)
    out = {k: np.stack(a) for k, a in out.items()}
    if obs_sit is not None:
        out["sit_obs"] = obs_sit.astype(np.float32)
    return out


def window_matrix(mask: np.ndarray, obs: FeatureObservation, dx_km: float = 4.0) -> sp.csr_matrix:
    """The product's noise-free coarse values as a sparse matrix (coarse cells x 4 km cells).

    Row ``I * bx + J`` averages the ocean cells of coarse cell ``(I, J)``'s kernel window
    (:func:`coarse_mean` as a linear map); rows of unobserved coarse cells are empty.
    """
    k, g = obs.cells(dx_km)
    mask = np.asarray(mask, dtype=bool)
    ny, nx = mask.shape
    ok = coarse_valid(mask, g)
    ry, rx = window_slices(ny, k, g), window_slices(nx, k, g)
    idx = np.arange(ny * nx).reshape(ny, nx)
    rows, cols, vals = [np.zeros(0, int)], [np.zeros(0, int)], [np.zeros(0)]
    for i, sy in enumerate(ry):
        for j, sx in enumerate(rx):
            cells = idx[sy, sx][mask[sy, sx]]
            if ok[i, j] and cells.size:
                rows.append(np.full(cells.size, i * len(rx) + j))
                cols.append(cells)
                vals.append(np.full(cells.size, 1.0 / cells.size))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(len(ry) * len(rx), ny * nx))


def _centre_cells(n: int, block: int) -> list[np.ndarray]:
    """The one or two cells at the centre of each ``block`` along an axis (a partial last block: of its cells)."""
    out = []
    for i in range(-(-n // block)):
        c = (i * block + min((i + 1) * block, n) - 1) / 2
        out.append(np.unique([int(np.floor(c)), int(np.ceil(c))]))
    return out


def observation_constraint(operator: ObservationOperator, mask: np.ndarray, observed: np.ndarray,
                           dx_km: float = 4.0) -> tuple[sp.csr_matrix, np.ndarray, float]:
    """What was observed of ``sit``, as a linear constraint ``W x = c`` with noise std ``sigma``.

    ``"product"``: ``observed`` is the coarse ``sit_obs`` (by, bx); ``W`` the kernel means
    (:func:`window_matrix`); ``sigma`` the product's noise std. ``"moving-mean"``: ``observed`` is
    ``sit_lr`` (ny, nx); each ``kernel_km`` block is constrained by the moving mean at its centre
    (the mean of ``sit_lr`` over its one to four centre cells, a box mean of the truth centred on the
    block, so exactly the truth's value), ``sigma = 0``.

    Returns
    -------
    W : sparse (m, ny * nx), c : (m,), sigma : float -- over the observed rows only.
    """
    mask = np.asarray(mask, dtype=bool)
    observed = np.asarray(observed, dtype=np.float64)
    if operator.name == "product":
        W = window_matrix(mask, operator.sit, dx_km)
        c, sigma = observed.ravel(), float(operator.sit.noise_std)
    else:
        block = int(round(operator.kernel_km / dx_km))
        w = filters.box_kernel(operator.kernel_km, dx_km)
        h = len(w) // 2
        ny, nx = mask.shape
        rows, cols, vals, c = [], [], [], []
        v = mask.astype(np.float64)
        for cy in _centre_cells(ny, block):
            for cx in _centre_cells(nx, block):
                acc = np.zeros((ny, nx))
                centres = [(a, b) for a in cy for b in cx if mask[a, b]]
                for a, b in centres:  # the box_filter weights of sit_lr at (a, b), normalised over ocean
                    win = np.zeros((ny, nx))
                    ys, xs = slice(max(a - h, 0), min(a + h + 1, ny)), slice(max(b - h, 0), min(b + h + 1, nx))
                    win[ys, xs] = np.outer(w[ys.start - a + h:ys.stop - a + h], w[xs.start - b + h:xs.stop - b + h])
                    win *= v
                    acc += win / win.sum() / len(centres)
                if centres:
                    nz = np.flatnonzero(acc)
                    rows.append(np.full(nz.size, len(c)))
                    cols.append(nz)
                    vals.append(acc.ravel()[nz])
                    c.append(np.mean([observed[a, b] for a, b in centres]))
        W = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(len(c), ny * nx))
        c, sigma = np.asarray(c), 0.0
    keep = np.flatnonzero(np.isfinite(c) & (np.diff(W.indptr) > 0))
    return W[keep], c[keep], sigma


def conserve_observed(fields: np.ndarray, W: sp.csr_matrix, c: np.ndarray, sigma: float,
                      mask: np.ndarray, tol: float = 1e-5, max_iter: int = 50) -> np.ndarray:
    """Make fields agree with what was observed, within the observation noise; non-negative.

    Each field ``x`` (ocean cells) gets the smallest correction of the form
    ``x + W^T (W W^T + lam I)^-1 (c - W x)`` whose misfit to the observations equals their noise
    (the discrepancy principle: ``rms(W x - c) = sigma``, ``lam`` found by bisection); a field
    already within the noise (``rms <= sigma``) is left unchanged, so the noise is not fitted.
    With ``sigma = 0`` the projection onto ``W x = c`` and the clipping at 0 alternate until
    ``|W x - c| <= tol`` (m) or ``max_iter``.

    Parameters
    ----------
    fields : ndarray (..., ny, nx), metres
    W, c, sigma : from :func:`observation_constraint`
    mask : bool (ny, nx), ocean cells

    Returns
    -------
    float32 ndarray like ``fields`` (NaN off the ocean).
    """
    from scipy.sparse.linalg import splu

    mask = np.asarray(mask, dtype=bool)
    a = np.asarray(fields, dtype=np.float64)
    flat = a.reshape((-1,) + mask.shape)
    WWt = (W @ W.T).tocsc()
    if sigma == 0:
        exact = splu(WWt)
    else:  # one eigendecomposition serves every field and every lam
        d, Q = np.linalg.eigh(WWt.toarray())
        d = np.clip(d, 0.0, None)
    out = np.empty_like(flat)
    for i, x in enumerate(flat):
        y = np.where(mask, np.clip(np.nan_to_num(x), 0.0, None), 0.0).ravel()
        r = c - W @ y
        if sigma == 0:  # alternate projections: onto W x = c, then onto x >= 0
            for _ in range(max_iter):
                y = np.clip(y + W.T @ exact.solve(r), 0.0, None)
                r = c - W @ y
                if np.abs(r).max() <= tol:
                    break
        elif np.sqrt(np.mean(r**2)) > sigma:
            rh = Q.T @ r
            lo, hi = -12.0, 6.0  # log10 lam; the misfit after, rms(lam / (d + lam) rh), grows with lam
            for _ in range(60):
                mid = (lo + hi) / 2
                if np.sqrt(np.mean((10**mid / (d + 10**mid) * rh) ** 2)) > sigma:
                    hi = mid
                else:
                    lo = mid
            y = np.clip(y + W.T @ (Q @ (rh / (d + 10**lo))), 0.0, None)
        out[i] = np.where(mask, y.reshape(mask.shape), np.nan)
    return out.reshape(a.shape).astype(np.float32)


def observed_sit(ds: xr.Dataset, date) -> tuple[ObservationOperator, np.ndarray]:
    """``(operator, observed)`` of a dataset day, for :func:`observation_constraint`.

    ``observed`` is the coarse ``sit_obs`` for ``"product"``, ``sit_lr`` for ``"moving-mean"``.
    """
    op = operator_of(ds)
    name = "sit_obs" if op.name == "product" else "sit_lr"
    if name not in ds.variables:
        raise SitsrInputError(f"the dataset has no {name} (rebuild it with `sitsr dataset`)")
    return op, np.asarray(ds[name].sel(time=pd.Timestamp(date)).values, dtype=np.float64)
