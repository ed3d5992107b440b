"""Verification metrics for ensembles of 4 km sea-ice thickness fields.

Conventions shared by every function:

* Physical units (metres); normalised values never reach this module.
* ``mask`` is boolean with ``True`` on valid (ocean) cells, like the dataset
  store's ``mask`` variable; it broadcasts against ``obs``. Cells where ``obs``
  or the forecast is NaN are excluded too. ``mask=None`` keeps every finite cell.
* ``obs`` has shape ``S`` (e.g. ``(ny, nx)`` or ``(time, ny, nx)``); a
  deterministic forecast has shape ``(..., *S)`` and scores are averaged over
  the trailing ``S`` axes, so a stack of members gives one score per member.
  An ensemble has its members along ``member_axis`` and shape ``S`` otherwise;
  ensemble scores are averaged over all valid cells of ``S``.
* For an ensemble score a cell is valid only where every member is finite.

Numpy kernels come with thin xarray wrappers (``*_xr``) in the style of
xskillscore. Spectral metrics are defined on scale bands relative to the
low-resolution (LR) filter kernel; see :func:`scale_bands`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .filters import box_filter
from .spectra import isotropic_spectrum

#: (large) LR power within this relative distance of the truth counts as "LR = HR".
LARGE_LR_RATIO_TOL = 0.10
#: (medium) minimum ensemble-mean / truth power ratio for "the mean carries the energy".
MEDIUM_MEAN_RATIO_MIN = 0.5
#: (fine) minimum member / ensemble-mean power ratio for "members carry more energy than the mean".
FINE_MEMBER_OVER_MEAN_MIN = 1.0
#: (finest) maximum ``|P_mean - P_lr| / P_truth`` for "the mean falls back to LR".
FINEST_MEAN_LR_REL_MAX = 0.5


# --------------------------------------------------------------------------- helpers


def _members_first(ens: np.ndarray, obs: np.ndarray, member_axis: int) -> np.ndarray:
    x = np.moveaxis(np.asarray(ens, dtype=np.float64), member_axis, 0)
    if x.shape[1:] != np.shape(obs):
        raise ValueError(f"ensemble shape {x.shape[1:]} (members removed) does not match obs shape {np.shape(obs)}")
    return x


def _valid(obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    valid = np.isfinite(obs)
    if mask is not None:
        valid = valid & np.asarray(mask, dtype=bool)
    return valid


def _masked_mean(x: np.ndarray, valid: np.ndarray, ndim: int) -> np.ndarray | float:
    """Mean of ``x`` over its trailing ``ndim`` axes on the finite cells where ``valid``."""
    ok = valid & np.isfinite(x)
    axes = tuple(range(-ndim, 0)) if ndim else ()
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ok, x, 0.0).sum(axis=axes) / ok.sum(axis=axes)
    return out[()] if np.ndim(out) == 0 else out


def _ensemble_valid(x: np.ndarray, obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return _valid(obs, mask) & np.isfinite(x).all(axis=0)


# ----------------------------------------------------------------- deterministic


def rmse(pred: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray | float:
    """Root-mean-square error over valid cells.

    Parameters
    ----------
    pred : ndarray, shape (..., *S)
        Forecast(s): one field, or a stack (e.g. members, shape ``(M, *S)``).
    obs : ndarray, shape S
        Truth.
    mask : ndarray of bool, broadcastable to S, optional
        True on valid cells.

    Returns
    -------
    float or ndarray, shape (...)
        One RMSE per leading index of ``pred`` (m).
    """
    obs = np.asarray(obs, dtype=np.float64)
    err2 = (np.asarray(pred, dtype=np.float64) - obs) ** 2
    return np.sqrt(_masked_mean(err2, _valid(obs, mask), obs.ndim))


def mae(pred: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray | float:
    """Mean absolute error over valid cells; shapes as in :func:`rmse`."""
    obs = np.asarray(obs, dtype=np.float64)
    return _masked_mean(np.abs(np.asarray(pred, dtype=np.float64) - obs), _valid(obs, mask), obs.ndim)


def bias(pred: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray | float:
    """Mean error ``pred - obs`` over valid cells (positive = too thick); shapes as in :func:`rmse`."""
    obs = np.asarray(obs, dtype=np.float64)
    return _masked_mean(np.asarray(pred, dtype=np.float64) - obs, _valid(obs, mask), obs.ndim)


def large_scale_rmse(
    field: np.ndarray,
    lr: np.ndarray,
    mask: np.ndarray | None = None,
    kernel_km: float = 120.0,
    dx: float = 4.0,
) -> np.ndarray | float:
    """RMSE between the box-filtered field and the LR input: the large-scale bias of generation.

    The field is filtered with the dataset's own mask-normalised box filter
    (:func:`sitsr_core.filters.box_filter`, exact width ``kernel_km``), so the
    truth scores 0 up to float32 rounding and any non-zero value is large-scale
    energy that generation added or removed.

    Parameters
    ----------
    field : ndarray, shape (..., ny, nx)
        Generated field(s), e.g. members ``(M, ny, nx)`` or the ensemble mean.
    lr : ndarray, shape (ny, nx)
        LR context on the 4 km grid (``sit_lr``).
    mask : ndarray of bool, shape (ny, nx), optional
        True on valid cells; the filter uses only valid cells.
    kernel_km, dx : float
        Box width and grid spacing (km).

    Returns
    -------
    float or ndarray, shape (...)
        RMSE (m) per leading index of ``field``.
    """
    return rmse(box_filter(field, mask, kernel_km, dx), lr, mask)


# --------------------------------------------------------------------- ensemble


def crps_cells(ens: np.ndarray, obs: np.ndarray, member_axis: int = 0, fair: bool = True) -> np.ndarray:
    """CRPS of an ensemble at every cell, O(M log M) by sorting.

    ``CRPS = mean_i |X_i - y| - sum_{i,j} |X_i - X_j| / (2 M (M - 1))`` (fair,
    unbiased for the CRPS of the distribution the members are drawn from) or
    ``... / (2 M**2)`` (``fair=False``, the empirical-CDF CRPS of properscoring).
    The pair sum uses the sorted members: ``sum_{i,j} |X_i - X_j| = 2 sum_i (2 i - M - 1) X_(i)``.

    Parameters
    ----------
    ens : ndarray
        Members along ``member_axis``; the other axes broadcast against ``obs``.
    obs : ndarray
        Truth.
    member_axis : int
    fair : bool

    Returns
    -------
    ndarray, broadcast shape of ``obs`` and the non-member axes of ``ens``
        CRPS (m); NaN where ``obs`` or any member is NaN.
    """
    x = np.sort(np.moveaxis(np.asarray(ens, dtype=np.float64), member_axis, 0), axis=0)
    m = x.shape[0]
    if fair and m < 2:
        raise ValueError("the fair CRPS needs at least two members")
    skill = np.abs(x - np.asarray(obs, dtype=np.float64)).mean(axis=0)
    rank_weight = (2.0 * np.arange(1, m + 1) - m - 1).reshape((m,) + (1,) * (x.ndim - 1))
    half_pair_sum = (rank_weight * x).sum(axis=0)
    return skill - half_pair_sum / (m * (m - 1) if fair else m * m)


def crps_fair(ens: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None, member_axis: int = 0) -> float:
    """Fair CRPS of an ensemble, averaged over valid cells.

    Parameters
    ----------
    ens : ndarray, shape S with M members inserted at ``member_axis``
    obs : ndarray, shape S
    mask : ndarray of bool, broadcastable to S, optional
        True on valid cells.
    member_axis : int

    Returns
    -------
    float
        Mean fair CRPS (m); see :func:`crps_cells`.
    """
    x = _members_first(ens, obs, member_axis)
    return float(_masked_mean(crps_cells(x, obs), _ensemble_valid(x, obs, mask), np.ndim(obs)))


def spread_skill_ratio(ens: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None, member_axis: int = 0) -> float:
    """Spread-skill ratio with the finite-ensemble correction.

    ``sqrt((M + 1) / M) * spread / RMSE(ensemble mean)`` with
    ``spread = sqrt(mean over valid cells of the member variance (ddof=1))``;
    1 for a statistically consistent ensemble, < 1 under-dispersive.

    Parameters
    ----------
    ens : ndarray, shape S with M members inserted at ``member_axis``
    obs : ndarray, shape S
    mask : ndarray of bool, broadcastable to S, optional
    member_axis : int

    Returns
    -------
    float
    """
    x = _members_first(ens, obs, member_axis)
    m = x.shape[0]
    valid = _ensemble_valid(x, obs, mask)
    spread = np.sqrt(_masked_mean(x.var(axis=0, ddof=1), valid, np.ndim(obs)))
    return float(np.sqrt((m + 1) / m) * spread / rmse(x.mean(axis=0), obs, valid))


def rmse_infinite_mean(ens: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None,
                       member_axis: int = 0) -> float:
    """RMSE of the ensemble mean for infinitely many members (unbiased finite-ensemble correction).

    The mean of ``M`` members adds the sampling noise of the mean, ``spread^2 / M``, to the squared
    error of the infinite-ensemble mean (the model's conditional mean); this estimates the latter as
    ``sqrt(max(MSE(mean) - s^2 / M, 0))`` with ``s^2`` the ocean-mean member variance (ddof=1),
    unbiased for exchangeable members (Leutbecher 2019, QJRMS 145, 107-128). It is what compares
    with a deterministic estimate of the conditional mean (the regression baseline) without
    penalising the ensemble for its finite size.

    Parameters
    ----------
    ens : ndarray, shape S with M members inserted at ``member_axis`` (M >= 2)
    obs : ndarray, shape S
    mask : ndarray of bool, broadcastable to S, optional
    member_axis : int

    Returns
    -------
    float (units of ``obs``)
    """
    x = _members_first(ens, obs, member_axis)
    m = x.shape[0]
    if m < 2:
        raise ValueError("rmse_infinite_mean needs at least 2 members")
    valid = _ensemble_valid(x, obs, mask)
    var = _masked_mean(x.var(axis=0, ddof=1), valid, np.ndim(obs))
    mse = float(rmse(x.mean(axis=0), obs, valid)) ** 2
    return float(np.sqrt(max(mse - var / m, 0.0)))


def spread_error_bins(
    ens: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None, member_axis: int = 0, n_bins: int = 10
) -> dict[str, np.ndarray]:
    """Binned spread-error reliability: corrected RMS spread against RMSE of the mean.

    Valid cells are sorted by their ensemble standard deviation (ddof=1) and
    split into ``n_bins`` equal-population (quantile) bins. In a reliable
    ensemble ``spread == rmse`` in every bin, up to a selection bias: binning by
    the ensemble's own (noisy) spread puts cells whose spread is underestimated
    in the low bins, so even a perfect ensemble shows ``rmse/spread`` from about
    1.07 (lowest bin) to 0.92 (highest) with 30 members, 1.25 to 0.83 with 10.

    Parameters
    ----------
    ens : ndarray, shape S with M members inserted at ``member_axis``
    obs : ndarray, shape S
    mask : ndarray of bool, broadcastable to S, optional
    member_axis : int
    n_bins : int

    Returns
    -------
    dict of ndarray, each shape (n_bins,)
        ``spread``: ``sqrt((M + 1) / M * mean variance)`` in the bin (m);
        ``rmse``: RMSE of the ensemble mean in the bin (m);
        ``spread_min``, ``spread_max``: range of the per-cell standard deviation (m);
        ``count``: number of cells.
    """
    x = _members_first(ens, obs, member_axis)
    m = x.shape[0]
    valid = np.broadcast_to(_ensemble_valid(x, obs, mask), np.shape(obs))
    var = x.var(axis=0, ddof=1)[valid]
    err2 = (x.mean(axis=0) - obs)[valid] ** 2
    if var.size < n_bins:
        raise ValueError(f"{var.size} valid cells cannot fill {n_bins} bins")
    groups = np.array_split(np.argsort(var, kind="stable"), n_bins)
    return {
        "spread": np.array([np.sqrt((m + 1) / m * var[g].mean()) for g in groups]),
        "rmse": np.array([np.sqrt(err2[g].mean()) for g in groups]),
        "spread_min": np.array([np.sqrt(var[g[0]]) for g in groups]),
        "spread_max": np.array([np.sqrt(var[g[-1]]) for g in groups]),
        "count": np.array([g.size for g in groups]),
    }


def rank_histogram(
    ens: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None, member_axis: int = 0, seed: int = 0
) -> np.ndarray:
    """Rank histogram (Talagrand diagram) of the truth within the ensemble.

    The rank of a cell is the number of members below the truth; ties (e.g.
    open water, where truth and members are all 0 m) are broken uniformly at
    random among the tied positions, as in ``xskillscore.rank_histogram``.

    Parameters
    ----------
    ens : ndarray, shape S with M members inserted at ``member_axis``
    obs : ndarray, shape S
    mask : ndarray of bool, broadcastable to S, optional
    member_axis : int
    seed : int
        Seed of the tie-breaking generator.

    Returns
    -------
    ndarray of int, shape (M + 1,)
        Count of valid cells per rank 0 (truth below all members) .. M (above all).
    """
    x = _members_first(ens, obs, member_axis)
    m = x.shape[0]
    valid = np.broadcast_to(_ensemble_valid(x, obs, mask), np.shape(obs))
    y = np.asarray(obs, dtype=np.float64)[valid]
    xv = x[:, valid]
    below = (xv < y).sum(axis=0)
    tied = (xv == y).sum(axis=0)
    ranks = below + np.floor(np.random.default_rng(seed).random(y.size) * (tied + 1)).astype(int)
    return np.bincount(ranks, minlength=m + 1)


def rank_flatness(counts: np.ndarray) -> float:
    """Flatness of a rank histogram: chi-square per degree of freedom.

    ``delta = sum_i (n_i - N / B)**2 / (N / B) / (B - 1)`` for ``B`` bins and ``N``
    cells (Candille & Talagrand 2005). Its expectation is 1 for a reliable
    ensemble and independent cells; neighbouring cells are correlated, so
    values well above 1 occur even for good ensembles: compare forecasts on
    the same cells rather than reading it as a p-value.

    Parameters
    ----------
    counts : ndarray, shape (B,)

    Returns
    -------
    float
    """
    n = np.asarray(counts, dtype=np.float64)
    expected = n.sum() / n.size
    return float(((n - expected) ** 2).sum() / expected / (n.size - 1))


def skill_table(
    ens: np.ndarray,
    obs: np.ndarray,
    mask: np.ndarray | None,
    baselines: dict[str, np.ndarray],
    member_axis: int = 0,
    day_axis: int | None = None,
    n_boot: int = 2000,
    block: int | None = None,
    seed: int = 0,
) -> dict:
    """Scores of the ensemble, its members and the baselines, and the gains over each baseline.

    Forecasts scored:

    * ``ensemble``: RMSE, MAE and bias of the ensemble mean; CRPS = fair CRPS of the ensemble;
      ``rmse_inf``: the RMSE of the mean of infinitely many members (:func:`rmse_infinite_mean`,
      with 2 members or more).
    * ``member``: mean over members of each member's RMSE, MAE, bias; CRPS = the
      members' mean MAE (the CRPS of a deterministic forecast is its absolute error).
    * each baseline (e.g. ``lr``, ``interp``): RMSE, MAE, bias; CRPS = MAE.

    All are computed on the same cells: valid in ``mask``, finite truth, every
    member and every baseline finite.

    With ``day_axis`` (the axis of ``obs`` that holds days, in time order) the table also
    carries per-day scores and moving-block bootstrap 95 % intervals over days
    (:func:`bootstrap_ci`; each replicate resamples whole days and recomputes the pooled
    score from per-day sums), and the paired differences ensemble - baseline, resampled
    with the same days for both so that their interval is that of the difference.

    Parameters
    ----------
    ens : ndarray, shape S with M members inserted at ``member_axis``
    obs : ndarray, shape S
    mask : ndarray of bool, broadcastable to S, or None
    baselines : dict of str -> ndarray, shape S
    member_axis : int
    day_axis : int, optional
        Axis of ``obs`` along which days run.
    n_boot, block, seed : int
        Bootstrap replicates, block length in days (default ``round(D ** (1/3))``), seed.

    Returns
    -------
    dict
        ``{"scores": {forecast: {"rmse", "mae", "bias", "crps"}},``
        ``"improvement_pct": {baseline: {forecast: {"rmse", "mae", "crps"}}}}`` where the
        improvement of ``ensemble`` and ``member`` is ``100 * (1 - score / baseline score)``
        (positive = better than the baseline). Values in m and %. With ``day_axis`` also
        ``"per_day": {forecast: {score: list over days}}`` (the ensemble with ``spread_skill``),
        ``"ci95": {forecast: {score: [low, high]}}`` for ``rmse``, ``mae``, ``crps`` (and the
        ensemble's ``rmse_inf``, ``spread_skill``), and ``"paired": {baseline: {score: {"diff",
        "ci95"}}}`` with ``diff`` = ensemble score - baseline score (``crps``: the ensemble's
        fair CRPS minus the baseline's MAE; ``rmse_inf``: against the baseline's RMSE);
        negative = the ensemble is better.
    """
    if {"ensemble", "member"} & set(baselines):
        raise ValueError("baseline names 'ensemble' and 'member' are reserved")
    x = _members_first(ens, obs, member_axis)
    valid = _ensemble_valid(x, obs, mask)
    for b in baselines.values():
        valid = valid & np.isfinite(b)
    mean = x.mean(axis=0)
    member_mae = float(np.mean(mae(x, obs, valid)))
    scores = {
        "ensemble": {
            "rmse": float(rmse(mean, obs, valid)),
            "mae": float(mae(mean, obs, valid)),
            "bias": float(bias(mean, obs, valid)),
            "crps": crps_fair(x, obs, valid),
            **({"rmse_inf": rmse_infinite_mean(x, obs, valid)} if x.shape[0] > 1 else {}),
        },
        "member": {
            "rmse": float(np.mean(rmse(x, obs, valid))),
            "mae": member_mae,
            "bias": float(np.mean(bias(x, obs, valid))),
            "crps": member_mae,
        },
    }
    for name, b in baselines.items():
        b_mae = float(mae(b, obs, valid))
        scores[name] = {"rmse": float(rmse(b, obs, valid)), "mae": b_mae, "bias": float(bias(b, obs, valid)),
                        "crps": b_mae}
    with np.errstate(divide="ignore", invalid="ignore"):  # a perfect baseline gives -inf / nan
        improvement = {
            name: {
                fc: {s: float(100.0 * (1.0 - np.float64(scores[fc][s]) / scores[name][s]))
                     for s in ("rmse", "mae", "crps")}
                for fc in ("ensemble", "member")
            }
            for name in baselines
        }
    table = {"scores": scores, "improvement_pct": improvement}
    if day_axis is not None:
        table.update(_daily_intervals(x, np.asarray(obs, dtype=np.float64), np.broadcast_to(valid, np.shape(obs)),
                                      baselines, day_axis % np.ndim(obs), n_boot, block, seed))
    return table


def _daily_intervals(x, obs, valid, baselines, day_axis, n_boot, block, seed) -> dict:
    """Per-day scores, bootstrap intervals and paired differences of :func:`skill_table`."""
    m = x.shape[0]
    axes = tuple(a for a in range(obs.ndim) if a != day_axis)

    def day_sum(q):  # q: shape S, or (k, *S) -> (D,) or (k, D)
        lead = q.ndim - obs.ndim
        return np.where(valid, q, 0.0).sum(axis=tuple(a + lead for a in axes))

    mean = x.mean(axis=0)
    cols = {"n": day_sum(np.ones_like(obs)), "e.sse": day_sum((mean - obs) ** 2),
            "e.sae": day_sum(np.abs(mean - obs)), "e.crps": day_sum(np.where(valid, crps_cells(x, obs), 0.0))}
    if m > 1:
        cols["e.var"] = day_sum(x.var(axis=0, ddof=1))
    member_sse, member_sae = day_sum((x - obs) ** 2), day_sum(np.abs(x - obs))  # (M, D)
    for name, b in baselines.items():
        cols[f"{name}.sse"] = day_sum((np.asarray(b, dtype=np.float64) - obs) ** 2)
        cols[f"{name}.sae"] = day_sum(np.abs(np.asarray(b, dtype=np.float64) - obs))
    names = list(cols)
    values = np.column_stack([cols[k] for k in names] + list(member_sse) + list(member_sae))
    col = {k: i for i, k in enumerate(names)}
    ms, ma = len(names), len(names) + m  # first column of the members' sse and sae

    def c(name):
        return lambda v: v[..., col[name]]

    def ratio(a, b, f=lambda r: r):
        return lambda v: f(c(a)(v) / c(b)(v))

    stats = {"ensemble": {"rmse": ratio("e.sse", "n", np.sqrt), "mae": ratio("e.sae", "n"),
                          "crps": ratio("e.crps", "n")},
             "member": {"rmse": lambda v: np.sqrt(v[..., ms:ms + m] / v[..., col["n"], None]).mean(axis=-1),
                        "mae": lambda v: (v[..., ma:ma + m] / v[..., col["n"], None]).mean(axis=-1)}}
    stats["member"]["crps"] = stats["member"]["mae"]
    if m > 1:
        stats["ensemble"]["rmse_inf"] = lambda v: np.sqrt(np.maximum(
            (c("e.sse")(v) - c("e.var")(v) / m) / c("n")(v), 0.0))
        stats["ensemble"]["spread_skill"] = lambda v: np.sqrt((m + 1) / m * c("e.var")(v) / c("e.sse")(v))
    for name in baselines:
        stats[name] = {"rmse": ratio(f"{name}.sse", "n", np.sqrt), "mae": ratio(f"{name}.sae", "n")}
        stats[name]["crps"] = stats[name]["mae"]

    def ci(fn):
        return list(bootstrap_ci(values, n_boot=n_boot, block=block, rng=seed, statistic=fn))

    with np.errstate(divide="ignore", invalid="ignore"):
        per_day = {fc: {s: [float(v) for v in fn(values)] for s, fn in row.items()} for fc, row in stats.items()}
        intervals = {fc: {s: ci(fn) for s, fn in row.items()} for fc, row in stats.items()}
        paired = {}
        for name in baselines:
            paired[name] = {}
            for s, ref in (("rmse", "rmse"), ("mae", "mae"), ("crps", "crps"), ("rmse_inf", "rmse")):
                if s not in stats["ensemble"]:
                    continue
                fn = (lambda a, b: lambda v: a(v) - b(v))(stats["ensemble"][s], stats[name][ref])
                paired[name][s] = {"diff": float(fn(values.mean(axis=0))), "ci95": ci(fn)}
    return {"per_day": per_day, "ci95": intervals, "paired": paired,
            "bootstrap": {"n_boot": n_boot, "block_days": block if block is not None
                          else max(1, round(values.shape[0] ** (1.0 / 3.0))), "days": int(values.shape[0])}}


# ------------------------------------------------------------- days and intervals


def bootstrap_ci(
    values: np.ndarray,
    n_boot: int = 2000,
    block: int | None = None,
    rng: np.random.Generator | int | None = 0,
    statistic=None,
    level: float = 0.95,
) -> tuple[float, float]:
    """Moving-block bootstrap confidence interval over consecutive days (percentile method).

    Each replicate draws ``ceil(n / block)`` blocks of ``block`` consecutive rows, with
    starts uniform over ``0 .. n - block``, concatenates them, keeps the first ``n`` rows
    and evaluates ``statistic`` on their column means (Kuensch 1989). With ``block=1`` it is
    the ordinary iid bootstrap of the mean. Blocks keep the day-to-day correlation of
    the scores inside each replicate, so a correlated series gets the wider interval it
    deserves.

    Parameters
    ----------
    values : ndarray, shape (n,) or (n, k)
        One row per day, in time order (e.g. per-day score, or per-day sums such as
        ``[sum of squared errors, number of cells]``).
    n_boot : int
        Number of replicates.
    block : int, optional
        Block length in days; default ``max(1, round(n ** (1/3)))``.
    rng : Generator or int or None
        Random generator or seed.
    statistic : callable, optional
        Maps the column means (shape ``(k,)``, or a scalar for 1-D ``values``) of a replicate
        to a number; vectorised over a leading replicate axis. Default: the mean itself.
        E.g. ``lambda m: np.sqrt(m[..., 0] / m[..., 1])`` turns per-day sums of squared
        errors and cell counts into the pooled RMSE.
    level : float
        Coverage (0.95: the 2.5 and 97.5 percentiles).

    Returns
    -------
    (low, high) : tuple of float
        NaN for fewer than two days.
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        return float("nan"), float("nan")
    block = max(1, round(n ** (1.0 / 3.0))) if block is None else int(block)
    if not 1 <= block <= n:
        raise ValueError(f"block length {block} must lie in 1..{n}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n_blocks = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)).reshape(n_boot, -1)[:, :n]
    means = x[idx].mean(axis=1)
    stats = means if statistic is None else np.asarray(statistic(means), dtype=np.float64)
    alpha = 100.0 * (1.0 - level) / 2.0
    low, high = np.nanpercentile(stats, [alpha, 100.0 - alpha])
    return float(low), float(high)


def lag_correlation(
    fields: np.ndarray, mask: np.ndarray | None = None, lags=(1, 2, 4, 7, 10), days: np.ndarray | None = None
) -> dict[int, float]:
    """Day-to-day correlation of a series of fields at given lags (e.g. of the fine-scale field ``sit - sit_lr``).

    For every pair of days ``k`` days apart, the spatial Pearson correlation of the two
    fields over the cells valid in both (each field minus its spatial mean); the result is
    the mean over the pairs. For a field whose cells follow independent AR(1) series of
    coefficient ``phi`` it is ``phi ** k``.

    Parameters
    ----------
    fields : ndarray, shape (T, ...)
        One field per day.
    mask : ndarray of bool, broadcastable to ``fields[0]``, optional
        True on valid cells.
    lags : iterable of int
        Lags in days.
    days : ndarray of int or datetime64, shape (T,), optional
        Day of each field (default ``0 .. T-1``); a pair counts only if its days are exactly
        ``k`` apart, so days of several split windows can be stacked.

    Returns
    -------
    dict of int -> float
        Mean correlation per lag (NaN where no pair is ``k`` days apart).
    """
    f = np.asarray(fields, dtype=np.float64)
    t = np.arange(f.shape[0]) if days is None else np.asarray(days)
    if np.issubdtype(t.dtype, np.datetime64):
        t = t.astype("datetime64[D]").astype(np.int64)
    valid = np.isfinite(f)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    out = {}
    for k in lags:
        pairs = [(i, j) for i in range(len(t)) for j in np.flatnonzero(t == t[i] + k)]
        cors = []
        for i, j in pairs:
            ok = valid[i] & valid[j]
            a, b = f[i][ok] - f[i][ok].mean(), f[j][ok] - f[j][ok].mean()
            cors.append(float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())))
        out[int(k)] = float(np.mean(cors)) if cors else float("nan")
    return out


# ----------------------------------------------------------------------- xarray


def _masked_mean_xr(x: xr.DataArray, mask_da: xr.DataArray | None, dims: tuple[str, ...]) -> xr.DataArray:
    if mask_da is not None:
        x = x.where(mask_da.astype(bool))
    return x.mean(dims)


def rmse_xr(
    pred_da: xr.DataArray, obs_da: xr.DataArray, mask_da: xr.DataArray | None = None, dims: tuple[str, ...] = ("y", "x")
) -> xr.DataArray:
    """RMSE over ``dims`` of labelled fields (other dims, e.g. ``member`` or ``time``, are kept).

    ``mask_da`` is True/1 on valid cells; NaNs are skipped. Same values as :func:`rmse`.
    """
    return np.sqrt(_masked_mean_xr((pred_da - obs_da) ** 2, mask_da, dims))


def crps_fair_xr(
    ens_da: xr.DataArray,
    obs_da: xr.DataArray,
    mask_da: xr.DataArray | None = None,
    member_dim: str = "member",
    dims: tuple[str, ...] = ("y", "x"),
) -> xr.DataArray:
    """Fair CRPS over ``dims`` of a labelled ensemble (other dims, e.g. ``time``, are kept).

    ``mask_da`` is True/1 on valid cells; cells with a NaN truth or member are skipped.
    Same values as :func:`crps_fair` (works lazily on dask arrays).
    """
    cells = xr.apply_ufunc(
        crps_cells,
        ens_da,
        obs_da,
        input_core_dims=[[member_dim], []],
        kwargs={"member_axis": -1},
        dask="parallelized",
        output_dtypes=[np.float64],
    )
    return _masked_mean_xr(cells, mask_da, dims)


# -------------------------------------------------------------- spectral bands


def scale_bands(
    kernel_km: float = 120.0,
    dx: float = 4.0,
    large_min_km: float | None = None,
    medium_min_km: float | None = None,
    fine_min_km: float | None = None,
) -> dict[str, tuple[float, float | None]]:
    """Wavelength limits of the four scale bands, relative to the LR kernel and the grid.

    Defaults for the 120 km kernel on the 4 km grid:

    ========  ==========================  ===============  =====================================
    band      wavelength                  default (km)     meaning
    ========  ==========================  ===============  =====================================
    large     > 2 kernel                  > 240            the LR field resolves them: LR = HR
    medium    kernel / 2 .. 2 kernel      60 .. 240        partly resolved: the mean must restore
    fine      4 dx .. kernel / 2          16 .. 60         unresolved: members carry the energy
    finest    2 dx (Nyquist) .. 4 dx      8 .. 16          grid scale
    ========  ==========================  ===============  =====================================

    A box of width ``L`` keeps the power fraction ``sinc(L / lambda)**2`` along an axis:
    0.41 at ``lambda = 2 L``, 0.81 at ``4 L``, 0.95 at ``8 L``. "LR = HR" in the large
    band therefore relies on the red spectrum of thickness, whose large-band power sits
    at the domain scale.

    Parameters
    ----------
    kernel_km, dx : float
        LR box width and grid spacing (km).
    large_min_km, medium_min_km, fine_min_km : float, optional
        Override the lower wavelength limit of a band (the upper limit of the next one).

    Returns
    -------
    dict of str -> (lambda_min, lambda_max)
        Wavelengths in km; ``lambda_max`` of ``large`` is None (up to the domain size).
        A band contains the wavenumbers ``1/lambda_max <= k < 1/lambda_min``; the band of
        the shortest wavelengths (``finest``) also contains ``k = 1/lambda_min`` (the Nyquist
        wavenumber by default).
    """
    large = 2.0 * kernel_km if large_min_km is None else large_min_km
    medium = kernel_km / 2.0 if medium_min_km is None else medium_min_km
    fine = 4.0 * dx if fine_min_km is None else fine_min_km
    return {"large": (large, None), "medium": (medium, large), "fine": (fine, medium), "finest": (2.0 * dx, fine)}


def band_powers(
    k: np.ndarray, psd: np.ndarray, bands: dict[str, tuple[float, float | None]] | None = None
) -> dict[str, np.ndarray | float]:
    """Power (variance) of a spectrum in each scale band: ``sum(psd * dk)`` over the band's bins.

    Parameters
    ----------
    k : ndarray, shape (nbins,)
        Evenly spaced wavenumbers (cycles/km), from :func:`sitsr_core.spectra.isotropic_spectrum`.
    psd : ndarray, shape (..., nbins)
    bands : dict, optional
        From :func:`scale_bands`; default ``scale_bands()`` (120 km kernel, 4 km grid).

    Returns
    -------
    dict of str -> float or ndarray, shape (...)
        Band power in units of the field squared (m**2).
    """
    bands = scale_bands() if bands is None else bands
    dk = k[1] - k[0]
    shortest = min(lam_min for lam_min, _ in bands.values())
    out = {}
    for name, (lam_min, lam_max) in bands.items():
        lo = 0.0 if lam_max is None else 1.0 / lam_max
        hi = 1.0 / lam_min
        sel = (k >= lo) & ((k < hi) | ((lam_min == shortest) & (k <= hi * (1 + 1e-9))))
        p = (np.asarray(psd)[..., sel] * dk).sum(axis=-1)
        out[name] = p[()] if np.ndim(p) == 0 else p
    return out


def band_table(
    truth: np.ndarray,
    lr: np.ndarray,
    mean: np.ndarray,
    members: np.ndarray,
    mask: np.ndarray | None = None,
    dx: float = 4.0,
    kernel_km: float = 120.0,
    bands: dict[str, tuple[float, float | None]] | None = None,
) -> dict[str, dict[str, float | list]]:
    """Band powers of the LR field, the truth, the ensemble mean and the members.

    All spectra are computed on the same cells (valid in ``mask`` and finite in
    every field), with :func:`sitsr_core.spectra.isotropic_spectrum`.

    Parameters
    ----------
    truth, lr, mean : ndarray, shape (ny, nx)
    members : ndarray, shape (M, ny, nx)
    mask : ndarray of bool, shape (ny, nx), optional
        True on valid cells.
    dx, kernel_km : float
        Grid spacing and LR kernel (km), for the default bands.
    bands : dict, optional
        From :func:`scale_bands`; default ``scale_bands(kernel_km, dx)``.

    Returns
    -------
    dict of band -> dict
        ``lambda_km`` ([min, max], max None for unbounded), powers ``truth``, ``lr``,
        ``mean``, ``members`` (mean of the member band powers) in m**2, and
        ``lr_ratio``, ``mean_ratio``, ``members_ratio`` (power / truth power).
    """
    bands = scale_bands(kernel_km, dx) if bands is None else bands
    fields = np.concatenate([np.stack([truth, lr, mean]), np.asarray(members)], axis=0)
    valid = np.isfinite(fields).all(axis=0)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    k, psd = isotropic_spectrum(fields, valid, dx=dx)
    powers = band_powers(k, psd, bands)
    table = {}
    for name, (lam_min, lam_max) in bands.items():
        p = powers[name]
        row = {"lambda_km": [lam_min, lam_max], "truth": float(p[0]), "lr": float(p[1]), "mean": float(p[2]),
               "members": float(p[3:].mean())}
        with np.errstate(divide="ignore", invalid="ignore"):
            row.update({f"{f}_ratio": float(np.float64(row[f]) / row["truth"]) for f in ("lr", "mean", "members")})
        table[name] = row
    return table


def band_spread_skill(
    ens: np.ndarray,
    obs: np.ndarray,
    mask: np.ndarray | None = None,
    dx: float = 4.0,
    kernel_km: float = 120.0,
    bands: dict[str, tuple[float, float | None]] | None = None,
) -> dict[str, dict[str, float]]:
    """Spread-skill ratio per scale band: band-filtered spread against band-filtered error.

    The band power (:func:`band_powers` of :func:`sitsr_core.spectra.isotropic_spectrum`) of
    the member deviations ``x_i - mean`` is the spread variance in that band, and the band
    power of ``mean - obs`` the squared error of the mean there (Parseval); powers are summed
    over days before the ratio ``sqrt((M + 1) / M * spread^2 / error^2)`` with the unbiased
    ``spread^2 = sum_i P(x_i - mean) / (M - 1)``. 1 in every band for an exchangeable
    ensemble (truth and members drawn from one distribution), < 1 where the ensemble is
    over-confident at that scale.

    Parameters
    ----------
    ens : ndarray, shape (M, ny, nx) or (M, D, ny, nx)
        Members first; optionally days on the second axis.
    obs : ndarray, shape (ny, nx) or (D, ny, nx)
    mask : ndarray of bool, shape (ny, nx), optional
        True on valid cells; cells NaN in the truth or any member are left out too.
    dx, kernel_km : float
        Grid spacing and LR kernel (km), for the default bands.
    bands : dict, optional
        From :func:`scale_bands`.

    Returns
    -------
    dict of band -> dict with ``spread`` and ``rmse`` (m, band RMS of the corrected spread and
    of the error of the mean) and ``ratio``.
    """
    bands = scale_bands(kernel_km, dx) if bands is None else bands
    x = np.asarray(ens, dtype=np.float64)
    y = np.asarray(obs, dtype=np.float64)
    if x.ndim == 3:
        x, y = x[:, None], y[None]
    m = x.shape[0]
    if m < 2:
        raise ValueError("band_spread_skill needs at least two members")
    spread2, err2 = {b: 0.0 for b in bands}, {b: 0.0 for b in bands}
    for d in range(y.shape[0]):
        valid = np.isfinite(y[d]) & np.isfinite(x[:, d]).all(axis=0)
        if mask is not None:
            valid &= np.asarray(mask, dtype=bool)
        mean = x[:, d].mean(axis=0)
        k, psd = isotropic_spectrum(np.concatenate([x[:, d] - mean, (mean - y[d])[None]]), valid, dx=dx)
        for b, p in band_powers(k, psd, bands).items():
            spread2[b] += float(p[:-1].sum()) / (m - 1)
            err2[b] += float(p[-1])
    out = {}
    for b in bands:
        spread, rmse_b = np.sqrt((m + 1) / m * spread2[b] / y.shape[0]), np.sqrt(err2[b] / y.shape[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            out[b] = {"spread": float(spread), "rmse": float(rmse_b), "ratio": float(np.float64(spread) / rmse_b)}
    return out


def band_checks(table: dict[str, dict[str, float | list]]) -> list[dict[str, object]]:
    """The expected behaviour per scale band, checked on a :func:`band_table`.

    Statements (thresholds are the module constants):

    * large: LR = HR, ``|P_lr / P_truth - 1| <= LARGE_LR_RATIO_TOL``;
    * medium: the ensemble mean carries the energy, ``P_mean / P_truth > MEDIUM_MEAN_RATIO_MIN``;
    * medium: the mean is closer to the truth than LR, ``|P_mean - P_truth| / |P_lr - P_truth| < 1``;
    * fine: members carry more energy than the mean, ``P_members / P_mean > FINE_MEMBER_OVER_MEAN_MIN``;
    * finest: the mean falls back to LR, ``|P_mean - P_lr| / P_truth < FINEST_MEAN_LR_REL_MAX``.

    Parameters
    ----------
    table : dict
        Output of :func:`band_table` (needs the four default band names).

    Returns
    -------
    list of dict
        One per statement: ``statement`` (str), ``value`` (float), ``passed`` (bool).
    """
    lg, md, fn, fs = table["large"], table["medium"], table["fine"], table["finest"]
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = [
            (f"large: LR power equals truth power within {LARGE_LR_RATIO_TOL:.0%} (|P_lr/P_truth - 1|)",
             abs(lg["lr_ratio"] - 1.0), lambda v: v <= LARGE_LR_RATIO_TOL),
            (f"medium: ensemble mean carries the energy (P_mean/P_truth > {MEDIUM_MEAN_RATIO_MIN})",
             md["mean_ratio"], lambda v: v > MEDIUM_MEAN_RATIO_MIN),
            ("medium: ensemble mean closer to the truth than LR (|P_mean - P_truth| / |P_lr - P_truth| < 1)",
             np.float64(abs(md["mean"] - md["truth"])) / abs(md["lr"] - md["truth"]), lambda v: v < 1.0),
            (f"fine: members carry more energy than the mean (P_members/P_mean > {FINE_MEMBER_OVER_MEAN_MIN})",
             np.float64(fn["members"]) / fn["mean"], lambda v: v > FINE_MEMBER_OVER_MEAN_MIN),
            (f"finest: ensemble mean falls back to LR (|P_mean - P_lr|/P_truth < {FINEST_MEAN_LR_REL_MAX})",
             np.float64(abs(fs["mean"] - fs["lr"])) / fs["truth"], lambda v: v < FINEST_MEAN_LR_REL_MAX),
        ]
    return [{"statement": s, "value": float(v), "passed": bool(ok(v))} for s, v, ok in rows]
