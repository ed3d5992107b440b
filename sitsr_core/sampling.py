"""Samplers, tiling and ensembles in normalised space (tensors only: no files, no metres).

Layers, from the inside out:

* :func:`ddim` and :func:`dpmpp2m` — plain k-diffusion-style samplers in normalised space
  (:data:`SAMPLERS`, chosen by ``sample.sampler``). The caller owns the initial noise (and, for
  ``eta > 0``, the per-step noise via ``noise_sampler`` or ``generator``). Both evaluate the
  network at the same :func:`sampling_times`, the last one at ``t = 0`` (the schedule's lowest
  noise level), and return that prediction.
* :class:`Tiler` — wraps a :class:`~sitsr_core.diffusion.Denoiser` so that a
  domain larger than the tile is predicted as overlapping tiles whose clean-target
  predictions are blended with smooth weights at every step: the sampler always
  sees one consistent full-domain state, and memory is bounded by ``tile_batch``.
* :func:`generate` — an ensemble of M members in chunks; member ``m`` draws all
  its noise over the whole domain from its own generator seeded ``seed + m``, so
  a member is bit-identical whatever the chunk size or ensemble size.

Fields in metres, post-processing, conservation and files are :mod:`sitsr_core.downscale`'s.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from . import diffusion
from .errors import SitsrConfigError

# -------------------------------------------------------------------------------------- samplers

def sampling_times(steps: int, dcfg) -> np.ndarray:
    """The ``steps`` times of the network evaluations, from ``t = 1`` down to ``t = 0``.

    Evenly spaced in log signal-to-noise ratio ``lambda = log(r_s / r_eps)`` (DPM-Solver's grid),
    which puts more evaluations at low noise than even steps in ``t``. The last evaluation is at
    ``t = 0``, the schedule's lowest noise level (noise std ``sqrt(1 - max_signal_rate**2)``), so
    the returned clean target is a sample down to the finest scales, not the posterior mean at a
    high noise level. One step evaluates ``t = 1`` only.
    """
    if steps <= 1:
        return np.ones(1)
    g0, g1 = diffusion.gamma_range(dcfg)
    lam = np.linspace(-math.log(math.tan(g1)), -math.log(math.tan(g0)), steps)
    t = (np.arctan(np.exp(-lam)) - g0) / (g1 - g0)
    t[0], t[-1] = 1.0, 0.0
    return t


def _rates_at(t: float, dcfg) -> tuple[float, float]:
    s, n = diffusion.rates(diffusion.angles(float(t), dcfg))
    return float(s), float(n)


@torch.no_grad()
def ddim(model, context: torch.Tensor, mask: torch.Tensor, *, steps: int, eta: float = 0.0,
         noise: torch.Tensor, generator: torch.Generator | None = None,
         noise_sampler: Callable[[int], torch.Tensor] | None = None,
         callback: Callable[[dict], None] | None = None) -> torch.Tensor:
    """DDIM sampling from ``t = 1`` to ``t = 0`` in ``steps`` network evaluations (at :func:`sampling_times`).

    At each step ``i`` (time ``t_i``) the model predicts the clean target ``y0``; it is set to 0 on
    land (as in training), the noise estimate is recomputed from it, and the state moves to
    ``t_{i+1}``: ``z' = r_s' y0 + sqrt(r_eps'^2 - sigma^2) eps + sigma xi`` with
    ``sigma = eta (r_eps' / r_eps) sqrt(1 - (r_s / r_s')^2)``. The prediction at ``t = 0`` (the
    lowest noise level of the schedule) is returned. Deterministic DDIM is the first-order
    DPM-Solver++ step (:func:`dpmpp2m` is its second-order multistep form).

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
    times = sampling_times(steps, dcfg)
    y0 = None
    for i, ti in enumerate(times):
        t = torch.full((B,), float(ti), device=z.device)
        _, y0 = model.predict(z, t, context)
        y0 = y0 * mask
        s, n = _rates_at(ti, dcfg)
        eps = (z - s * y0) / n
        if callback is not None:
            callback(dict(step=i, t=float(ti), z=z, y0=y0))
        if i == steps - 1:
            break
        s1, n1 = _rates_at(times[i + 1], dcfg)
        sigma = eta * (n1 / n) * math.sqrt(max(0.0, 1.0 - (s / s1) ** 2)) if eta > 0 else 0.0
        sigma = min(sigma, n1)
        z = s1 * y0 + math.sqrt(max(n1 * n1 - sigma * sigma, 0.0)) * eps
        if sigma > 0:
            xi = noise_sampler(i) if noise_sampler is not None else torch.randn(z.shape, generator=generator)
            z = z + sigma * xi.to(z.device, z.dtype)
    return y0


@torch.no_grad()
def dpmpp2m(model, context: torch.Tensor, mask: torch.Tensor, *, steps: int, eta: float = 0.0,
            noise: torch.Tensor, generator: torch.Generator | None = None,
            noise_sampler: Callable[[int], torch.Tensor] | None = None,
            callback: Callable[[dict], None] | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) from ``t = 1`` to ``t = 0`` in ``steps`` network evaluations (same times as :func:`ddim`).

    The second-order multistep solver of the probability-flow ODE in data prediction (Lu et al. 2022;
    k-diffusion's ``sample_dpmpp_2m``), written for the variance-preserving schedule: with
    ``lambda = log(r_s / r_eps)`` and ``h = lambda' - lambda``, ``z' = (r_eps' / r_eps) z - r_s' expm1(-h) D``
    where ``D = y0`` on the first step (DDIM) and ``D = (1 + 1 / 2r) y0 - (1 / 2r) y0_prev`` after it,
    ``r = h_prev / h``. ``y0`` is set to 0 on land as in :func:`ddim`; the prediction at ``t = 0`` is
    returned. Deterministic: ``eta`` must be 0 (``generator`` and ``noise_sampler`` are accepted for the
    common calling convention and unused).
    """
    if eta:
        raise SitsrConfigError(f"sampler dpmpp2m is deterministic: eta must be 0 (got {eta}); use ddim for eta > 0")
    dcfg = model.cfg.diffusion
    z = noise.float().clone()
    mask = mask.to(z.dtype)
    B = z.shape[0]
    times = sampling_times(steps, dcfg)
    y0 = y_prev = h_prev = None
    for i, ti in enumerate(times):
        t = torch.full((B,), float(ti), device=z.device)
        _, y0 = model.predict(z, t, context)
        y0 = y0 * mask
        if callback is not None:
            callback(dict(step=i, t=float(ti), z=z, y0=y0))
        if i == steps - 1:
            break
        (s, n), (s1, n1) = _rates_at(ti, dcfg), _rates_at(times[i + 1], dcfg)
        h = math.log(s1 / n1) - math.log(s / n)
        d = y0
        if y_prev is not None:
            r = h_prev / h
            d = (1.0 + 0.5 / r) * y0 - (0.5 / r) * y_prev
        z = (n1 / n) * z - s1 * math.expm1(-h) * d
        y_prev, h_prev = y0, h
    return y0


#: Samplers by name (``sample.sampler``): plain functions with the calling convention of :func:`ddim`.
SAMPLERS = {"ddim": ddim, "dpmpp2m": dpmpp2m}


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
             callback: Callable[[dict], None] | None = None, first_member: int = 0,
             sampler: str | None = None) -> torch.Tensor:
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
    sampler : str, optional
        A key of :data:`SAMPLERS` (default: ``model.cfg.sample.sampler``).

    Returns
    -------
    Tensor, shape (members, H, W), on the CPU: the normalised clean targets.
    """
    sample_fn = SAMPLERS[sampler or model.cfg.sample.sampler]
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

        def step_noise(i, draws=draws):
            return torch.stack([d[1]() for d in draws]).to(device)

        cb = None if callback is None else (lambda d, ms=ms: callback(dict(d, members=(ms[0], ms[-1] + 1))))
        if getattr(model, "regression", False):
            _, y0 = runner.predict(noise, torch.zeros(len(ms), device=device), ctx)
            y0 = y0 * mask4
            if cb is not None:
                cb(dict(step=steps - 1, t=0.0, z=noise, y0=y0))
        else:
            y0 = sample_fn(runner, ctx, mask4, steps=steps, eta=eta, noise=noise, noise_sampler=step_noise,
                           callback=cb)
        out.append(y0[:, 0].float().cpu())
    return torch.cat(out)
