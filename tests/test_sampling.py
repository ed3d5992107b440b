"""DDIM, ensembles and tiling (normalised space)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sitsr_core import diffusion, sampling
from sitsr_core.config import Config, apply_overrides, profile
from sitsr_core.errors import SitsrConfigError
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
    d = profile("smoke").diffusion
    # from pure noise to the lowest noise level, evenly in log(signal / noise)
    times = [rec["t"] for rec in seen]
    assert times[0] == 1 and times[-1] == 0 and all(a > b for a, b in zip(times, times[1:]))
    lam = [-math.log(math.tan(diffusion.angles(t, d))) for t in times]
    np.testing.assert_allclose(np.diff(lam), np.diff(lam)[0], rtol=1e-9)
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
    kw = dict(steps=3, eta=eta, seed=11, tile_batch=4, sampler="ddim" if eta else None)
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
        total, covering = np.zeros(L), np.zeros(L, dtype=int)
        for s, w in zip(starts, ws):
            assert np.all(w > 0)  # the Tiler divides by the summed weights
            total[s:s + size] += w
            covering[s:s + size] += 1
        # a partition of unity wherever at most two tiles meet (the docstring's promise), so blending there
        # is a convex combination even before the Tiler's normalisation
        np.testing.assert_allclose(total[covering <= 2], 1.0, atol=1e-12)
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
    a = sampling.generate(Local(), ctx, mask, members=2, steps=3, eta=0.5, seed=0, chunk=2, sampler="ddim")
    b = sampling.generate(Local(), ctx, mask, members=2, steps=3, eta=0.5, seed=0, chunk=2, tile=32, overlap=8,
                          sampler="ddim")
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------- the noise floor

class GaussianPosteriorMean:
    """The exact denoiser of ``y ~ N(0, var)`` in every cell: ``E[y | z_t] = r_s var z / (r_s^2 var + r_eps^2)``."""

    def __init__(self, cfg, var: float):
        self.cfg, self.var = cfg, var

    def predict(self, z, t, context):
        s, n = diffusion.rates(diffusion.angles(t.reshape(-1, 1, 1, 1), self.cfg.diffusion))
        y0 = s * self.var * z / (s * s * self.var + n * n)
        return (z - s * y0) / n, y0


def gaussian_sample_variance(cfg, sampler: str, steps: int, var: float) -> float:
    noise = torch.randn(8, 1, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = sampling.SAMPLERS[sampler](GaussianPosteriorMean(cfg, var), None, torch.ones(1), steps=steps, noise=noise)
    return float(out.double().var())


@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize("var", [1.0, 0.25, 0.04])
def test_the_second_order_sampler_draws_a_gaussian_with_its_variance(steps, var):
    # with the exact denoiser of a Gaussian, samples must have the target's variance, the fine scales' small
    # variances included (the last evaluation is at a negligible noise level); 32768 cells: 1.6 % sampling error
    got = gaussian_sample_variance(Config(), "dpmpp2m", steps, var)
    assert got == pytest.approx(var, rel=0.08)


def test_the_old_noise_floor_would_fail_the_gaussian_check():
    # max_signal_rate 0.95: the last prediction is a posterior mean at noise std 0.31, short of var by 30 % or more
    old = apply_overrides(Config(), ["diffusion.max_signal_rate=0.95"])
    for steps in (10, 20):
        assert gaussian_sample_variance(old, "dpmpp2m", steps, 0.25) < 0.8 * 0.25


def test_ddim_is_the_first_order_step_of_dpmpp2m():
    # on two steps the multistep correction is never used: both samplers take the same DDIM step
    cfg = Config()
    noise = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    a = sampling.ddim(GaussianPosteriorMean(cfg, 0.5), None, torch.ones(1), steps=2, noise=noise)
    b = sampling.dpmpp2m(GaussianPosteriorMean(cfg, 0.5), None, torch.ones(1), steps=2, noise=noise)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("sampler", sorted(sampling.SAMPLERS))
def test_the_last_network_evaluation_is_at_a_negligible_noise_level(sampler):
    # the noise std fed to the network at its last evaluation, read where the network sees it
    cfg = apply_overrides(Config(), [f"sample.sampler={sampler}"])
    for name in ("quick", "full"):
        assert profile(name).diffusion == cfg.diffusion and profile(name).sample.sampler == Config().sample.sampler
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, z, noise_var, context):
            seen.append(float(noise_var.reshape(-1)[0]))
            return torch.zeros_like(z)

    den = diffusion.Denoiser(Recorder(), cfg, STATS, bf16=False, channels_last=False, compile=False)
    ctx, mask = smooth_context(16, 16), torch.ones(16, 16)
    sampling.generate(den, ctx, mask, members=1, steps=cfg.sample.steps, seed=0, chunk=1, tile_batch=1)
    assert len(seen) == cfg.sample.steps
    assert math.sqrt(seen[0]) > 0.99  # starts from noise
    assert math.sqrt(seen[-1]) < 0.05


def test_samplers_are_validated_and_dpmpp2m_refuses_eta():
    with pytest.raises(SitsrConfigError, match="sample.sampler"):
        apply_overrides(Config(), ["sample.sampler=euler"])
    with pytest.raises(SitsrConfigError, match="eta"):
        apply_overrides(Config(), ["sample.sampler=dpmpp2m", "sample.eta=0.5"])
    noise = torch.randn(1, 1, 8, 8)
    with pytest.raises(SitsrConfigError, match="eta"):
        sampling.dpmpp2m(GaussianPosteriorMean(Config(), 1.0), None, torch.ones(1), steps=3, eta=0.5, noise=noise)


def test_the_config_names_every_sampler_and_only_those():
    from sitsr_core import config

    assert set(sampling.SAMPLERS) == set(config.SAMPLERS)
