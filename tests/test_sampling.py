"""DDIM, ensembles, tiling, post-processing, conservation and ``downscale``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from sitsr_core import diffusion, sampling
from sitsr_core.config import apply_overrides, profile
from sitsr_core.errors import SitsrInputError
from sitsr_core.networks import build_network

STATS = {k: {"mean": 0.0, "std": 1.0} for k in ("sit", "sit_lr", "sic_lr", "divergence_lr", "shear_lr", "anomaly")}


def denoiser(cfg=None, bf16=False, channels_last=False):
    cfg = cfg or profile("smoke")
    torch.manual_seed(0)
    net = build_network(cfg)
    with torch.no_grad():  # replace the zero-initialised layers so the network is not the identity
        for p in net.parameters():
            if p.dim() > 1 and not p.abs().sum():
                p.normal_(0, 0.05)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return diffusion.Denoiser(net.eval(), cfg, STATS, bf16=bf16, channels_last=channels_last)


def smooth_context(H, W, B=None):
    yy, xx = torch.meshgrid(torch.arange(H) / H, torch.arange(W) / W, indexing="ij")
    c = torch.stack([torch.sin(2 * math.pi * xx) + yy, torch.cos(2 * math.pi * yy), xx * yy, xx - yy, torch.ones(H, W)])
    return c if B is None else c.expand(B, -1, -1, -1)


# ------------------------------------------------------------------------------------------- DDIM

def test_ddim_eta0_bit_reproducible_and_eta_changes_samples():
    den = denoiser()
    ctx, mask = smooth_context(24, 24, 2), torch.ones(2, 1, 24, 24)
    noise = torch.randn(2, 1, 24, 24, generator=torch.Generator().manual_seed(5))
    a = sampling.ddim(den, ctx, mask, steps=4, eta=0.0, noise=noise)
    b = sampling.ddim(den, ctx, mask, steps=4, eta=0.0, noise=noise.clone())
    assert torch.equal(a, b)
    s1 = sampling.ddim(den, ctx, mask, steps=4, eta=1.0, noise=noise, generator=torch.Generator().manual_seed(1))
    s2 = sampling.ddim(den, ctx, mask, steps=4, eta=1.0, noise=noise, generator=torch.Generator().manual_seed(1))
    s3 = sampling.ddim(den, ctx, mask, steps=4, eta=1.0, noise=noise, generator=torch.Generator().manual_seed(2))
    assert torch.equal(s1, s2)
    assert not torch.equal(s1, a) and not torch.equal(s1, s3)


class ConstantY0:
    """A model that always predicts the same clean target (closed-form DDIM check)."""

    def __init__(self, y):
        self.cfg = profile("smoke")
        self.y = y

    def predict(self, z, t, context):
        s, n = diffusion.rates(diffusion.angles(t.reshape(-1, 1, 1, 1), self.cfg.diffusion))
        return (z - s * self.y) / n, self.y.expand_as(z)


def test_ddim_eta0_keeps_the_implied_noise_and_masks_land():
    # deterministic DDIM moves along z_t = r_s(t) y + r_eps(t) eps with a fixed eps when y0 is exact
    y = torch.randn(1, 1, 6, 6)
    noise = torch.randn(1, 1, 6, 6)
    mask = torch.ones(1, 1, 6, 6)
    seen = []
    out = sampling.ddim(ConstantY0(y), None, mask, steps=5, eta=0.0, noise=noise, callback=seen.append)
    assert [d["step"] for d in seen] == list(range(5))
    np.testing.assert_allclose([d["t"] for d in seen], [1, 0.8, 0.6, 0.4, 0.2])
    d = profile("smoke").diffusion
    implied = []
    for rec in seen:
        g = diffusion.angles(rec["t"], d)
        implied.append((rec["z"] - math.cos(g) * y) / math.sin(g))
    for e in implied[1:]:
        torch.testing.assert_close(e, implied[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out, y)
    mask[..., :2] = 0
    out = sampling.ddim(ConstantY0(y), None, mask, steps=2, eta=0.5, noise=noise, generator=torch.Generator())
    assert torch.all(out[..., :2] == 0) and torch.equal(out[..., 2:], y[..., 2:])


# --------------------------------------------------------------------------------------- ensembles

@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_member_independent_of_chunking_and_ensemble_size(eta):
    den = denoiser()
    ctx, mask = smooth_context(20, 28), torch.ones(20, 28)
    kw = dict(steps=3, eta=eta, seed=11, tile_batch=4)
    a = sampling.generate(den, ctx, mask, members=3, chunk=1, **kw)
    b = sampling.generate(den, ctx, mask, members=3, chunk=3, **kw)
    c = sampling.generate(den, ctx, mask, members=2, chunk=2, first_member=1, **kw)
    d = sampling.generate(den, ctx, mask, members=5, chunk=2, **kw)
    assert torch.equal(a, b) and torch.equal(a[1:], c) and torch.equal(a, d[:3])
    assert not torch.equal(a[0], a[1])


def test_member_independence_bf16_channels_last_tiled():
    den = denoiser(bf16=True, channels_last=True)
    ctx, mask = smooth_context(40, 44), torch.ones(40, 44)
    kw = dict(steps=2, seed=3, tile=32, overlap=8, tile_batch=4)
    a = sampling.generate(den, ctx, mask, members=3, chunk=1, **kw)
    b = sampling.generate(den, ctx, mask, members=3, chunk=3, **kw)
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------- tiles

def test_tile_layout_covers_domain_with_overlap():
    for L, tile, ov in [(1308, 256, 32), (64, 32, 8), (33, 32, 8), (96, 32, 0), (32, 64, 8)]:
        starts = sampling.tile_starts(L, tile, ov)
        size = min(tile, L)
        assert starts[0] == 0 and starts[-1] + size == L
        assert all(b - a <= size - ov for a, b in zip(starts, starts[1:]))
        ws = sampling.tile_weights_1d(starts, size, L)
        total = np.zeros(L)
        for s, w in zip(starts, ws):
            assert np.all(w > 0)
            total[s:s + size] += w
        assert np.all(total > 0.5)
        if ov == 0:
            np.testing.assert_array_equal(total, 1.0)


def test_one_tile_equals_untiled_exactly():
    den = denoiser()
    ctx = smooth_context(24, 30, 2)
    z = torch.randn(2, 1, 24, 30)
    t = torch.tensor([0.4, 0.4])
    _, ref = den.predict(z, t, ctx)
    for tile in (30, 64):
        _, y0 = sampling.Tiler(den, tile, 8, tile_batch=3).predict(z, t, ctx)
        assert torch.equal(y0, ref)


class EdgeArtefact:
    """A smooth field plus a strong artefact at every crop edge (what padding does to a network)."""

    cfg = profile("smoke")
    regression = False

    def predict(self, z, t, context):
        B, _, H, W = z.shape
        x, y = torch.arange(W).float(), torch.arange(H).float()
        art = (torch.exp(-x / 3) + 0.5 * torch.exp(-x.flip(0) / 3))[None, :] \
            + (torch.exp(-y / 3) - 0.5 * torch.exp(-y.flip(0) / 3))[:, None]
        y0 = context[:, :1] + art
        return torch.zeros_like(z), y0


def test_tiling_has_no_seams_on_a_smooth_input():
    H, W = 48, 96
    ctx = smooth_context(H, W, 1)
    z = torch.zeros(1, 1, H, W)
    t = torch.tensor([0.5])
    truth = ctx[:, :1]
    smooth_grad = (truth[..., 1:] - truth[..., :-1]).abs().max()

    def border_jump(overlap):
        tiler = sampling.Tiler(EdgeArtefact(), 32, overlap, tile_batch=4)
        _, y0 = tiler.predict(z, t, ctx)
        starts = sampling.tile_starts(W, 32, overlap)
        borders = {s for s in starts[1:]} | {s + 32 for s in starts[:-1]}
        cols = sorted({c for b in borders for c in range(b - 4, b + 3)})
        g = (y0[..., 1:] - y0[..., :-1]).abs()[0, 0, 8:-8]  # away from the domain's own edges
        return g[:, cols].max() / smooth_grad

    assert border_jump(0) > 5  # hard tiles: the artefact shows as a seam
    assert border_jump(8) < 2  # blended: border gradients stay near those of the smooth field (1.5 measured)


def test_tiled_sampling_close_to_untiled_for_smooth_model():
    # a model whose prediction depends only on the local context: tiles reproduce the untiled result
    class Local:
        cfg = profile("smoke")
        regression = False

        def predict(self, z, t, context):
            s, n = diffusion.rates(diffusion.angles(t.reshape(-1, 1, 1, 1), self.cfg.diffusion))
            y0 = 0.5 * context[:, :1] + 0.1 * z
            return (z - s * y0) / n, y0

    ctx, mask = smooth_context(50, 70), torch.ones(50, 70)
    a = sampling.generate(Local(), ctx, mask, members=2, steps=3, eta=0.5, seed=0, chunk=2)
    b = sampling.generate(Local(), ctx, mask, members=2, steps=3, eta=0.5, seed=0, chunk=2, tile=32, overlap=8)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------- post-processing

def test_postprocess():
    sit = np.array([[[-1.0, 2.0], [np.nan, 3.0]]], np.float32)
    mask = np.array([[1, 1], [1, 0]], bool)
    sic = np.array([[0.5, 0.0], [0.9, 0.9]], np.float32)
    out = sampling.postprocess(sit, mask, sic)
    np.testing.assert_array_equal(out, [[[0.0, 0.0], [0.0, 0.0]]])
    out = sampling.postprocess(np.full((2, 2), 1.5), mask, np.ones((2, 2)))
    np.testing.assert_array_equal(out, [[1.5, 1.5], [1.5, 0]])


def test_conservation_block_means_and_positivity():
    rng = np.random.default_rng(0)
    H, W, block = 70, 65, 30  # partial blocks at the upper edges
    mask = rng.uniform(size=(H, W)) > 0.15
    mask[:30, :30] = False  # an all-land block
    sic = np.where(rng.uniform(size=(H, W)) > 0.1, 0.9, 0.0)
    sit = sampling.postprocess(rng.gamma(2.0, 0.7, size=(3, H, W)), mask, sic)
    sit[1, 30:60, 30:60] = 0.0  # a member with an ice-free block whose target is positive
    target = rng.uniform(0.2, 3.0, size=(3, 3))
    target[0, 1] = 0.0  # a block that must become ice free
    out = sampling.conserve(sit, target, mask, block, allowed=mask & (sic > 0))
    assert out.dtype == np.float32 and np.all(out >= 0) and np.all(out[:, ~mask] == 0)
    means = sampling.block_means(out, mask, block)
    ok = np.isfinite(sampling.block_means(np.ones((H, W)), mask, block))
    assert not ok[0, 0] and ok.sum() == 8
    np.testing.assert_allclose(means[:, ok], np.broadcast_to(target, means.shape)[:, ok], atol=1e-4, rtol=0)
    # zeros where there is no ice stay zero except in the block that had to receive ice additively
    no_ice = mask & (sic == 0)
    assert np.all(out[:, no_ice] == 0)
    with pytest.raises(SitsrInputError):
        sampling.conserve(sit, target[:2], mask, block)


def test_block_means_against_loop():
    rng = np.random.default_rng(1)
    a, m = rng.normal(size=(7, 8)), rng.uniform(size=(7, 8)) > 0.3
    got = sampling.block_means(a, m, 3)
    for i in range(3):
        for j in range(3):
            sel = m[3 * i:3 * i + 3, 3 * j:3 * j + 3]
            vals = a[3 * i:3 * i + 3, 3 * j:3 * j + 3][sel]
            assert np.isnan(got[i, j]) if vals.size == 0 else np.isclose(got[i, j], vals.mean())


# -------------------------------------------------------------------------------------- downscale

@pytest.fixture(scope="module")
def smoke_run(tiny_dataset, tmp_path_factory):
    from sitsr_core.train import train

    cfg = apply_overrides(profile("smoke"), ["train.steps=2", "train.val_every=100"])
    return train(cfg, tiny_dataset, tmp_path_factory.mktemp("runs") / "smoke", progress=False)


def test_downscale_writes_cf_file(smoke_run, tiny_dataset, tmp_path, cfcheck):
    out = tmp_path / "sit_hrai_20201201.nc"
    path = sampling.downscale(smoke_run, tiny_dataset, "2020-12-01", members=3, steps=2, eta=0.0, seed=7,
                              out_path=out, progress=False)
    assert path == out and out.exists()
    errors, warnings, report = cfcheck(out)
    assert errors == 0 and warnings == 0, report
    assert not [p for p in tmp_path.iterdir() if p.name != out.name]  # no temporary file left
    with xr.open_dataset(out) as ds:
        for v in ("sit_ai", "sit_ai_mean", "sit_ai_std", "sit_lr", "sit_interp", "mask", "latitude", "longitude",
                  "polar_stereographic"):
            assert v in ds.variables, v
        assert ds["sit_ai"].dims == ("member", "y", "x") and ds.sizes["member"] == 3
        assert ds["sit_ai"].attrs["units"] == "m" and ds["sit_ai"].attrs["grid_mapping"] == "polar_stereographic"
        assert ds["polar_stereographic"].attrs["grid_mapping_name"] == "polar_stereographic"
        assert ds.attrs["steps"] == 2 and ds.attrs["seed"] == 7 and ds.attrs["eta"] == 0.0
        assert ds.attrs["config_hash"] and ds.attrs["conserve"] == 0
        assert ds.attrs["git_commit"] and ds.attrs["torch_version"] == torch.__version__
        assert ds.attrs["dataset_fingerprint"] and "kernel_km" in ds.attrs["dataset_identity"]
        sit, mask = ds["sit_ai"].values, ds["mask"].values.astype(bool)
        assert np.all(sit >= 0) and np.all(sit[:, ~mask] == 0) and np.isfinite(sit).all()
        np.testing.assert_allclose(ds["sit_ai_mean"].values, sit.mean(0), rtol=1e-5, atol=1e-6)
        first = sit.copy()
    with pytest.raises(SitsrInputError, match=str(out)):
        sampling.downscale(smoke_run, tiny_dataset, "2020-12-01", members=3, steps=2, eta=0.0, seed=7, out_path=out,
                           progress=False)
    # same seed -> same members; overwrite allowed on request; conservation holds in the file
    sampling.downscale(smoke_run, tiny_dataset, "2020-12-01", members=2, steps=2, eta=0.0, seed=7, out_path=out,
                       overwrite=True, chunk=1, progress=False)
    with xr.open_dataset(out) as ds:
        np.testing.assert_array_equal(ds["sit_ai"].values, first[:2])
    with pytest.raises(SitsrInputError, match="no date"):
        sampling.downscale(smoke_run, tiny_dataset, "1999-01-01", out_path=tmp_path / "x.nc", progress=False)


def test_downscale_from_lr_file_with_conservation(smoke_run, tiny_dataset, tmp_path):
    from sitsr_core import dataset as dsmod

    ds = dsmod.open_dataset(tiny_dataset).sel(time="2020-12-02")
    lr = ds[["sit_lr", "sic_lr", "divergence_lr", "shear_lr", "mask"]].load()
    lr.to_netcdf(tmp_path / "lr.nc")
    out = tmp_path / "sit_hrai_20201202.nc"
    sampling.downscale(smoke_run, None, None, members=2, steps=2, seed=0, out_path=out, conserve=True,
                       lr_file=tmp_path / "lr.nc", progress=False)
    with xr.open_dataset(out) as res:
        assert "sit_interp" not in res and res.attrs["conserve"] == 1
        mask = res["mask"].values.astype(bool)
        got = sampling.block_means(res["sit_ai"].values, mask, 30)
        want = sampling.block_means(lr["sit_lr"].values, mask, 30)
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[:, ok], np.broadcast_to(want, got.shape)[:, ok], atol=1e-4, rtol=0)
        assert np.all(res["sit_ai"].values >= 0)
