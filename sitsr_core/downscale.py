"""Downscaling in metres: base fields, ensembles, post-processing, conservation and CF netCDF files.

The outermost layer of the inference code (``networks`` <- ``diffusion`` <- ``sampling`` <-
``checkpoint`` <- ``downscale``):

* :func:`base_field` — the field (m) a run's target is relative to: ``sit_lr``, 0, or the
  prediction of the base regression run (:func:`deterministic_metres`).
* :func:`ensemble_metres` — LR fields in metres -> an ensemble in metres for a
  :class:`~sitsr_core.checkpoint.LoadedRun` (normalise, :func:`sitsr_core.sampling.generate`,
  back, :func:`postprocess`).
* :func:`postprocess`, :func:`conserve_members` (:func:`conserve_block_means`, :func:`block_means`) —
  physical fields (>= 0, zero on land and where ``sic_lr == 0``) and optional conservation of what
  was observed.
* :func:`read_context`, :func:`write_ensemble`, :func:`downscale` — run folder + dataset date (or LR
  features file) -> CF netCDF; :func:`output_name` / :func:`parse_output_name` name the files of
  :func:`downscale_dates` (sharded over ranks); :func:`main` is ``python -m sitsr_core.downscale``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

from . import __version__, observe
from .checkpoint import LoadedRun, load_run, read_config
from .config import MIN_SAMPLER_STEPS, STOCHASTIC_SAMPLERS
from .dataset import open_dataset, split_days
from .errors import SitsrConfigError, SitsrDataError, SitsrInputError, exit_status
from .fileio import atomic_output, open_netcdf, remove_stale_temporaries
from .filters import block_sum
from .grid import grid_mapping_attrs
from .provenance import dataset_attrs, dataset_record, provenance
from .sampling import SAMPLERS, generate

#: File name of one date's ensemble (:func:`output_name`); group 1 is ``YYYYMMDD``.
OUTPUT_PATTERN = re.compile(r"^sit_hrai_(\d{8})\.nc$")


# ------------------------------------------------------------------------------------ base field

def base_field(cfg, fields, mask, base: LoadedRun | None = None, progress: bool = False) -> np.ndarray:
    """The field (m) the target of a run of config ``cfg`` is relative to, for LR fields (..., H, W).

    ``sit_lr`` for ``anomaly``, 0 for ``full`` and, for ``residual``, the prediction of the base
    regression run ``base`` (:func:`deterministic_metres`; 0 on land and open water).
    """
    if cfg.data.target != "residual":
        return lr_base(cfg, fields)
    if base is None:
        raise SitsrConfigError("data.target=residual needs its base (regression) run")
    return deterministic_metres(base, fields, mask, progress=progress)


def lr_base(cfg, fields) -> np.ndarray:
    """The base field of an ``anomaly`` (``sit_lr``) or ``full`` (0) target, from the LR fields alone."""
    sit_lr = np.asarray(fields["sit_lr"], dtype=np.float32)
    if cfg.data.target == "anomaly":
        return sit_lr
    if cfg.data.target == "full":
        return np.zeros_like(sit_lr)
    raise SitsrConfigError(f"data.target={cfg.data.target} has no base computable from the LR fields alone")


def members_metres(run: LoadedRun, fields, mask, base, *, members: int, steps: int, eta: float = 0.0,
                   seed: int = 0, chunk: int = 10, tile: int = 256, overlap: int = 32, tile_batch: int = 10,
                   callback: Callable[[dict], None] | None = None, sampler: str | None = None) -> np.ndarray:
    """An ensemble in metres relative to a given base field (m, (H, W)); see :func:`ensemble_metres`."""
    model = run.model
    ctx = model.context({k: torch.from_numpy(v) for k, v in {**fields, "base": base}.items()}, torch.from_numpy(mask))
    y = generate(model, ctx, torch.from_numpy(mask.astype(np.float32)), members=members, steps=steps, eta=eta,
                 seed=seed, chunk=chunk, tile=tile, overlap=overlap, tile_batch=tile_batch, callback=callback,
                 sampler=sampler)
    sit = model.to_metres(y.numpy(), base[None])
    return postprocess(sit, mask, fields["sic_lr"])


def ensemble_metres(run: LoadedRun, fields, mask, *, members: int, steps: int, eta: float = 0.0, seed: int = 0,
                    chunk: int = 10, tile: int = 256, overlap: int = 32, tile_batch: int = 10,
                    callback: Callable[[dict], None] | None = None, sampler: str | None = None) -> np.ndarray:
    """An ensemble in metres from LR fields in metres: base field, normalise, generate, back, post-process.

    Parameters
    ----------
    run : LoadedRun
    fields : dict of str -> ndarray, shape (H, W)
        The LR features of the run in physical units, with ``sit_lr`` and ``sic_lr``.
    mask : ndarray of bool, shape (H, W)
        True on ocean cells.
    members, steps, eta, seed, chunk, tile, overlap, tile_batch, callback, sampler
        As in :func:`sitsr_core.sampling.generate` (``sampler`` None: the run's ``sample.sampler``).

    Returns
    -------
    ndarray, shape (members, H, W)
        Sea-ice thickness (m), >= 0, 0 on land and open water.
    """
    base = base_field(run.cfg, fields, mask, run.base)
    return members_metres(run, fields, mask, base, members=members, steps=steps, eta=eta, seed=seed, chunk=chunk,
                          tile=tile, overlap=overlap, tile_batch=tile_batch, callback=callback, sampler=sampler)


def deterministic_metres(run: LoadedRun, fields, mask, progress: bool = False) -> np.ndarray:
    """The prediction (m) of a regression run for the LR fields of one or several days.

    The base field of a ``residual`` run (:func:`base_field`). Every day is predicted alone with
    the run's tiling and one crop per forward pass, so a day's base field is the same in training
    and at inference, whatever else is computed with it.

    Parameters
    ----------
    run : LoadedRun
        A ``train.objective = regression`` run (its own target is never ``residual``).
    fields : dict of str -> ndarray, shape (..., H, W)
        LR features of ``run`` in metres (with ``sit_lr`` and ``sic_lr``).
    mask : ndarray of bool, shape (H, W)
    progress : bool
        A tqdm bar over the days.

    Returns
    -------
    ndarray, shape (..., H, W), float32: post-processed thickness (>= 0), 0 on land.
    """
    if not run.model.regression:
        raise SitsrInputError("a residual run's base must be a regression run (train.objective=regression)")
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in fields.items()}
    lead = arrays["sit_lr"].shape[:-2]
    flat = {k: v.reshape((-1,) + v.shape[-2:]) for k, v in arrays.items()}
    sc = run.cfg.sample
    out = []
    for i in tqdm(range(flat["sit_lr"].shape[0]), desc="base predictions", unit="day", disable=not progress,
                  leave=False):
        day = {k: v[i] for k, v in flat.items()}
        out.append(members_metres(run, day, mask, lr_base(run.cfg, day), members=1, steps=1, chunk=1, tile=sc.tile,
                                  overlap=sc.overlap, tile_batch=1)[0])
    return np.stack(out).reshape(lead + np.shape(mask))


# ------------------------------------------------------------------------------- post-processing

def postprocess(sit, mask, sic_lr=None) -> np.ndarray:
    """Physical thickness: ``>= 0``, 0 on land and where ``sic_lr == 0`` (or NaN).

    ``sit`` has shape (..., H, W); ``mask`` (H, W) is True/1 on ocean cells.
    """
    sit = np.nan_to_num(np.asarray(sit, dtype=np.float32), nan=0.0)
    keep = np.asarray(mask).astype(bool)
    if sic_lr is not None:
        sic = np.asarray(sic_lr)
        keep = keep & np.isfinite(sic) & (sic > 0)
    return np.where(keep, np.clip(sit, 0.0, None), 0.0).astype(np.float32)


def _expand(b: np.ndarray, block: int, H: int, W: int) -> np.ndarray:
    return np.repeat(np.repeat(b, block, axis=-2), block, axis=-1)[..., :H, :W]


def block_means(field, mask, block: int) -> np.ndarray:
    """Means over ocean cells of non-overlapping ``block x block`` blocks anchored at (0, 0).

    ``field`` (..., H, W); returns (..., ceil(H / block), ceil(W / block)), NaN where a block has no ocean.
    """
    m = np.asarray(mask).astype(bool)
    a = np.where(m, np.nan_to_num(np.asarray(field, dtype=np.float64)), 0.0)
    cnt = block_sum(m.astype(np.float64), block)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, block_sum(a, block) / cnt, np.nan)


def conserve_members(sit, fields, mask, operator=None, observed=None, block: int = 30,
                     lr_block_means=None) -> np.ndarray:
    """``--conserve``: make members agree with what was observed of the thickness.

    With the dataset's observation operator (:func:`sitsr_core.observe.observed_sit`): the members'
    values seen through the operator (the product's coarse kernel means for ``"product"``; the
    moving mean at each block centre for ``"moving-mean"``) are brought to the observed values
    within the stated observation noise (:func:`sitsr_core.observe.conserve_observed`: exactly
    without noise). Cells where ``sic_lr`` is 0 stay ice free (as :func:`postprocess` made them).
    Without an operator (an LR features file from a product, or ``lr_block_means`` given): the
    ``block``-cell block means of ``sit_lr`` (or ``lr_block_means``), :func:`conserve_block_means`.
    """
    allowed = mask & np.isfinite(fields["sic_lr"]) & (fields["sic_lr"] > 0)
    if operator is None or lr_block_means is not None:
        target = block_means(fields["sit_lr"], mask, block) if lr_block_means is None else lr_block_means
        return conserve_block_means(sit, target, mask, block, allowed=allowed)
    W, c, sigma = observe.observation_constraint(operator, mask, observed)
    out = observe.conserve_observed(sit, W, c, sigma, mask)
    return np.where(allowed, out, 0.0).astype(np.float32)


def conserve_block_means(sit, lr_means, mask, block: int = 30, allowed=None, tol: float = 1e-6,
             max_iter: int = 20) -> np.ndarray:
    """Adjust fields so that their block means over ocean cells equal ``lr_means``, staying >= 0.

    Each block of each member is scaled multiplicatively (keeps zeros and
    positivity, exact in one pass); a block whose mean is 0 while its target is
    positive receives the deficit additively, spread evenly over its ``allowed``
    cells (ocean cells with ice, by default every ocean cell). Iterates until the
    largest error is below ``tol`` m.

    Parameters
    ----------
    sit : array, shape (..., H, W)
        Non-negative thickness (m), 0 on land.
    lr_means : array, shape (ceil(H / block), ceil(W / block))
        Target block means (m); NaN blocks are left unchanged.
    mask : array, shape (H, W)
        True on ocean cells (the cells the means are taken over).
    block : int
        Block size in cells (30 = 120 km at 4 km).
    allowed : array, shape (H, W), optional
        Cells that may receive an additive correction (default: ``mask``).

    Returns
    -------
    ndarray (float32), same shape as ``sit``.
    """
    a = np.clip(np.nan_to_num(np.asarray(sit, dtype=np.float64)), 0.0, None)
    H, W = a.shape[-2:]
    m = np.asarray(mask).astype(bool)
    allowed = m if allowed is None else (np.asarray(allowed).astype(bool) & m)
    a = np.where(m, a, 0.0)
    target = np.asarray(lr_means, dtype=np.float64)
    by, bx = -(-H // block), -(-W // block)
    if target.shape != (by, bx):
        raise SitsrInputError(f"conserve: block means have shape {target.shape}, expected {(by, bx)} for "
                              f"{H}x{W} cells and blocks of {block}")
    cnt = block_sum(m.astype(np.float64), block)
    n_allowed = block_sum(allowed.astype(np.float64), block)
    ok = (cnt > 0) & np.isfinite(target)
    target = np.where(ok, np.clip(target, 0.0, None), 0.0)
    for _ in range(max_iter):
        mean = np.where(ok, block_sum(a, block) / np.maximum(cnt, 1), 0.0)
        err = np.where(ok, target - mean, 0.0)
        if np.abs(err).max(initial=0.0) < tol:
            break
        scale = np.where(ok & (mean > 0), target / np.where(mean > 0, mean, 1.0), 1.0)
        add = np.where(ok & (mean <= 0) & (n_allowed > 0), err * cnt / np.maximum(n_allowed, 1), 0.0)
        a = a * _expand(scale, block, H, W) + _expand(add, block, H, W) * allowed
        a = np.clip(a, 0.0, None)
    return a.astype(np.float32)


# ------------------------------------------------------------------------------------- files

def read_context(data_path, date, lr_file, features=("sit_lr", "sic_lr", "divergence_lr", "shear_lr")):
    """``(fields dict of (H, W) float32, mask bool (H, W), coords dict, date str)``.

    ``features`` are the LR inputs the run was trained on; ``sit_lr`` and ``sic_lr`` are always read
    (anomaly add-back and post-processing need them).
    """
    names = tuple(dict.fromkeys(("sit_lr", "sic_lr") + tuple(features)))
    if lr_file is not None:
        if not Path(lr_file).exists():
            raise SitsrInputError(f"{lr_file}: LR features file not found")
        ds = open_netcdf(lr_file)  # one line for a file that is not (complete) netCDF
        where = str(lr_file)
    else:
        ds = open_dataset(data_path)
        where = str(data_path)
    if "time" in ds.dims:
        if date is None:
            if ds.sizes["time"] != 1:
                raise SitsrInputError(f"{where}: holds {ds.sizes['time']} dates; pass a date")
            ds = ds.isel(time=0)
        else:
            try:
                ds = ds.sel(time=pd.Timestamp(date))
            except (KeyError, ValueError):
                times = pd.DatetimeIndex(ds["time"].values)
                raise SitsrInputError(f"{where}: no date {date} (holds {times[0]:%Y-%m-%d} .. {times[-1]:%Y-%m-%d})") \
                    from None
    if "time" in ds.coords and ds["time"].size == 1:
        date = pd.Timestamp(ds["time"].values).strftime("%Y-%m-%d")
    missing = [v for v in names + ("mask",) if v not in ds.variables]
    if missing:
        hint = ("; this input has no deformation: use a model trained with data.features=sit_lr,sic_lr"
                if set(missing) <= {"divergence_lr", "shear_lr"} else "")
        raise SitsrDataError(f"{where}: missing variable(s) {missing} needed by the model{hint}")
    fields = {v: np.asarray(ds[v].values, dtype=np.float32) for v in names}
    for extra in ("sit_interp", "sit_regridded"):  # the baseline; a product's values before the training box
        if extra in ds.variables:
            fields[extra] = np.asarray(ds[extra].values, dtype=np.float32)
    mask = np.asarray(ds["mask"].values).astype(bool)
    if mask.shape != fields["sit_lr"].shape or mask.ndim != 2:
        raise SitsrDataError(f"{where}: mask {mask.shape} and sit_lr {fields['sit_lr'].shape} "
                             "must be the same 2-D grid")
    coords = {k: ds[k].values for k in ("x", "y", "latitude", "longitude") if k in ds.variables}
    return fields, mask, coords, None if date is None else pd.Timestamp(date).strftime("%Y-%m-%d")


def downscale(run_dir, data_path, date, members: int | None = None, steps: int | None = None,
              eta: float | None = None, seed: int | None = None, out_path=None, conserve: bool = False,
              lr_file=None, *, overwrite: bool = False, chunk: int | None = None, tile: int | None = None,
              overlap: int | None = None, tile_batch: int | None = None, block: int = 30, lr_block_means=None,
              device: str | None = None, bf16: bool | None = None, progress: bool = True,
              sampler: str | None = None) -> Path:
    """Generate an ensemble for one date and write it as a CF netCDF file.

    Global attributes record the sampling settings, the provenance of the code and configuration
    (:func:`sitsr_core.provenance.provenance`) and, for a dataset date, the dataset's
    ``dataset_fingerprint`` and ``dataset_identity`` (:func:`sitsr_core.provenance.dataset_attrs`).

    Parameters
    ----------
    run_dir : path
        Training run folder (``checkpoint.pt``, ``config.json``, ``norm_stats.json``); EMA weights are used.
    data_path : path
        Dataset store (ignored when ``lr_file`` is given).
    date : str or None
        ``YYYY-MM-DD`` (None: the single date of ``lr_file``).
    members, steps, eta, seed : optional
        Ensemble size, sampler steps, stochasticity and base seed (default: the run's ``sample`` config).
    out_path : path
        Output netCDF (written to a temporary sibling, then renamed).
    conserve : bool
        Make every member agree with what was observed (:func:`conserve_members`).
    lr_file : path, optional
        netCDF with ``sit_lr, sic_lr, divergence_lr, shear_lr, mask`` on the same grid
        (optionally ``time``, ``x``, ``y``, ``latitude``, ``longitude``, ``sit_interp``).
    overwrite : bool
        Replace an existing output.
    chunk, tile, overlap, tile_batch : int, optional
        Members per batch, tiling and crops per forward pass (default: the run's ``sample`` config).
    block : int
        Conservation block size in cells (30 = 120 km).
    lr_block_means : array, optional
        Target block means for ``conserve``; by default the ocean block means of ``sit_lr``
        (:func:`conserve_block_means`).
    device : str, optional
        ``cpu`` or ``cuda`` (default: cuda when available).
    bf16 : bool, optional
        bf16 autocast for inference (default: the run's ``train.bf16``).
    sampler : str, optional
        A key of :data:`sitsr_core.sampling.SAMPLERS` (default: the run's ``sample.sampler``).

    Returns
    -------
    Path of the written file.

    Raises
    ------
    SitsrInputError
        Missing run/data/date, or an existing output without ``overwrite``.
    """
    if out_path is None:
        raise SitsrInputError("downscale: an output path is required")
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise SitsrInputError(f"{out_path}: output exists; pass overwrite=True (--overwrite) to replace it")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = read_config(run_dir)  # settings checked before the weights are loaded
    sc = cfg.sample
    sampler = sc.sampler if sampler is None else str(sampler)
    if sampler not in SAMPLERS:
        raise SitsrInputError(f"downscale: sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
    members = sc.members if members is None else int(members)
    if cfg.train.objective == "regression":  # a deterministic baseline has one member whatever is asked
        members = 1
    steps = sc.steps if steps is None else int(steps)
    eta = sc.eta if eta is None else float(eta)
    seed = sc.seed if seed is None else int(seed)
    chunk = sc.chunk if chunk is None else int(chunk)
    tile = sc.tile if tile is None else int(tile)
    overlap = sc.overlap if overlap is None else int(overlap)
    tile_batch = sc.tile_batch if tile_batch is None else int(tile_batch)
    if eta > 0 and sampler not in STOCHASTIC_SAMPLERS:
        raise SitsrInputError(f"downscale: eta {eta} > 0 needs a stochastic sampler "
                              f"({', '.join(STOCHASTIC_SAMPLERS)}); {sampler} is deterministic (pass --sampler ddim)")
    min_steps = 1 if cfg.train.objective == "regression" else MIN_SAMPLER_STEPS
    if members < 1 or steps < min_steps or eta < 0 or chunk < 1:
        raise SitsrInputError(f"downscale: need members >= 1, steps >= {min_steps}, eta >= 0, chunk >= 1 "
                              f"(got {members}, {steps}, {eta}, {chunk})")
    if not 0 <= overlap < tile // 2:
        raise SitsrInputError(f"downscale: overlap {overlap} must be >= 0 and < tile / 2 (tile {tile})")
    run = load_run(run_dir, device=device, bf16=bf16)

    fields, mask, coords, date = read_context(data_path, date, lr_file, run.features)
    dataset = None if lr_file is not None else dataset_record(open_dataset(data_path), data_path)
    n_evals = 1 if run.model.regression else steps
    bar = tqdm(total=-(-members // chunk) * n_evals, desc=f"downscale {date or ''}", unit="step",
               disable=not progress, leave=False)
    sit = ensemble_metres(run, fields, mask, members=members, steps=steps, eta=eta, seed=seed, chunk=chunk,
                          tile=tile, overlap=overlap, tile_batch=tile_batch, callback=lambda d: bar.update(1),
                          sampler=sampler)
    bar.close()
    if conserve:
        operator, observed = (None, None) if lr_file is not None else observe.observed_sit(open_dataset(data_path),
                                                                                          date)
        if operator is None and lr_block_means is None and "sit_regridded" in fields:
            # a product's features file: the product's own values (regridded, before the training box), not the
            # box mean of them, are what was observed
            lr_block_means = block_means(fields["sit_regridded"], mask, block)
        sit = conserve_members(sit, fields, mask, operator, observed, block=block, lr_block_means=lr_block_means)
    attrs = {
        **output_attrs(run_dir, lr_file if lr_file is not None else data_path),
        **provenance(cfg),
        "sampler": sampler, "steps": steps, "eta": float(eta), "seed": seed, "members": members,
        "conserve": int(bool(conserve)), "conserve_block": block,
        "objective": cfg.train.objective, "target": cfg.data.target,
        "date": date or "",
        **({} if dataset is None else dataset_attrs(dataset)),
    }
    return write_ensemble(out_path, sit, fields, mask, coords, date, attrs, overwrite=overwrite)


def output_attrs(run_dir, source) -> dict[str, str]:
    """``institution``, ``source``, ``history`` and ``run`` of an output file, without absolute paths.

    Folder and file names only: an output shared with a colleague does not carry the layout of the
    machine it was made on. ``history`` is the CF time-stamped command line (arguments that are paths
    reduced to their names).
    """
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    command = " ".join(shlex.quote(Path(a).name if os.sep in a else a) for a in sys.argv[1:]) or "(library call)"
    return {
        "institution": "generated with sitsr (super-resolution of sea-ice thickness with diffusion models)",
        "source": f"sitsr {__version__} diffusion ensemble; run {Path(run_dir).name}; LR input {Path(source).name}",
        "history": f"{now}: sitsr {command}",
        "run": Path(run_dir).name,
    }


def write_ensemble(out_path, sit, fields, mask, coords, date, attrs: dict, *, overwrite: bool = False) -> Path:
    """Write an ensemble (members, H, W) in metres as a CF-1.8 netCDF file, atomically.

    Variables ``sit_ai`` (members), ``sit_ai_mean``, ``sit_ai_std`` (ddof=1; 0 for one member), ``sit_lr``,
    ``mask`` and, when in ``fields``, ``sit_interp``; ``coords`` (from :func:`read_context`) gives ``x``,
    ``y`` (default: cell indices) and optionally ``latitude``/``longitude``; ``date`` (or None) the
    ``time`` coordinate; ``attrs`` are added to the global attributes after ``Conventions`` and ``title``.
    """
    members, H, W = sit.shape
    if "x" in coords and "y" in coords:
        x, yc = coords["x"], coords["y"]
    else:
        x, yc = np.arange(W, dtype=float), np.arange(H, dtype=float)
    grid_attrs = {"grid_mapping": "polar_stereographic"}
    m_attrs = dict(units="m", grid_mapping="polar_stereographic")
    data = {
        "sit_ai": (("member", "y", "x"), sit, dict(m_attrs, long_name="sea ice thickness, generated ensemble",
                                                   standard_name="sea_ice_thickness")),
        "sit_ai_mean": (("y", "x"), sit.mean(axis=0), dict(m_attrs, long_name="ensemble mean of sit_ai",
                                                           standard_name="sea_ice_thickness",
                                                           cell_methods="realization: mean")),
        "sit_ai_std": (("y", "x"), sit.std(axis=0, ddof=1) if members > 1 else np.zeros((H, W), np.float32),
                       dict(m_attrs, long_name="ensemble standard deviation of sit_ai (ddof=1)",
                            standard_name="sea_ice_thickness", cell_methods="realization: standard_deviation")),
        "sit_lr": (("y", "x"), fields["sit_lr"], dict(m_attrs, long_name="low-resolution context thickness")),
        "mask": (("y", "x"), mask.astype(np.int8), dict(grid_attrs, long_name="ocean mask",
                                                         flag_values=np.array([0, 1], np.int8),
                                                         flag_meanings="land ocean")),
        "polar_stereographic": ((), np.int32(0), grid_mapping_attrs()),
    }
    if "sit_interp" in fields:
        data["sit_interp"] = (("y", "x"), fields["sit_interp"],
                              dict(m_attrs, long_name="interpolated 120 km block means (baseline)"))
    crd = {
        "member": ("member", np.arange(members, dtype=np.int32),
                   {"long_name": "ensemble member", "standard_name": "realization", "units": "1"}),
        "x": ("x", np.asarray(x, dtype=np.float64), dict(standard_name="projection_x_coordinate", units="m")),
        "y": ("y", np.asarray(yc, dtype=np.float64), dict(standard_name="projection_y_coordinate", units="m")),
    }
    if "latitude" in coords:
        crd["latitude"] = (("y", "x"), np.asarray(coords["latitude"], np.float32),
                           dict(standard_name="latitude", units="degrees_north"))
        crd["longitude"] = (("y", "x"), np.asarray(coords["longitude"], np.float32),
                            dict(standard_name="longitude", units="degrees_east"))
    ds = xr.Dataset(data, coords=crd)
    if "latitude" in coords:
        for v in ("sit_ai", "sit_ai_mean", "sit_ai_std", "sit_lr", "sit_interp", "mask"):
            if v in ds:
                ds[v].attrs["coordinates"] = "latitude longitude"
    if date is not None:
        ds = ds.assign_coords(time=np.datetime64(pd.Timestamp(date), "ns"))
        ds["time"].attrs.update(standard_name="time")
    ds.attrs = {"Conventions": "CF-1.8", "title": "sitsr generated sea-ice thickness ensemble", **attrs}
    enc = {v: {"zlib": True, "complevel": 4} for v in ("sit_ai", "sit_ai_mean", "sit_ai_std", "sit_lr")}
    with atomic_output(out_path, overwrite=overwrite) as tmp:
        ds.to_netcdf(tmp, encoding=enc, format="NETCDF4")
    return Path(out_path)


def output_name(date) -> str:
    """File name of one date's ensemble: ``sit_hrai_YYYYMMDD.nc`` (:data:`OUTPUT_PATTERN`)."""
    return f"sit_hrai_{pd.Timestamp(date):%Y%m%d}.nc"


def parse_output_name(name: str) -> pd.Timestamp | None:
    """The date of an :func:`output_name` file name, None for any other name."""
    m = OUTPUT_PATTERN.match(name)
    return None if m is None else pd.Timestamp(m.group(1))


def rank_device(device: str | None, local_rank: str | None = None, cuda_available: bool | None = None) -> str:
    """The device of this process: under torchrun (``LOCAL_RANK`` set) each rank samples on its own GPU.

    ``None`` means cuda when available, else cpu; ``"cuda"`` becomes ``"cuda:LOCAL_RANK"`` (and is made the
    current device), so N ranks on a node use N GPUs instead of all sharing GPU 0. An explicit index
    (``cuda:1``) or ``cpu`` is kept.
    """
    local_rank = os.environ.get("LOCAL_RANK") if local_rank is None else local_rank
    cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
    device = device or ("cuda" if cuda_available else "cpu")
    if device == "cuda" and local_rank is not None:
        device = f"cuda:{int(local_rank)}"
    if device.startswith("cuda:") and cuda_available:
        torch.cuda.set_device(torch.device(device))
    return device


def downscale_dates(run_dir, data_path, dates, out_dir, *, overwrite: bool = False, rank: int | None = None,
                    world_size: int | None = None, **kwargs) -> list[Path]:
    """Downscale many dates into ``out_dir/sit_hrai_YYYYMMDD.nc``, skipping completed dates.

    Dates are sharded over ranks (``RANK``/``WORLD_SIZE`` from torchrun by default):
    rank ``r`` takes dates ``r, r + world_size, ...``; each file is written atomically,
    so an interrupted run leaves completed dates and no partial file, and a rerun
    does only what is missing (after removing the temporaries of killed processes).

    Parameters
    ----------
    run_dir, data_path
        As in :func:`downscale`.
    dates : sequence of date-like
    out_dir : path
        Output folder (created if missing).
    overwrite : bool
        Regenerate dates whose file exists.
    rank, world_size : int, optional
        Shard of this process (default from the environment, else 0 of 1).
    **kwargs
        Passed to :func:`downscale` (members, steps, eta, seed, conserve, device, ...).

    Returns
    -------
    list of Path, the files of this rank's dates (existing or new).
    """
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    kwargs["device"] = rank_device(kwargs.get("device"))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    done = []
    for date in list(dates)[rank::world_size]:
        path = out_dir / output_name(date)
        if overwrite or not path.exists():
            downscale(run_dir, data_path, str(date)[:10], out_path=path, overwrite=overwrite, **kwargs)
        done.append(path)
    return done


def add_arguments(ap) -> None:
    """Arguments of ``sitsr downscale`` and ``python -m sitsr_core.downscale``."""
    # --run-dir: under torchrun, whose own parser reads "--run" as an abbreviation of its --run-path
    ap.add_argument("--run", "--run-dir", dest="run", required=True, help="training run folder")
    ap.add_argument("--data", help="dataset store (for dates inside the dataset)")
    ap.add_argument("--date", dest="dates", nargs="+", default=[], help="date(s) YYYY-MM-DD")
    ap.add_argument("--split", help="all dates of a dataset split instead of --date: val (the test split is "
                                    "read only by sitsr evaluate, for the final table)")
    ap.add_argument("--lr-file", help="LR features netCDF (sit_lr, sic_lr, divergence_lr, shear_lr, mask)")
    ap.add_argument("--out", help="output file (one date) or folder (sit_hrai_YYYYMMDD.nc per date)")
    ap.add_argument("--members", type=int, help="ensemble size (default: the run's sample.members)")
    ap.add_argument("--sampler", choices=sorted(SAMPLERS), help="sampler (default: the run's sample.sampler)")
    ap.add_argument("--steps", type=int, help="sampler steps (network evaluations per member)")
    ap.add_argument("--eta", type=float, help="0: deterministic DDIM; > 0: stochastic")
    ap.add_argument("--seed", type=int, help="base seed (member m uses seed + m)")
    ap.add_argument("--tile", type=int, help="tile size in cells")
    ap.add_argument("--conserve", action="store_true",
                    help="make members agree with what was observed: the dataset's observed values within their "
                         "noise, or the 120 km block means of a product's regridded values (--lr-file)")
    ap.add_argument("--device", help="cpu or cuda")
    ap.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    ap.add_argument("--no-progress", action="store_true")


def run_downscale(args) -> list[Path]:
    """Dispatch parsed ``add_arguments`` options to :func:`downscale` or :func:`downscale_dates`."""
    kw = dict(sampler=args.sampler, members=args.members, steps=args.steps, eta=args.eta, seed=args.seed,
              tile=args.tile, conserve=args.conserve, device=args.device, progress=not args.no_progress)
    if args.out is None:
        raise SitsrInputError("downscale: --out is required")
    if args.lr_file:
        return [downscale(args.run, None, args.dates[0] if args.dates else None, out_path=args.out,
                          lr_file=args.lr_file, overwrite=args.overwrite, **kw)]
    if args.data is None:
        raise SitsrInputError("downscale: give --data (dataset store) or --lr-file")
    dates = list(args.dates)
    if args.split:
        dates += [str(d.date()) for d in split_days(open_dataset(args.data), args.split)]
    if not dates:
        raise SitsrInputError("downscale: give --date or --split")
    if len(dates) == 1 and str(args.out).endswith(".nc"):
        return [downscale(args.run, args.data, dates[0], out_path=args.out, overwrite=args.overwrite, **kw)]
    return downscale_dates(args.run, args.data, dates, args.out, overwrite=args.overwrite, **kw)


def main(argv: list[str] | None = None) -> int:
    """``torchrun --nproc_per_node N -m sitsr_core.downscale --run-dir R --data D --date ... --out O``."""
    ap = argparse.ArgumentParser(prog="sitsr_core.downscale", description="downscale many dates, sharded over ranks")
    add_arguments(ap)
    args = ap.parse_args(argv)
    return exit_status("sitsr_core.downscale", lambda: run_sharded(args))


def run_sharded(args) -> list[Path]:
    """:func:`run_downscale` on every rank of a torchrun job; returns when all ranks have written their dates.

    Each rank takes its share of the dates (:func:`downscale_dates`); a gloo process group (CPU or GPU
    ranks alike) only provides the final barrier, so that the job ends when the last date is on disk.
    """
    if int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return run_downscale(args)
    torch.distributed.init_process_group("gloo")
    try:
        files = run_downscale(args)
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()
    return files


if __name__ == "__main__":
    raise SystemExit(main())
