"""Training patches streamed from the store (sitsr_core/loader.py) against numpy slices of the raw zarr arrays."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
import zarr
from statecmp import assert_same_states

from benchmarks.streaming import grown_store
from sitsr_core import loader
from sitsr_core.config import apply_overrides, profile
from sitsr_core.dataset import norm_stats, open_dataset
from sitsr_core.train import PatchSampler, load_days, make_batch, train

PATCH = 16


def hand_batch(store, cfg, stats, draws, patch):
    """The reference: raw zarr arrays sliced with numpy, normalised by hand, flipped with np.flip / .T."""
    g = zarr.open_group(str(store), mode="r")
    days = np.flatnonzero(np.asarray(g["split"][:]).astype(str) == "train")
    mask = np.asarray(g["mask"][:]).astype(bool)
    ctxs, ys = [], []
    for d, r, c, k in draws:
        win = (days[d], slice(r, r + patch), slice(c, c + patch))
        m = mask[win[1:]]
        chans = []
        for name in cfg.data.features:
            f = (np.asarray(g[name][win], np.float64) - stats[name]["mean"]) / stats[name]["std"]
            chans.append(np.where(m & np.isfinite(f), f, 0.0))
        chans.append(m.astype(np.float64))
        anomaly = np.asarray(g["sit"][win], np.float64) - np.asarray(g["sit_lr"][win], np.float64)
        y = (anomaly - stats["anomaly"]["mean"]) / stats["anomaly"]["std"]
        fields = np.stack(chans + [np.where(m & np.isfinite(y), y, 0.0)])
        if k & 1:
            fields = np.flip(fields, axis=2)
        if k & 2:
            fields = np.flip(fields, axis=1)
        if k & 4:
            fields = np.stack([f.T for f in fields])
        ctxs.append(fields[:-1])
        ys.append(fields[-1:])
    return np.stack(ctxs), np.stack(ys)


@pytest.fixture(scope="module")
def setup(tiny_dataset):
    cfg = apply_overrides(profile("smoke"), [f"data.patch={PATCH}"])
    stats = norm_stats(open_dataset(tiny_dataset))
    patches = loader.StorePatches(tiny_dataset, "train", cfg, stats, PATCH)
    sampler = PatchSampler(patches.n_days, patches.mask, PATCH, 1.0)
    return cfg, stats, patches, sampler


def test_streamed_batches_equal_hand_normalised_slices_of_the_store(tiny_dataset, setup):
    cfg, stats, patches, sampler = setup
    assert "anomaly" in stats and cfg.data.target == "anomaly"
    draws = sampler.draw(np.random.default_rng(1), 24)
    draws[:8, 3] = np.arange(8)  # every dihedral code
    got_draws, ctx, y = loader.collate([patches[d] for d in draws])
    want_ctx, want_y = hand_batch(tiny_dataset, cfg, stats, draws, PATCH)
    np.testing.assert_array_equal(got_draws, draws)
    assert ctx.dtype == y.dtype == np.float32 and ctx.flags.c_contiguous
    np.testing.assert_allclose(ctx, want_ctx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_equal_in_memory_batches_bit_for_bit(tiny_dataset, setup, workers):
    cfg, stats, patches, sampler = setup
    data = load_days(open_dataset(tiny_dataset), "train", cfg, stats)
    rng = np.random.default_rng(3)
    batches = loader.DrawBatches(sampler, rng, batch=6, steps=5)
    got = list(loader.patch_loader(patches, batches, workers=workers))
    assert len(got) == 5
    for draws, ctx, y in got:
        want = sampler.draw(rng, 6)  # the training generator, drawn as the training loop does
        np.testing.assert_array_equal(draws, want)
        mem_ctx, mem_y = make_batch(data, want, PATCH)
        assert np.array_equal(ctx, mem_ctx) and np.array_equal(y, mem_y)


def test_rank_shares_are_disjoint_and_cover_the_global_batch(setup):
    _, _, _, sampler = setup
    world, batch, steps = 4, 8, 3
    shares = [list(loader.DrawBatches(sampler, np.random.default_rng(5), batch, steps, rank, world))
              for rank in range(world)]
    rng = np.random.default_rng(5)
    for step in range(steps):
        global_draws = sampler.draw(rng, batch)
        parts = [np.asarray(shares[rank][step]) for rank in range(world)]
        assert all(len(p) == batch // world for p in parts)
        np.testing.assert_array_equal(np.concatenate(parts), global_draws)  # in order: disjoint slots, all covered
    with pytest.raises(ValueError):
        loader.DrawBatches(sampler, rng, 6, 1, 0, 4)


def test_replaying_the_draws_leaves_the_training_generator_untouched(setup):
    _, _, _, sampler = setup
    rng = np.random.default_rng(7)
    before = rng.bit_generator.state
    list(loader.DrawBatches(sampler, rng, 4, 10))
    assert rng.bit_generator.state == before


def _peak_bytes(fn, *args) -> int:
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _stream(store, cfg, stats) -> None:
    patches = loader.StorePatches(store, "train", cfg, stats, PATCH)
    sampler = PatchSampler(patches.n_days, patches.mask, PATCH, 1.0)
    for _ in loader.patch_loader(patches, loader.DrawBatches(sampler, np.random.default_rng(0), 8, 20)):
        pass


def _in_memory(store, cfg, stats) -> None:
    load_days(open_dataset(store), "train", cfg, stats)


def test_streamed_memory_does_not_grow_with_days(tiny_dataset, tmp_path):
    cfg = apply_overrides(profile("smoke"), [f"data.patch={PATCH}"])
    peaks = {}
    for days in (10, 40):
        store = grown_store(tiny_dataset, tmp_path / f"g{days}.zarr", days, size=96, time_chunk=1)
        stats = norm_stats(open_dataset(store))
        peaks[days] = _peak_bytes(_stream, store, cfg, stats), _peak_bytes(_in_memory, store, cfg, stats)
    (s10, m10), (s40, m40) = peaks[10], peaks[40]
    assert m40 > 3 * m10, peaks  # the in-memory path grows with the days: the measurement sees it
    assert s40 < 1.25 * s10 + 2 ** 20, peaks
    assert s40 < m10 / 2, peaks  # a fraction of the in-memory path even at a quarter of the days


def test_training_does_not_depend_on_the_loader_workers(tiny_dataset, tmp_path):
    cfg = apply_overrides(profile("smoke"), ["train.steps=2", "train.val_every=100", "train.ckpt_every=2"])
    runs = [train(cfg, tiny_dataset, tmp_path / f"w{w}", progress=False, loader_workers=w) for w in (0, 2)]
    a, b = (torch.load(r / "checkpoint.pt", weights_only=False) for r in runs)
    assert_same_states(a, b)
