"""Training patches streamed from the dataset store: memory flat in the number of days.

The patch draws (day, row, col, dihedral code) stay drawn by the training process's numpy generator
(:class:`sitsr_core.train.PatchSampler`); this module only turns draws into batches:

- :class:`StorePatches`, a map-style ``torch`` dataset whose items are draws: it reads the patch of
  each variable from the zarr store (only the chunks it needs; a few decoded chunks are cached per
  worker) and normalises it exactly as the in-memory path (:func:`sitsr_core.train.normalise_days`)
  does, so batches are bit-identical;
- :class:`ArrayPatches`, the same over days already in memory (the ``residual`` target, whose base
  field is a regression prediction over whole days);
- :class:`DrawBatches`, the batch sampler: it replays the draws of every step from a copy of the
  training generator and hands each rank its share of the global batch (``DistributedSampler``-like);
- :func:`patch_loader`, the ``DataLoader`` over both (workers allowed: the order is kept).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import zarr

from . import diffusion
from .config import Config
from .downscale import lr_base
from .errors import SitsrDataError

#: Decoded time-chunks (per variable) kept by each reader: bounds its memory whatever the number of days.
CACHE_CHUNKS = 2


def dihedral(a: np.ndarray, code: int) -> np.ndarray:
    """Apply flip-x (bit 0), flip-y (bit 1) and transpose (bit 2) to the last two axes."""
    if code & 1:
        a = a[..., :, ::-1]
    if code & 2:
        a = a[..., ::-1, :]
    if code & 4:
        a = np.swapaxes(a, -1, -2)
    return a


def collate(items: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[(draw, ctx, y), ...] -> (draws (n, 4), ctx (n, C + 1, P, P), y (n, 1, P, P))``, contiguous."""
    draws, ctx, y = zip(*items)
    return (np.asarray(draws, dtype=np.int64), np.ascontiguousarray(np.stack(ctx)),
            np.ascontiguousarray(np.stack(y)))


class StorePatches(torch.utils.data.Dataset):
    """Normalised patches of one split read lazily from a zarr dataset store.

    Parameters
    ----------
    path : path
        Dataset store (``sitsr dataset`` output, zarr).
    split : str
        Its days are indexed 0 .. ``n_days - 1`` in store order (as :func:`sitsr_core.train.read_days`).
    cfg : Config
        ``data.target`` must have a base field computable from the LR fields (``anomaly``, ``full``).
    stats : dict
        Normalisation statistics.
    patch : int

    Items are draws ``(day, row, col, code)``; ``dataset[draw]`` is ``(draw, ctx (C + 1, P, P), y (1, P, P))``.
    """

    def __init__(self, path, split: str, cfg: Config, stats: dict, patch: int):
        self.path = str(Path(path))
        self.cfg, self.stats, self.patch = cfg, stats, patch
        group = zarr.open_group(self.path, mode="r")
        labels = np.asarray(group["split"][:]).astype(str)
        self.times = np.flatnonzero(labels == split)
        if self.times.size == 0:
            raise SitsrDataError(f"the dataset has no {split!r} day")
        self.mask = np.asarray(group["mask"][:]).astype(bool)
        self.names = sorted(set(cfg.data.features) | {"sit", "sit_lr", "sic_lr"})
        self._arrays = None  # opened lazily in each worker process
        self._cache: OrderedDict = OrderedDict()

    @property
    def n_days(self) -> int:
        return int(self.times.size)

    def __len__(self) -> int:
        return self.n_days

    def __getstate__(self):
        return {**self.__dict__, "_arrays": None, "_cache": OrderedDict()}

    def _read(self, name: str, t: int, rows: slice, cols: slice) -> np.ndarray:
        if self._arrays is None:
            group = zarr.open_group(self.path, mode="r")
            self._arrays = {k: group[k] for k in self.names}
        a = self._arrays[name]
        ct = a.chunks[0]
        if tuple(a.chunks[1:]) != tuple(a.shape[1:]):  # spatially chunked: zarr reads only the patch's chunks
            return np.asarray(a[t, rows, cols], dtype=np.float32)
        key = (name, t // ct)
        if key not in self._cache:
            self._cache[key] = np.asarray(a[key[1] * ct:(key[1] + 1) * ct], dtype=np.float32)
            while len(self._cache) > CACHE_CHUNKS * len(self.names):
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key][t % ct, rows, cols]

    def __getitem__(self, draw) -> tuple:
        d, r, c, k = (int(v) for v in draw)
        t, P = int(self.times[d]), self.patch
        rows, cols = slice(r, r + P), slice(c, c + P)
        fields = {n: self._read(n, t, rows, cols) for n in self.names}
        mask = self.mask[rows, cols]
        base = lr_base(self.cfg, fields)
        ctx = diffusion.normalise_context({**fields, "base": base}, mask, self.cfg, self.stats).astype(np.float32)
        y = diffusion.normalise_target(fields["sit"], base, mask, self.cfg, self.stats).astype(np.float32)
        return (d, r, c, k), dihedral(ctx, k), dihedral(y[None], k)


class ArrayPatches(torch.utils.data.Dataset):
    """The same items over days already normalised in memory (:func:`sitsr_core.train.normalise_days` output)."""

    def __init__(self, data: dict, patch: int):
        self.data, self.patch = data, patch
        self.mask = data["mask"]

    @property
    def n_days(self) -> int:
        return int(self.data["ctx"].shape[0])

    def __len__(self) -> int:
        return self.n_days

    def __getitem__(self, draw) -> tuple:
        d, r, c, k = (int(v) for v in draw)
        P = self.patch
        return ((d, r, c, k), dihedral(self.data["ctx"][d, :, r:r + P, c:c + P], k),
                dihedral(self.data["y"][d, None, r:r + P, c:c + P], k))


class DrawBatches:
    """Each step's draws for one rank, replayed from a copy of the training generator.

    The training loop keeps drawing ``sampler.draw(rng, batch)`` from its own generator (its state is
    checkpointed); this sampler draws the same sequence from a copy taken before the loop, so a loader
    may prefetch ahead without touching the training generator. Rank ``rank`` of ``world`` takes the
    contiguous ``batch // world`` share ``[rank * local, (rank + 1) * local)`` of each global batch:
    the shares are disjoint and cover it.
    """

    def __init__(self, sampler, rng: np.random.Generator, batch: int, steps: int, rank: int = 0, world: int = 1):
        if batch % world:
            raise ValueError(f"batch {batch} is not a multiple of {world} ranks")
        self.sampler, self.batch, self.steps = sampler, batch, steps
        self.rng_state = rng.bit_generator.state
        self.bit_generator = type(rng.bit_generator)
        local = batch // world
        self.share = slice(rank * local, (rank + 1) * local)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        bg = self.bit_generator()
        bg.state = self.rng_state
        rng = np.random.Generator(bg)
        for _ in range(self.steps):
            yield [tuple(int(v) for v in d) for d in self.sampler.draw(rng, self.batch)[self.share]]


def patch_loader(dataset, batches: DrawBatches, workers: int = 0) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` of ``(draws, ctx, y)`` numpy batches in the order of ``batches``."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                                       prefetch_factor=2 if workers else None, persistent_workers=False)
