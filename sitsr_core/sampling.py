"""Samplers, ensembles, tiling, post-processing and the ``downscale`` entry point.

Layers, from the inside out:

* :func:`ddim` — a plain k-diffusion-style sampler in normalised space. The
  caller owns the initial noise (and, for ``eta > 0``, the per-step noise via
  ``noise_sampler`` or ``generator``).
* :class:`Tiler` — wraps a :class:`~sitsr_core.diffusion.Denoiser` so that a
  domain larger than the tile is predicted as overlapping tiles whose clean-target
  predictions are blended with smooth weights at every step: the sampler always
  sees one consistent full-domain state, and memory is bounded by ``tile_batch``.
* :func:`generate` — an ensemble of M members in chunks; member ``m`` draws all
  its noise over the whole domain from its own generator seeded ``seed + m``, so
  a member is bit-identical whatever the chunk size or ensemble size.
* :func:`postprocess`, :func:`conserve` — physical fields (>= 0, zero on land and
  where ``sic_lr == 0``) and optional block-mean conservation.
* :func:`downscale` — run folder + dataset date (or LR features file) -> CF netCDF.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import diffusion
from .errors import SitsrDataError, SitsrInputError
from .filters import block_sum
from .io import remove_stale_temporaries


# ------------------------------------------------------------------------------------------ DDIM

def ddim_times(steps: int) -> np.ndarray:
    """The ``steps`` times at which the network is evaluated: ``1 - i / steps``."""
    return 1.0 - np.arange(steps) / steps


@torch.no_grad()
def ddim(model, context: torch.Tensor, mask: torch.Tensor, *, steps: int, eta: float = 0.0,
         noise: torch.Tensor, generator: torch.Generator | None = None,
         noise_sampler: Callable[[int], torch.Tensor] | None = None,
         callback: Callable[[dict], None] | None = None) -> torch.Tensor:
    """DDIM sampling from ``t = 1`` towards ``t = 0`` in ``steps`` network evaluations.

    At each step ``i`` (time ``t_i = 1 - i / steps``) the model predicts the clean
    target ``y0``; it is set to 0 on land (as in training), the noise estimate is
    recomputed from it, and the state moves to ``t_{i+1}``:
    ``z' = r_s' y0 + sqrt(r_eps'^2 - sigma^2) eps + sigma xi`` with
    ``sigma = eta (r_eps' / r_eps) sqrt(1 - (r_s / r_s')^2)``. The last prediction
    of ``y0`` is returned (as in the Keras DDIM example).

    Parameters
    ----------
    model
        Object with ``predict(z, t, context) -> (eps, y0)`` and ``cfg`` (a Denoiser or :class:`Tiler`).
    context : Tensor, shape (B, C, H, W)
        Normalised conditioning channels.
    mask : Tensor, shape (B, 1, H, W) or broadcastable
        1 on ocean cells.
    steps : int
    eta : float
        0: deterministic DDIM; > 0: stochastic (1 ~ DDPM-like).
    noise : Tensor, shape (B, 1, H, W)
        Initial state at ``t = 1`` (standard normal, owned by the caller).
    generator : torch.Generator, optional
        Source of the per-step noise when ``eta > 0`` and no ``noise_sampler``.
    noise_sampler : callable, optional
        ``noise_sampler(i) -> Tensor`` like ``noise``: the noise of step ``i`` (for ``eta > 0``).
    callback : callable, optional
        Called with ``dict(step=i, t=t_i, z=z, y0=y0)`` after each prediction.

    Returns
    -------
    Tensor, shape (B, 1, H, W): the normalised clean target.
    """
    dcfg = model.cfg.diffusion
    z = noise.float().clone()
    mask = mask.to(z.dtype)
    B = z.shape[0]
    times = ddim_times(steps)
    y0 = None
    for i, ti in enumerate(times):
        t = torch.full((B,), float(ti), device=z.device)
        _, y0 = model.predict(z, t, context)
        y0 = y0 * mask
        s, n = (float(v) for v in diffusion.rates(diffusion.angles(float(ti), dcfg)))
        eps = (z - s * y0) / n
        if callback is not None:
            callback(dict(step=i, t=float(ti), z=z, y0=y0))
        if i == steps - 1:
            break
        s1, n1 = (float(v) for v in diffusion.rates(diffusion.angles(float(times[i + 1]), dcfg)))
        sigma = eta * (n1 / n) * math.sqrt(max(0.0, 1.0 - (s / s1) ** 2)) if eta > 0 else 0.0
        sigma = min(sigma, n1)
        z = s1 * y0 + math.sqrt(max(n1 * n1 - sigma * sigma, 0.0)) * eps
        if sigma > 0:
            xi = noise_sampler(i) if noise_sampler is not None else torch.randn(z.shape, generator=generator)
            z = z + sigma * xi.to(z.device, z.dtype)
    return y0


# ----------------------------------------------------------------------------------------- tiles

def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``min(tile, length)`` covering ``[0, length)``.

    The fewest tiles whose consecutive overlaps are at least ``overlap``, spread evenly.
    """
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return sorted({int(round(i * (length - tile) / (n - 1))) for i in range(n)})


def _ramp(n: int) -> np.ndarray:
    return np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2


def tile_weights_1d(starts: list[int], size: int, length: int) -> list[np.ndarray]:
    """Blending weights of each tile along one axis: raised-sine ramps over the actual overlaps.

    Each weight is 1 away from neighbours, rises as ``sin^2`` across the overlap with the
    previous tile and falls as ``cos^2`` across the overlap with the next one, and is
    positive everywhere; the domain edges are not ramped. Two neighbours' ramps
    over the same overlap sum to 1.
    """
    out = []
    for k, s in enumerate(starts):
        w = np.ones(size)
        if k > 0:
            ov = starts[k - 1] + size - s
            if ov > 0:
                w[:ov] *= _ramp(ov)
        if k < len(starts) - 1:
            ov = s + size - starts[k + 1]
            if ov > 0:
                w[size - ov:] *= _ramp(ov)[::-1]
        out.append(w)
    return out


class Tiler:
    """A Denoiser evaluated as overlapping tiles, blended into one full-domain prediction.

    ``predict(z, t, context)`` crops every (member, tile) pair, runs the model on
    ``tile_batch`` crops at a time and blends the clean-target predictions with
    separable raised-sine weights (:func:`tile_weights_1d`); the noise estimate
    is recomputed from the blended prediction, so the whole domain is one state.
    A domain that fits in one tile is a single crop with weight 1. With
    ``pad=True`` every forward pass holds exactly ``tile_batch`` crops (the last
    one is padded with zero crops): convolution kernels choose their algorithm by
    batch size, so this keeps each member's values bit-identical whatever the
    number of members per chunk.
    """

    def __init__(self, model, tile: int, overlap: int, tile_batch: int = 10, pad: bool = True):
        self.model = model
        self.cfg = model.cfg
        self.regression = getattr(model, "regression", False)
        self.tile = int(tile)
        self.overlap = int(overlap)
        self.tile_batch = max(1, int(tile_batch))
        self.pad = pad
        self._cache: dict = {}

    def layout(self, H: int, W: int):
        """``(th, tw, [(r0, c0, weight (th, tw))...])`` for a domain of H x W."""
        th, tw = min(self.tile, H), min(self.tile, W)
        rs, cs = tile_starts(H, self.tile, self.overlap), tile_starts(W, self.tile, self.overlap)
        wr, wc = tile_weights_1d(rs, th, H), tile_weights_1d(cs, tw, W)
        return th, tw, [(r, c, np.outer(a, b)) for r, a in zip(rs, wr) for c, b in zip(cs, wc)]

    @torch.no_grad()
    def predict(self, z: torch.Tensor, t: torch.Tensor, context: torch.Tensor):
        B, _, H, W = z.shape
        key = (H, W, z.dtype, z.device)
        if key not in self._cache:
            th, tw, tiles = self.layout(H, W)
            weights = [torch.as_tensor(w, dtype=z.dtype, device=z.device) for _, _, w in tiles]
            wsum = torch.zeros((1, 1, H, W), dtype=z.dtype, device=z.device)
            for k, (r, c, _) in enumerate(tiles):
                wsum[0, 0, r:r + th, c:c + tw] += weights[k]
            self._cache = {key: (th, tw, tiles, weights, wsum)}
        th, tw, tiles, weights, wsum = self._cache[key]
        t = torch.as_tensor(t, dtype=torch.float32, device=z.device).reshape(-1).expand(B)
        acc = torch.zeros_like(z)
        pairs = [(k, b) for k in range(len(tiles)) for b in range(B)]
        for i in range(0, len(pairs), self.tile_batch):
            chunk = pairs[i:i + self.tile_batch]
            zc = torch.stack([z[b, :, tiles[k][0]:tiles[k][0] + th, tiles[k][1]:tiles[k][1] + tw] for k, b in chunk])
            cc = torch.stack([context[b, :, tiles[k][0]:tiles[k][0] + th, tiles[k][1]:tiles[k][1] + tw]
                              for k, b in chunk])
            tc = torch.stack([t[b] for _, b in chunk])
            if self.pad and len(chunk) < self.tile_batch:
                extra = self.tile_batch - len(chunk)
                zc = torch.cat([zc, zc.new_zeros((extra,) + zc.shape[1:])])
                cc = torch.cat([cc, cc.new_zeros((extra,) + cc.shape[1:])])
                tc = torch.cat([tc, tc[:1].expand(extra)])
            _, y0c = self.model.predict(zc, tc, cc)
            for j, (k, b) in enumerate(chunk):
                r, c, _ = tiles[k]
                acc[b, :, r:r + th, c:c + tw] += weights[k] * y0c[j]
        y0 = acc / wsum
        if self.regression:
            return torch.zeros_like(z), y0
        s, n = diffusion.rates(diffusion.angles(t, self.cfg.diffusion).reshape(-1, 1, 1, 1))
        return (z - s * y0) / n, y0


# -------------------------------------------------------------------------------------- ensemble

def member_noise(seed: int, member: int, shape: tuple[int, int]) -> tuple[torch.Tensor, Callable[[], torch.Tensor]]:
    """Initial noise (1, H, W) of one member and a function drawing its next step noise.

    Everything is drawn on the CPU from ``torch.Generator().manual_seed(seed + member)``
    over the whole domain, so the member is reproducible whatever the device,
    the chunking or the tiling.
    """
    g = torch.Generator().manual_seed(int(seed) + int(member))
    first = torch.randn((1,) + tuple(shape), generator=g)
    return first, lambda: torch.randn((1,) + tuple(shape), generator=g)


def generate(model, context: torch.Tensor, mask: torch.Tensor, *, members: int, steps: int, eta: float = 0.0,
             seed: int = 0, chunk: int = 10, tile: int | None = None, overlap: int = 0, tile_batch: int = 10,
             callback: Callable[[dict], None] | None = None, first_member: int = 0) -> torch.Tensor:
    """An ensemble in normalised space.

    Parameters
    ----------
    model : Denoiser
    context : Tensor, shape (C, H, W)
        Normalised context of one date (from ``model.context``).
    mask : Tensor, shape (H, W)
        1 on ocean cells.
    members, steps, eta, seed, chunk
        Ensemble size, DDIM steps, stochasticity, base seed (member m uses ``seed + m``),
        members sampled together.
    tile, overlap, tile_batch : int
        Tiling for domains larger than ``tile`` (None: one tile covering the domain) and crops
        per forward pass (every pass is padded to ``tile_batch`` crops, see :class:`Tiler`).
    callback : callable, optional
        Receives the sampler's dict plus ``members=(m0, m1)``.
    first_member : int
        Index of the first member (for resuming or splitting an ensemble).

    Returns
    -------
    Tensor, shape (members, H, W), on the CPU: the normalised clean targets.
    """
    device = next(model.parameters()).device if hasattr(model, "parameters") else context.device
    H, W = context.shape[-2:]
    runner = Tiler(model, tile or max(H, W), overlap, tile_batch)
    mask4 = mask.reshape(1, 1, H, W).to(device)
    out = []
    for m0 in range(first_member, first_member + members, chunk):
        ms = list(range(m0, min(m0 + chunk, first_member + members)))
        draws = [member_noise(seed, m, (H, W)) for m in ms]
        noise = torch.stack([d[0] for d in draws]).to(device)
        ctx = context.to(device).unsqueeze(0).expand(len(ms), -1, -1, -1)

        def sampler(i, draws=draws):
            return torch.stack([d[1]() for d in draws]).to(device)

        cb = None if callback is None else (lambda d, ms=ms: callback(dict(d, members=(ms[0], ms[-1] + 1))))
        if getattr(model, "regression", False):
            _, y0 = runner.predict(noise, torch.zeros(len(ms), device=device), ctx)
            y0 = y0 * mask4
            if cb is not None:
                cb(dict(step=steps - 1, t=0.0, z=noise, y0=y0))
        else:
            y0 = ddim(runner, ctx, mask4, steps=steps, eta=eta, noise=noise, noise_sampler=sampler, callback=cb)
        out.append(y0[:, 0].float().cpu())
    return torch.cat(out)


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


def conserve(sit, lr_means, mask, block: int = 30, allowed=None, tol: float = 1e-6,
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


conserve_fn = conserve  # alias: ``downscale`` has a ``conserve`` flag


# ------------------------------------------------------------------------------------- downscale

def _read_context(data_path, date, lr_file, features=("sit_lr", "sic_lr", "divergence_lr", "shear_lr")):
    """``(fields dict of (H, W) float32, mask bool (H, W), coords dict, date str)``.

    ``features`` are the LR inputs the run was trained on; ``sit_lr`` and ``sic_lr`` are always read
    (anomaly add-back and post-processing need them).
    """
    import pandas as pd
    import xarray as xr

    from . import dataset as dsmod

    names = tuple(dict.fromkeys(("sit_lr", "sic_lr") + tuple(features)))
    if lr_file is not None:
        path = Path(lr_file)
        if not path.exists():
            raise SitsrInputError(f"{path}: LR features file not found")
        ds = xr.open_dataset(path)
        where = str(path)
    else:
        ds = dsmod.open_dataset(data_path)
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
    if "sit_interp" in ds.variables:
        fields["sit_interp"] = np.asarray(ds["sit_interp"].values, dtype=np.float32)
    mask = np.asarray(ds["mask"].values).astype(bool)
    if mask.shape != fields["sit_lr"].shape or mask.ndim != 2:
        raise SitsrDataError(f"{where}: mask {mask.shape} and sit_lr {fields['sit_lr'].shape} "
                             "must be the same 2-D grid")
    coords = {k: ds[k].values for k in ("x", "y", "latitude", "longitude") if k in ds.variables}
    return fields, mask, coords, None if date is None else pd.Timestamp(date).strftime("%Y-%m-%d")


def ensemble_metres(model, fields, mask, *, members: int, steps: int, eta: float = 0.0, seed: int = 0,
                    chunk: int = 10, tile: int = 256, overlap: int = 32, tile_batch: int = 10,
                    callback: Callable[[dict], None] | None = None) -> np.ndarray:
    """An ensemble in metres from LR fields in metres: normalise, :func:`generate`, back, :func:`postprocess`.

    Parameters
    ----------
    model : Denoiser
    fields : dict of str -> ndarray, shape (H, W)
        The LR features of ``model`` in physical units, with ``sit_lr`` and ``sic_lr``.
    mask : ndarray of bool, shape (H, W)
        True on ocean cells.
    members, steps, eta, seed, chunk, tile, overlap, tile_batch, callback
        As in :func:`generate`.

    Returns
    -------
    ndarray, shape (members, H, W)
        Sea-ice thickness (m), NaN on land.
    """
    base = model.base_field(fields, mask)
    ctx = model.context({k: torch.from_numpy(v) for k, v in {**fields, "base": base}.items()}, torch.from_numpy(mask))
    y = generate(model, ctx, torch.from_numpy(mask.astype(np.float32)), members=members, steps=steps, eta=eta,
                 seed=seed, chunk=chunk, tile=tile, overlap=overlap, tile_batch=tile_batch, callback=callback)
    sit = model.to_metres(y.numpy(), base[None])
    return postprocess(sit, mask, fields["sic_lr"])


def deterministic_metres(model, fields, mask, progress: bool = False) -> np.ndarray:
    """The prediction (m) of a regression run for the LR fields of one or several days.

    The base field of a ``residual`` run (:func:`sitsr_core.diffusion.base_field`). Every day is
    predicted alone with the run's tiling and one crop per forward pass, so a day's base field
    is the same in training and at inference, whatever else is computed with it.

    Parameters
    ----------
    model : Denoiser
        A ``train.objective = regression`` run.
    fields : dict of str -> ndarray, shape (..., H, W)
        LR features of ``model`` in metres (with ``sit_lr`` and ``sic_lr``).
    mask : ndarray of bool, shape (H, W)
    progress : bool
        A tqdm bar over the days.

    Returns
    -------
    ndarray, shape (..., H, W), float32: post-processed thickness (>= 0), 0 on land.
    """
    from tqdm.auto import tqdm

    if not model.regression:
        raise SitsrInputError("a residual run's base must be a regression run (train.objective=regression)")
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in fields.items()}
    lead = arrays["sit_lr"].shape[:-2]
    flat = {k: v.reshape((-1,) + v.shape[-2:]) for k, v in arrays.items()}
    sc = model.cfg.sample
    out = [ensemble_metres(model, {k: v[i] for k, v in flat.items()}, mask, members=1, steps=1, chunk=1,
                           tile=sc.tile, overlap=sc.overlap, tile_batch=1)[0]
           for i in tqdm(range(flat["sit_lr"].shape[0]), desc="base predictions", unit="day",
                         disable=not progress, leave=False)]
    return np.stack(out).reshape(lead + np.shape(mask))


def downscale(run_dir, data_path, date, members: int | None = None, steps: int | None = None,
              eta: float | None = None, seed: int | None = None, out_path=None, conserve: bool = False,
              lr_file=None, *, overwrite: bool = False, chunk: int | None = None, tile: int | None = None,
              overlap: int | None = None, tile_batch: int | None = None, block: int = 30, lr_block_means=None,
              device: str | None = None, bf16: bool | None = None, progress: bool = True) -> Path:
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
        Ensemble size, DDIM steps, stochasticity and base seed (default: the run's ``sample`` config).
    out_path : path
        Output netCDF (written to a temporary sibling, then renamed).
    conserve : bool
        Make every member's ``block``-cell block means over ocean equal the LR block means.
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
        Target block means for ``conserve``; by default the ocean block means of ``sit_lr``.
    device : str, optional
        ``cpu`` or ``cuda`` (default: cuda when available).
    bf16 : bool, optional
        bf16 autocast for inference (default: the run's ``train.bf16``).

    Returns
    -------
    Path of the written file.

    Raises
    ------
    SitsrInputError
        Missing run/data/date, or an existing output without ``overwrite``.
    """
    import xarray as xr
    from tqdm.auto import tqdm

    from . import dataset as dsmod
    from . import grid as gridmod
    from . import io as iomod
    from . import provenance as prov
    from .checkpoint import load_run

    if out_path is None:
        raise SitsrInputError("downscale: an output path is required")
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise SitsrInputError(f"{out_path}: output exists; pass overwrite=True (--overwrite) to replace it")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg = load_run(run_dir, device=device, bf16=bf16)
    sc = cfg.sample
    members = sc.members if members is None else int(members)
    if model.regression:  # a deterministic baseline has one member whatever is asked
        members = 1
    steps = sc.steps if steps is None else int(steps)
    eta = sc.eta if eta is None else float(eta)
    seed = sc.seed if seed is None else int(seed)
    chunk = sc.chunk if chunk is None else int(chunk)
    tile = sc.tile if tile is None else int(tile)
    overlap = sc.overlap if overlap is None else int(overlap)
    tile_batch = sc.tile_batch if tile_batch is None else int(tile_batch)
    if members < 1 or steps < 1 or eta < 0 or chunk < 1:
        raise SitsrInputError(f"downscale: need members >= 1, steps >= 1, eta >= 0, chunk >= 1 "
                              f"(got {members}, {steps}, {eta}, {chunk})")
    if not 0 <= overlap < tile // 2:
        raise SitsrInputError(f"downscale: overlap {overlap} must be >= 0 and < tile / 2 (tile {tile})")

    fields, mask, coords, date = _read_context(data_path, date, lr_file, model.features)
    dataset = None if lr_file is not None else prov.dataset_record(dsmod.open_dataset(data_path), data_path)
    H, W = mask.shape
    n_evals = 1 if model.regression else steps
    bar = tqdm(total=-(-members // chunk) * n_evals, desc=f"downscale {date or ''}", unit="step",
               disable=not progress, leave=False)
    sit = ensemble_metres(model, fields, mask, members=members, steps=steps, eta=eta, seed=seed, chunk=chunk,
                          tile=tile, overlap=overlap, tile_batch=tile_batch, callback=lambda d: bar.update(1))
    bar.close()
    if conserve:
        target = block_means(fields["sit_lr"], mask, block) if lr_block_means is None else lr_block_means
        allowed = mask & np.isfinite(fields["sic_lr"]) & (fields["sic_lr"] > 0)
        sit = conserve_fn(sit, target, mask, block, allowed=allowed)

    if "x" in coords and "y" in coords:
        x, yc = coords["x"], coords["y"]
    else:
        x, yc = np.arange(W, dtype=float), np.arange(H, dtype=float)
    grid_attrs = {"grid_mapping": "polar_stereographic"}
    m_attrs = dict(units="m", grid_mapping="polar_stereographic")
    data = {
        "sit_ai": (("member", "y", "x"), sit, dict(m_attrs, long_name="sea ice thickness, generated ensemble",
                                                   standard_name="sea_ice_thickness")),
        "sit_ai_mean": (("y", "x"), sit.mean(axis=0), dict(m_attrs, long_name="ensemble mean of sit_ai")),
        "sit_ai_std": (("y", "x"), sit.std(axis=0, ddof=1) if members > 1 else np.zeros((H, W), np.float32),
                       dict(m_attrs, long_name="ensemble standard deviation of sit_ai (ddof=1)")),
        "sit_lr": (("y", "x"), fields["sit_lr"], dict(m_attrs, long_name="low-resolution context thickness")),
        "mask": (("y", "x"), mask.astype(np.int8), dict(grid_attrs, long_name="ocean mask", flag_values=np.array([0, 1], np.int8),
                                                         flag_meanings="land ocean")),
        "polar_stereographic": ((), np.int32(0), gridmod.grid_mapping_attrs()),
    }
    if "sit_interp" in fields:
        data["sit_interp"] = (("y", "x"), fields["sit_interp"],
                              dict(m_attrs, long_name="interpolated 120 km block means (baseline)"))
    crd = {
        "member": ("member", np.arange(members, dtype=np.int32), {"long_name": "ensemble member", "units": "1"}),
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
        import pandas as pd
        ds = ds.assign_coords(time=np.datetime64(pd.Timestamp(date), "ns"))
        ds["time"].attrs.update(standard_name="time")
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": "sitsr generated sea-ice thickness ensemble",
        "run": str(Path(run_dir).resolve()),
        **prov.provenance(cfg),
        "steps": steps, "eta": float(eta), "seed": seed, "members": members,
        "conserve": int(bool(conserve)), "conserve_block": block,
        "objective": cfg.train.objective, "target": cfg.data.target,
        "date": date or "", "source": str(lr_file if lr_file is not None else data_path),
        **({} if dataset is None else prov.dataset_attrs(dataset)),
    }
    enc = {v: {"zlib": True, "complevel": 4} for v in ("sit_ai", "sit_ai_mean", "sit_ai_std", "sit_lr")}
    with iomod.atomic_output(out_path, overwrite=overwrite) as tmp:
        ds.to_netcdf(tmp, encoding=enc, format="NETCDF4")
    return out_path



def output_name(date) -> str:
    """File name of one date's ensemble: ``sit_hrai_YYYYMMDD.nc``."""
    import pandas as pd

    return f"sit_hrai_{pd.Timestamp(date):%Y%m%d}.nc"


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
    import os

    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
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


def main(argv: list[str] | None = None) -> int:
    """``torchrun --nproc_per_node N -m sitsr_core.sampling --run R --data D --dates ... --out-dir O``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="sitsr_core.sampling", description="downscale many dates, sharded over ranks")
    add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        run_downscale(args)
    except SitsrInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_arguments(ap) -> None:
    """Arguments of ``sitsr downscale`` and ``python -m sitsr_core.sampling``."""
    ap.add_argument("--run", required=True, help="training run folder")
    ap.add_argument("--data", help="dataset store (for dates inside the dataset)")
    ap.add_argument("--date", dest="dates", nargs="+", default=[], help="date(s) YYYY-MM-DD")
    ap.add_argument("--split", help="all dates of a dataset split (val or test) instead of --date")
    ap.add_argument("--lr-file", help="LR features netCDF (sit_lr, sic_lr, divergence_lr, shear_lr, mask)")
    ap.add_argument("--out", help="output file (one date) or folder (sit_hrai_YYYYMMDD.nc per date)")
    ap.add_argument("--members", type=int, help="ensemble size (default: the run's sample.members)")
    ap.add_argument("--steps", type=int, help="DDIM steps")
    ap.add_argument("--eta", type=float, help="0: deterministic DDIM; > 0: stochastic")
    ap.add_argument("--seed", type=int, help="base seed (member m uses seed + m)")
    ap.add_argument("--tile", type=int, help="tile size in cells")
    ap.add_argument("--conserve", action="store_true", help="make 120 km block means equal the LR product")
    ap.add_argument("--device", help="cpu or cuda")
    ap.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    ap.add_argument("--no-progress", action="store_true")


def run_downscale(args) -> list[Path]:
    """Dispatch parsed ``add_arguments`` options to :func:`downscale` or :func:`downscale_dates`."""
    kw = dict(members=args.members, steps=args.steps, eta=args.eta, seed=args.seed, tile=args.tile,
              conserve=args.conserve, device=args.device, progress=not args.no_progress)
    if args.out is None:
        raise SitsrInputError("downscale: --out is required")
    if args.lr_file:
        return [downscale(args.run, None, args.dates[0] if args.dates else None, out_path=args.out,
                          lr_file=args.lr_file, overwrite=args.overwrite, **kw)]
    if args.data is None:
        raise SitsrInputError("downscale: give --data (dataset store) or --lr-file")
    dates = list(args.dates)
    if args.split:
        from .dataset import open_dataset, split_days

        dates += [str(d.date()) for d in split_days(open_dataset(args.data), args.split)]
    if not dates:
        raise SitsrInputError("downscale: give --date or --split")
    if len(dates) == 1 and str(args.out).endswith(".nc"):
        return [downscale(args.run, args.data, dates[0], out_path=args.out, overwrite=args.overwrite, **kw)]
    return downscale_dates(args.run, args.data, dates, args.out, overwrite=args.overwrite, **kw)


if __name__ == "__main__":
    raise SystemExit(main())
