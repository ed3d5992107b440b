"""Smoke tests of the benchmark harness (benchmarks/): tiny sizes, expected keys, no timing assertions."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from benchmarks import model as bm
from benchmarks import run as brun
from benchmarks.data import bench_data

TIMING = {"median_s", "q25_s", "q75_s", "min_s", "max_s", "n", "times_s"}


def test_sizes_match_the_functions():
    """Every device's sizes bind to the section functions (the cuda path is not run here)."""
    for sizes in bm.SIZES.values():
        inspect.signature(bm.bench_train).bind("cpu", **sizes["train"])
        inspect.signature(bm.bench_sample).bind("cpu", **sizes["sample"])
        inspect.signature(bm.bench_scaling).bind("cpu", **sizes["scaling"])
        if sizes["sample_full"] is not None:
            inspect.signature(bm.bench_sample).bind("cpu", size=(8, 8), **sizes["sample_full"])
    assert bm.SIZES["cpu"]["train"]["batch"] == 16 and bm.SIZES["cpu"]["train"]["patch"] == 128
    assert bm.SIZES["cuda"]["train"]["batch"] == 64 and bm.SIZES["cuda"]["train"]["patch"] == 256


def test_train_tiny_sitsr():
    out = bm.bench_train("cpu", batch=2, patch=16, warmup=1, repeats=1, precisions=("fp32",), models=("sitsr",),
                         memory=False)
    case = out["cases"]["fp32"]["sitsr"]
    assert TIMING <= set(case) and case["samples_per_s"] > 0
    assert out["ratio"]["fp32"] is None
    assert out["params"]["sitsr"] == bm.n_params(bm.build_sitsr())
    json.dumps(out)


def test_sample_and_scaling_tiny_sitsr():
    out = bm.bench_sample("cpu", size=(24, 40), members=3, steps=2, chunk=2, warmup_steps=1, repeats=1,
                          precisions=("fp32",), models=("sitsr",), tile=16, overlap=4, tile_batch=4, memory=False)
    case = out["cases"]["fp32"]["sitsr"]
    assert TIMING <= set(case) and case["members_per_s"] > 0
    # one subprocess per case (time and peak RSS)
    sc = bm.bench_scaling("cpu", domains=(24,), domain_members=1, ensembles=(2,), ensemble_size=16, steps=1,
                          chunk=2, tile=16, overlap=4, tile_batch=2, precision="fp32")
    assert [r["size"] for r in sc["domain"]] == [[24, 24]] and [r["members"] for r in sc["ensemble"]] == [2]
    for r in sc["domain"] + sc["ensemble"]:
        assert {"seconds", "ns_per_pixel_member_step", "tiles", "passes_per_step", "cost_vs_largest"} <= set(r)
        assert r["memory"]["peak_rss_mb"] > 0
    assert sc["domain"][0]["tiles"] == 4 and sc["domain"][0]["tile_pixel_overhead"] == 4 * 16 * 16 / 24 ** 2


def test_memory_subprocess():
    mem = bm.memory_in_subprocess(dict(kind="train", model="sitsr", precision="fp32", batch=1, patch=16))
    assert {"peak_rss_mb", "baseline_rss_mb", "peak_delta_mb"} <= set(mem)
    assert mem["peak_rss_mb"] >= mem["baseline_rss_mb"] > 0


def test_diffusers_baseline_matches():
    pytest.importorskip("diffusers")
    net = bm.build_diffusers()
    sitsr = bm.n_params(bm.build_sitsr())
    assert abs(bm.n_params(net) / sitsr - 1) < 0.10
    assert not any("Attention" in type(m).__name__ for m in net.modules())
    z, ctx = torch.randn(2, 1, 20, 28), torch.randn(2, bm.context_channels(), 20, 28)
    assert net(z, torch.tensor([0.3, 0.7]), ctx).shape == (2, 1, 20, 28)  # padded to 24 x 32 and cropped


def test_same_number_of_network_evaluations():
    pytest.importorskip("diffusers")
    calls = {"sitsr": 0, "diffusers": 0}
    ctx, mask = bm._sample_context(16, 16, "cpu")
    nets = {"sitsr": bm.build_sitsr().eval(), "diffusers": bm.build_diffusers().eval()}
    for name, net in nets.items():
        net.register_forward_hook(lambda *a, name=name: calls.__setitem__(name, calls[name] + 1))
    from sitsr_core import diffusion, sampling

    den = diffusion.Denoiser(nets["sitsr"], bm.sitsr_config(), {}, bf16=False, channels_last=False)
    a = sampling.generate(den, ctx, mask, members=3, steps=4, chunk=3, tile_batch=3)
    b = bm.diffusers_generate(nets["diffusers"], ctx, mask, members=3, steps=4, chunk=3, bf16=False,
                              channels_last=False)
    assert a.shape == b.shape == (3, 16, 16)
    assert calls == {"sitsr": 4, "diffusers": 4}


def test_train_and_sample_tiny_both():
    pytest.importorskip("diffusers")
    tr = bm.bench_train("cpu", batch=1, patch=16, warmup=1, repeats=1, precisions=("fp32",), memory=False)
    assert set(tr["cases"]["fp32"]) == {"sitsr", "diffusers"} and tr["ratio"]["fp32"] > 0
    assert set(tr["conv_macs_per_pixel"]) == {"sitsr", "diffusers"}
    sa = bm.bench_sample("cpu", size=(16, 16), members=2, steps=2, chunk=2, warmup_steps=1, repeats=1,
                         precisions=("fp32",), memory=False)
    assert sa["ratio"]["fp32"] > 0
    s = brun.summary({"train": tr, "sample": sa})
    assert s["train_fp32"]["target"] == 1.5 and s["sample_fp32"]["target"] == 2.0
    assert isinstance(s["sample_fp32"]["met"], bool)


def test_profile_and_environment():
    rows = bm.profile_top_ops(bm.make_train_case("sitsr", "fp32", 1, 16), top=5, warmup=1)
    assert 0 < len(rows) <= 5 and {"op", "self_ms", "share", "calls"} <= set(rows[0])
    env = brun.environment()
    assert {"commit", "torch", "loadavg_start", "allocator", "torch_threads", "cpus"} <= set(env)


def test_data_small_region():
    out = bench_data("small", repeats=1)
    assert out["shape"] == [128, 128]
    assert {"synth_day_s", "constitute_day_s", "box_filter_s"} <= set(out)
