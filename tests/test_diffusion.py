"""Schedule closed forms, masked losses, eps/v conversions, metres <-> normalised space, training signal."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from sitsr_core import diffusion, downscale
from sitsr_core.config import Config, apply_overrides, profile
from sitsr_core.networks import build_network

STEPS = 25
STATS = {"sit": {"mean": 1.5, "std": 0.5}, "sit_lr": {"mean": 1.4, "std": 0.3}, "sic_lr": {"mean": 0.9, "std": 0.1},
         "divergence_lr": {"mean": 0.0, "std": 0.01}, "shear_lr": {"mean": 0.02, "std": 0.01},
         "anomaly": {"mean": 0.01, "std": 0.25}}


def test_schedule_closed_form():
    d = profile("smoke").diffusion
    t = torch.tensor([0.0, 0.5, 1.0])
    g = diffusion.angles(t, d)
    g0, g1 = math.acos(0.999), math.acos(0.02)
    torch.testing.assert_close(g, torch.tensor([g0, (g0 + g1) / 2, g1]))
    s, n = diffusion.rates(g)
    torch.testing.assert_close(s, torch.tensor([0.999, math.cos((g0 + g1) / 2), 0.02]))
    torch.testing.assert_close(s ** 2 + n ** 2, torch.ones(3))
    z, s4, n4 = diffusion.diffuse(torch.full((3, 1, 2, 2), 2.0), t, torch.full((3, 1, 2, 2), -1.0), d)
    torch.testing.assert_close(z[:, 0, 0, 0], 2 * s - n)
    # numpy input works too
    np.testing.assert_allclose(diffusion.rates(diffusion.angles(np.array([1.0]), d))[0], [0.02])


class Oracle(torch.nn.Module):
    """Returns the exact eps (or v) of a known (y, noise) pair: f(z, var, ctx) from the diffusion algebra."""

    def __init__(self, y, noise, prediction):
        super().__init__()
        self.y, self.noise, self.prediction = y, noise, prediction
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, z, noise_var, context):
        n = noise_var.sqrt().reshape(-1, 1, 1, 1)
        s = (1 - noise_var).sqrt().reshape(-1, 1, 1, 1)
        out = self.noise if self.prediction == "eps" else s * self.noise - n * self.y
        return out + 0 * self.dummy


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_oracle_has_zero_loss_and_denoiser_recovers_y(prediction):
    cfg = apply_overrides(profile("smoke"), [f"diffusion.prediction={prediction}"])
    g = torch.Generator().manual_seed(0)
    y, noise = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    t = torch.tensor([0.1, 0.5, 0.9])
    oracle = Oracle(y, noise, prediction)
    mask = torch.ones(3, 1, 8, 8)
    assert diffusion.loss(oracle, y, torch.zeros(3, 5, 8, 8), mask, cfg, t=t, noise=noise) < 1e-10
    den = diffusion.Denoiser(oracle, cfg, STATS, bf16=False, channels_last=False)
    z, _, _ = diffusion.diffuse(y, t, noise, cfg.diffusion)
    eps, y0 = den.predict(z, t, torch.zeros(3, 5, 8, 8))
    torch.testing.assert_close(y0, y, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(eps, noise, atol=1e-4, rtol=1e-4)


def test_loss_ignores_land_cells():
    cfg = apply_overrides(profile("smoke"), ["diffusion.prediction=eps"])  # the target is the noise itself
    torch.manual_seed(0)
    net = build_network(cfg)
    with torch.no_grad():
        net.head.weight.normal_(0, 0.1)
    y = torch.randn(2, 1, 16, 16)
    mask = torch.ones(2, 1, 16, 16)
    mask[:, :, :, :5] = 0
    noise = torch.randn(2, 1, 16, 16)
    t = torch.tensor([0.3, 0.7])
    ctx = torch.cat([torch.randn(2, 4, 16, 16), mask], 1)
    a = diffusion.loss(net, y, ctx, mask, cfg, t=t, noise=noise)
    z = diffusion.diffuse(y, t, noise, cfg.diffusion)[0]
    pred = net(z, torch.sin(diffusion.angles(t, cfg.diffusion)) ** 2, ctx)
    torch.testing.assert_close(a, (((pred - noise) ** 2)[mask.bool()]).mean())
    # a huge error on land cells only leaves the per-sample sums unchanged
    noise2 = noise.clone()
    noise2[:, :, :, :5] = 1e6
    zero = lambda z, v, c: torch.zeros_like(z)  # noqa: E731
    sums, counts = diffusion.loss_terms(zero, y, ctx, mask, cfg, t=t, noise=noise2)
    torch.testing.assert_close(sums, ((noise ** 2) * mask).sum((1, 2, 3)))
    torch.testing.assert_close(counts, torch.full((2,), 16.0 * 11))


@pytest.mark.parametrize("target", ["anomaly", "full"])
def test_metres_round_trip(target):
    cfg = apply_overrides(profile("smoke"), [f"data.target={target}"])
    rng = np.random.default_rng(0)
    sit = rng.uniform(0, 4, (2, 6, 7)).astype(np.float32)
    sit_lr = rng.uniform(0, 4, (2, 6, 7)).astype(np.float32)
    mask = np.ones((6, 7), bool)
    mask[0, 0] = False
    sit[:, 0, 0] = np.nan
    base = downscale.lr_base(cfg, {"sit_lr": sit_lr})  # sit_lr (anomaly) or 0 (full)
    y = diffusion.normalise_target(sit, base, mask, cfg, STATS)
    assert np.all(y[:, 0, 0] == 0)
    back = diffusion.to_metres(y, base, cfg, STATS)
    np.testing.assert_allclose(back[:, mask], sit[:, mask], atol=1e-5)
    key = "anomaly" if target == "anomaly" else "sit"
    expect = ((sit - sit_lr if target == "anomaly" else sit) - STATS[key]["mean"]) / STATS[key]["std"]
    np.testing.assert_allclose(y[:, mask], expect[:, mask], atol=1e-5)
    # torch tensors give the same numbers
    yt = diffusion.normalise_target(torch.from_numpy(sit), torch.from_numpy(base), torch.from_numpy(mask), cfg, STATS)
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-6)


def test_context_channels_order_and_land():
    cfg = apply_overrides(profile("smoke"), ["data.features=sic_lr,sit_lr"])
    f = {k: np.full((3, 4), STATS[k]["mean"] + STATS[k]["std"], np.float32) for k in ("sit_lr", "sic_lr")}
    f["sit_lr"][0, 0] = np.nan
    mask = np.ones((3, 4), bool)
    mask[2, 3] = False
    c = diffusion.normalise_context(f, mask, cfg, STATS)
    assert c.shape == (3, 3, 4)
    np.testing.assert_allclose(c[0, mask], 1.0, atol=1e-5)  # sic_lr first
    assert c[1, 0, 0] == 0 and c[0, 2, 3] == 0 and c[1, 2, 3] == 0
    np.testing.assert_array_equal(c[2], mask.astype(np.float32))


@pytest.mark.parametrize("objective", ["diffusion", "regression"])
def test_loss_decreases_on_toy_problem(objective):
    # y is a smooth function of the first context channel; a few Adam steps must cut the loss clearly
    cfg = apply_overrides(profile("smoke"), [f"train.objective={objective}"])
    torch.manual_seed(0)
    net = build_network(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.avg_pool2d(torch.randn(64, 1, 20, 20, generator=g), 5, 1)  # 16 x 16, smooth
    x = x / x.std()
    ctx = torch.cat([x, torch.zeros(64, 3, 16, 16), torch.ones(64, 1, 16, 16)], 1)
    y = 0.8 * x
    mask = ctx[:, -1:]

    def evaluate():
        gg = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return float(diffusion.loss(net, y, ctx, mask, cfg, generator=gg))

    before = evaluate()
    for _ in range(STEPS):
        idx = torch.randint(0, 64, (8,), generator=g)
        loss = diffusion.loss(net, y[idx], ctx[idx], mask[idx], cfg, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate()
    assert after < 0.6 * before, (before, after)


def test_regression_denoiser_ignores_z_and_t():
    cfg = apply_overrides(profile("smoke"), ["train.objective=regression"])
    torch.manual_seed(0)
    net = build_network(cfg)
    with torch.no_grad():
        net.head.weight.normal_(0, 0.1)
    den = diffusion.Denoiser(net, cfg, STATS)
    ctx = torch.randn(1, 5, 8, 8)
    _, a = den.predict(torch.randn(1, 1, 8, 8), torch.tensor([0.2]), ctx)
    _, b = den.predict(torch.randn(1, 1, 8, 8), torch.tensor([0.9]), ctx)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, net(torch.zeros(1, 1, 8, 8), torch.zeros(1), ctx))
    assert dataclasses.asdict(cfg)["train"]["objective"] == "regression"


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_split_prediction_inverts_the_training_target(prediction):
    # z = s y + n eps with s^2 + n^2 = 1; the exact target gives back y and eps (v = s eps - n y by definition)
    g = torch.Generator().manual_seed(3)
    y, eps = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64), torch.randn(4, 1, 5, 5, generator=g,
                                                                                    dtype=torch.float64)
    gamma = torch.tensor([0.05, 0.5, 1.0, 1.5], dtype=torch.float64).reshape(-1, 1, 1, 1)
    s, n = torch.cos(gamma), torch.sin(gamma)
    z = s * y + n * eps
    out = diffusion.prediction_target(prediction, y, eps, s, n)
    torch.testing.assert_close(out, eps if prediction == "eps" else s * eps - n * y)
    eps_hat, y_hat = diffusion.split_prediction(prediction, z, out, s, n)
    torch.testing.assert_close(eps_hat, eps)
    torch.testing.assert_close(y_hat, y)


def test_v_prediction_stays_bounded_at_both_ends_of_the_default_schedule():
    # an error d in the network output moves the clean target by n d (v) or n / s d (eps): at most d for v,
    # ~50 d for eps at t = 1 (min_signal_rate 0.02); the default (and every profile) predicts v
    cfg = Config()
    assert cfg.diffusion.prediction == "v" and cfg.diffusion.max_signal_rate >= 0.999
    assert all(profile(p).diffusion.prediction == "v" for p in ("smoke", "quick", "full"))
    z, out, d = torch.zeros(2, 1, 1, 1), torch.zeros(2, 1, 1, 1), 1e-3
    s, n = diffusion.rates(diffusion.angles(torch.tensor([0.0, 1.0]).reshape(-1, 1, 1, 1), cfg.diffusion))
    for prediction, bound in (("v", 1.0), ("eps", 40.0)):
        _, y_a = diffusion.split_prediction(prediction, z, out, s, n)
        _, y_b = diffusion.split_prediction(prediction, z, out + d, s, n)
        gain = ((y_b - y_a).abs() / d).reshape(-1)
        assert (gain <= bound + 1e-6).all() if prediction == "v" else gain[1] > bound
