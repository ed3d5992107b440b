"""The residual UNet: parameter count, shapes on any H x W, memory formats, bf16, conditioning."""

from __future__ import annotations

import math

import pytest
import torch

from sitsr_core.config import Config, profile
from sitsr_core.networks import DtypeGroupNorm, UNet, build_network, count_parameters, sinusoidal_embedding


def tiny(seed: int = 0, randomise: bool = True) -> UNet:
    """Smoke-sized UNet; ``randomise`` replaces the zero-initialised layers so outputs are not 0."""
    torch.manual_seed(seed)
    net = build_network(profile("smoke"))
    if randomise:
        with torch.no_grad():
            for p in net.parameters():
                if p.dim() > 1 and not p.abs().sum():
                    p.normal_(0, 0.05)
    return net


def test_default_parameter_count():
    n = count_parameters(build_network(Config()))
    assert 3.5e6 <= n <= 4.3e6, n


def test_parameter_count_matches_hand_count_for_one_block():
    # a 1-level, 1-block UNet: every layer counted by hand
    net = UNet(2, widths=(8,), blocks_per_level=1, embedding_dim=4)
    emb = (4 * 32 + 32) + (32 * 32 + 32)
    stem = 3 * 8 * 9 + 8
    block = 2 * 8 + (8 * 8 * 9 + 8) + (32 * 16 + 16) + 2 * 8 + (8 * 8 * 9 + 8)
    concat_block = 2 * 16 + (16 * 8 * 9 + 8) + (32 * 16 + 16) + 2 * 8 + (8 * 8 * 9 + 8) + (16 * 8 + 8)
    head = 2 * 16 + 16 * 1 * 9 + 1
    assert count_parameters(net) == emb + stem + block + block + concat_block + head


@pytest.mark.parametrize("hw", [(32, 32), (37, 50), (8, 9)])
def test_any_shape_and_zero_initial_output(hw):
    net = tiny(randomise=False)
    z = torch.randn(2, 1, *hw)
    out = net(z, torch.tensor([0.1, 0.9]), torch.randn(2, 5, *hw))
    assert out.shape == (2, 1, *hw)
    assert torch.count_nonzero(out) == 0  # zero-initialised head: the network starts at 0


def test_channels_last_and_padding_crop_consistent():
    net = tiny()
    z, c = torch.randn(2, 1, 37, 50), torch.randn(2, 5, 37, 50)
    ref = net(z, torch.tensor([0.3, 0.6]), c)
    cl = net.to(memory_format=torch.channels_last)
    out = cl(z.contiguous(memory_format=torch.channels_last), torch.tensor([0.3, 0.6]),
             c.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    # a sample's output does not depend on the other samples of the batch
    one = net(z[1:], torch.tensor([0.6]), c[1:])
    torch.testing.assert_close(one, ref[1:], atol=1e-5, rtol=1e-4)


def test_noise_level_and_context_change_the_output():
    net = tiny()
    z, c = torch.randn(1, 1, 16, 16), torch.randn(1, 5, 16, 16)
    a = net(z, torch.tensor([0.2]), c)
    assert (a - net(z, torch.tensor([0.8]), c)).abs().max() > 1e-4
    c2 = c.clone()
    c2[:, 0] += 1
    assert (a - net(z, torch.tensor([0.2]), c2)).abs().max() > 1e-4


def test_bf16_autocast_keeps_bf16_through_norms_and_is_close():
    net = tiny()
    z, c = torch.randn(2, 1, 32, 32), torch.randn(2, 5, 32, 32)
    ref = net(z, torch.tensor([0.3, 0.6]), c)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
             for m in net.modules() if isinstance(m, DtypeGroupNorm)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(z, torch.tensor([0.3, 0.6]), c)
    for h in hooks:
        h.remove()
    assert seen and all(d == torch.bfloat16 for d in seen)  # no float32 round trip around the norms
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


def test_dtype_group_norm_matches_group_norm():
    x = torch.randn(2, 16, 5, 7)
    a, b = DtypeGroupNorm(4, 16), torch.nn.GroupNorm(4, 16)
    torch.testing.assert_close(a(x), b(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = a(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), b(x), atol=0.05, rtol=0.05)


def test_sinusoidal_embedding_closed_form():
    x = [0.0, 0.1234]
    e = sinusoidal_embedding(torch.tensor(x), 6, max_frequency=100.0)
    freqs = (1, 10, 100)
    expect = [[math.sin(2 * math.pi * f * v) for f in freqs] + [math.cos(2 * math.pi * f * v) for f in freqs]
              for v in x]
    torch.testing.assert_close(e, torch.tensor(expect), atol=1e-4, rtol=0)
