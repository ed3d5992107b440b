"""Model-stage benchmarks: the sitsr UNet and sampler against a diffusers baseline.

Sections (each returns a JSON-ready dict):

* :func:`bench_train` — one training step (forward + backward + AdamW step, masked
  noise loss) of the sitsr :class:`~sitsr_core.networks.UNet` and of a diffusers
  ``UNet2DModel`` of the same size (:data:`DIFFUSERS_CONFIG`), same batch, patch
  and precision; samples/s and peak memory.
* :func:`bench_sample` — an ensemble of ``members`` x ``steps`` deterministic DDIM
  steps: :func:`sitsr_core.sampling.generate` (tiling on) against a diffusers
  ``DDIMScheduler`` loop around the same diffusers network; members/s and peak memory.
* :func:`bench_scaling` — time and peak memory of the sitsr sampler against the domain
  size and the ensemble size; cost per pixel per member per step.

Method. Timings of the models being compared are *interleaved* in one process
(warm-up calls of every case first, then ``repeats`` rounds that time each case
once), so a background load hits both alike; we report median, quartiles, min and
max. Peak memory on the CPU is measured in a fresh subprocess per case (the
growth of the peak resident set size, ``VmHWM``, over the resident set size once
the model and inputs exist; ``tracemalloc`` does not see torch's allocations);
on CUDA it is ``torch.cuda.max_memory_allocated`` in the process.

The baseline network is built from a config and randomly initialised: no
weights are downloaded. ``diffusers`` is optional (``pip install '.[bench]'``):
without it only the sitsr cases run and the ratios are ``None``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Precisions compared: fp32 (contiguous) and bf16 autocast with channels_last tensors and weights.
PRECISIONS = ("fp32", "bf16_cl")

#: The diffusers baseline: no attention, DownBlock2D/UpBlock2D, 2 resnets per level, GroupNorm(8),
#: scale-and-shift noise conditioning like sitsr's. diffusers decoders hold 3 resnets per level, its
#: down/up-sampling are (strided / nearest+) 3x3 convolutions, so the deepest width is 96 (not 128)
#: to keep the parameter count within 10 % of sitsr's (3.96 M vs 3.91 M).
DIFFUSERS_CONFIG = dict(
    sample_size=None, in_channels=6, out_channels=1, block_out_channels=(32, 64, 96, 96), layers_per_block=2,
    down_block_types=("DownBlock2D",) * 4, up_block_types=("UpBlock2D",) * 4, add_attention=False,
    norm_num_groups=8, resnet_time_scale_shift="scale_shift",
)

#: Timestep scale of the diffusers network: it receives ``1000 * noise_var`` as a continuous (float) timestep.
TIMESTEP_SCALE = 1000.0

#: Sizes per device. ``cpu-small`` is for quick checks (``--small``).
SIZES = {
    "cpu": dict(
        train=dict(batch=16, patch=128, warmup=3, repeats=5),
        sample=dict(size=(256, 256), members=30, steps=20, chunk=10, warmup_steps=3, repeats=2),
        sample_full=None,
        scaling=dict(domains=(128, 256, 512), domain_members=10, ensembles=(1, 10, 30), ensemble_size=128,
                     steps=2, chunk=10, tile=128, overlap=32, tile_batch=10, full=False,
                     full_job=dict(members=30, steps=1)),
    ),
    "cpu-small": dict(
        train=dict(batch=4, patch=64, warmup=3, repeats=5),
        sample=dict(size=(256, 256), members=4, steps=20, chunk=4, warmup_steps=3, repeats=2),
        sample_full=None,
        scaling=dict(domains=(128, 256, 512), domain_members=2, ensembles=(1, 10, 30), ensemble_size=128,
                     steps=2, chunk=10, tile=128, overlap=32, tile_batch=10, full=False,
                     full_job=dict(members=30, steps=1)),
    ),
    "cuda": dict(
        train=dict(batch=64, patch=256, warmup=5, repeats=15),
        sample=dict(size=(256, 256), members=30, steps=20, chunk=30, warmup_steps=3, repeats=5),
        # sitsr: the "full" profile's sampling (chunk 30, tiles of 512, overlap 64, 30 crops per pass);
        # diffusers: the whole grid (padded to 1088 x 1312) for 10 members per pass (30 do not fit comfortably)
        # bf16 + channels_last only (the precision of the 10 s target), eager and torch.compile'd sitsr
        sample_full=dict(members=30, steps=20, chunk=30, tile=512, overlap=64, tile_batch=30, baseline_chunk=10,
                         warmup_steps=2, repeats=2, precisions=("bf16_cl",),
                         models=("sitsr", "sitsr_compile", "diffusers")),
        scaling=dict(domains=(128, 256, 512, 1024), domain_members=10, ensembles=(1, 10, 30), ensemble_size=128,
                     steps=20, chunk=30, tile=512, overlap=64, tile_batch=30, full=True),
    ),
}


# ------------------------------------------------------------------------------------------- models

def have_diffusers() -> bool:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return False
    return True


def sitsr_config():
    """The sitsr configuration benchmarked: the defaults (4 LR features + mask, widths 32/64/96/128)."""
    from sitsr_core.config import Config

    return Config()


def context_channels() -> int:
    return len(sitsr_config().data.features) + 1


def build_sitsr() -> nn.Module:
    """The sitsr UNet of :func:`sitsr_config` (about 3.9 M parameters)."""
    from sitsr_core.networks import build_network

    return build_network(sitsr_config())


class DiffusersNet(nn.Module):
    """A diffusers ``UNet2DModel`` behind the sitsr network signature ``f(z, noise_var, context)``.

    The input is ``cat([z, context])`` (1 + 5 channels), the timestep the continuous value
    ``TIMESTEP_SCALE * noise_var`` (a float tensor), and the domain is padded to a multiple
    of 8 and cropped back, as sitsr's UNet does internally.
    """

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet
        self.multiple = 2 ** (len(unet.config.block_out_channels) - 1)

    def forward(self, z: torch.Tensor, noise_var, context: torch.Tensor, timestep: torch.Tensor | None = None):
        B, _, H, W = z.shape
        if timestep is None:
            nv = torch.as_tensor(noise_var, device=z.device, dtype=torch.float32).reshape(-1)
            timestep = TIMESTEP_SCALE * (nv if nv.numel() == B else nv.expand(B))
        x = torch.cat([z, context.to(z.dtype)], dim=1)
        ph, pw = (-H) % self.multiple, (-W) % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        out = self.unet(x, timestep.float()).sample
        return out[:, :, :H, :W] if (ph or pw) else out


def build_diffusers() -> DiffusersNet:
    """The diffusers baseline of :data:`DIFFUSERS_CONFIG`, randomly initialised (no download)."""
    from diffusers import UNet2DModel

    return DiffusersNet(UNet2DModel(**DIFFUSERS_CONFIG))


def build(model: str) -> nn.Module:
    if model in ("sitsr", "sitsr_compile"):
        return build_sitsr()
    if model == "diffusers":
        return build_diffusers()
    raise ValueError(f"unknown model {model!r}")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def conv_macs_per_pixel(net: nn.Module, H: int = 64, W: int = 64) -> float:
    """Multiply-accumulates of the convolutions of one forward pass, per output pixel (a cost model)."""
    total = [0]

    def hook(m, inputs, out):
        total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 1, H, W), torch.tensor([0.5]), torch.zeros(1, context_channels(), H, W))
    finally:
        for h in hooks:
            h.remove()
    return total[0] / (H * W)


def default_models() -> tuple[str, ...]:
    return ("sitsr", "diffusers") if have_diffusers() else ("sitsr",)


# ------------------------------------------------------------------------------------------- timing

def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def stats(times: list[float]) -> dict:
    """Median, quartiles, min, max (seconds) and the raw times."""
    a = np.asarray(times, dtype=float)
    return {"median_s": float(np.median(a)), "q25_s": float(np.percentile(a, 25)),
            "q75_s": float(np.percentile(a, 75)), "min_s": float(a.min()), "max_s": float(a.max()),
            "n": int(a.size), "times_s": [round(float(t), 6) for t in a]}


def interleaved(cases: dict[str, Callable[[], object]], warmup: int, repeats: int, device="cpu",
                warmups: dict[str, Callable[[], object]] | None = None) -> dict[str, dict]:
    """Warm every case up, then time ``repeats`` rounds, each case once per round (in the same process).

    ``warmups`` optionally gives a cheaper warm-up call per case (same tensor shapes).
    """
    warmups = warmups or {}
    for name, fn in cases.items():
        for _ in range(warmup):
            warmups.get(name, fn)()
        sync(device)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: stats(t) for name, t in times.items()}


# ------------------------------------------------------------------------------------------- memory

def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _maxrss_bytes() -> int:
    """Peak RSS of this process: ``VmHWM`` of /proc/self/status.

    Not ``getrusage(...).ru_maxrss``: Linux carries that over ``fork`` + ``exec``, so a child
    started from a large parent reports at least the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def memory_in_subprocess(spec: dict, timeout: float = 1800) -> dict:
    """Peak memory of one case in a fresh interpreter (``python -m benchmarks.model --child SPEC``).

    Returns ``{"peak_rss_mb", "baseline_rss_mb", "peak_delta_mb", "seconds"}``; the delta is the
    growth of the peak RSS over the RSS once the model and inputs exist.
    """
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.model", "--threads", str(torch.get_num_threads()),
                           "--child", json.dumps(spec)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"memory subprocess failed for {spec}:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _child(spec: dict) -> dict:
    """Run one case once (after building it) and report its memory (see :func:`memory_in_subprocess`)."""
    kind = spec.pop("kind")
    if kind == "train":
        step = make_train_case(**spec)
        base = _rss_bytes()
        for _ in range(2):  # the AdamW state is created by the first step
            step()
    elif kind == "sample":
        run = make_sample_case(**spec)
        base = _rss_bytes()
        run()
    else:
        raise ValueError(kind)
    peak = _maxrss_bytes()
    mb = 1024.0 ** 2
    return {"peak_rss_mb": round(peak / mb, 1), "baseline_rss_mb": round(base / mb, 1),
            "peak_delta_mb": round((peak - base) / mb, 1)}


def _cuda_peak(fn: Callable[[], object], device) -> dict:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    mb = 1024.0 ** 2
    return {"peak_allocated_mb": round(peak / mb, 1), "baseline_allocated_mb": round(base / mb, 1),
            "peak_delta_mb": round((peak - base) / mb, 1),
            "peak_reserved_mb": round(torch.cuda.max_memory_reserved() / mb, 1)}


# ------------------------------------------------------------------------------------------- inputs

def _mask(H: int, W: int, device) -> torch.Tensor:
    """An ocean mask (1 ocean) with a land corner of ~10 %."""
    m = torch.ones((H, W), device=device)
    m[: max(1, H // 3), : max(1, W // 3)] = 0.0
    return m


def _inputs(batch: int, H: int, W: int, device, seed: int = 0):
    """Normalised target ``y`` (B,1,H,W), context (B,5,H,W; mask last), mask, times and noise."""
    g = torch.Generator().manual_seed(seed)
    C = context_channels()
    mask = _mask(H, W, "cpu").expand(batch, 1, H, W)
    ctx = torch.randn((batch, C, H, W), generator=g) * mask
    ctx[:, -1:] = mask
    y = torch.randn((batch, 1, H, W), generator=g) * mask
    t = torch.rand(batch, generator=g)
    noise = torch.randn((batch, 1, H, W), generator=g)
    return [a.to(device) for a in (y, ctx, mask.contiguous(), t, noise)]


# ------------------------------------------------------------------------------------------- 1. training

def make_train_case(model: str, precision: str, batch: int, patch: int, device="cpu", seed: int = 0):
    """A closure doing one training step: sitsr's masked noise loss (``diffusion.loss``), backward, AdamW."""
    from sitsr_core import diffusion

    cfg = sitsr_config()
    dev = torch.device(device)
    torch.manual_seed(seed)
    net = build(model).to(dev).train()
    bf16 = precision == "bf16_cl"
    mf = torch.channels_last if bf16 else torch.contiguous_format
    if bf16:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-4)
    y, ctx, mask, t, noise = _inputs(batch, patch, patch, dev, seed)
    y, ctx, noise = (a.contiguous(memory_format=mf) for a in (y, ctx, noise))

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = diffusion.loss(net, y, ctx, mask, cfg, t=t, noise=noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def bench_train(device="cpu", batch: int = 16, patch: int = 128, warmup: int = 3, repeats: int = 5,
                precisions=PRECISIONS, models=None, memory: bool = True) -> dict:
    """Training throughput (samples/s) and peak memory, sitsr vs diffusers, per precision.

    Returns
    -------
    dict with ``batch``, ``patch``, ``params`` (per model), ``cases[precision][model]`` (timing stats,
    ``samples_per_s``, ``memory``) and ``ratio[precision]`` = sitsr / diffusers samples/s.
    """
    models = tuple(models or default_models())
    out = {"batch": batch, "patch": patch, "warmup": warmup, "repeats": repeats,
           "step": "forward + backward + AdamW step, masked noise (eps) MSE, continuous t",
           "params": {m: n_params(build(m)) for m in models},
           "conv_macs_per_pixel": {m: conv_macs_per_pixel(build(m)) for m in models}, "cases": {}, "ratio": {}}
    for prec in precisions:
        cases = {m: make_train_case(m, prec, batch, patch, device) for m in models}
        res = interleaved(cases, warmup, repeats, device)
        for m in models:
            res[m]["samples_per_s"] = batch / res[m]["median_s"]
            if memory:
                if torch.device(device).type == "cuda":
                    res[m]["memory"] = _cuda_peak(cases[m], device)
                else:
                    res[m]["memory"] = memory_in_subprocess(
                        dict(kind="train", model=m, precision=prec, batch=batch, patch=patch, device=device))
        del cases
        out["cases"][prec] = res
        out["ratio"][prec] = (res["sitsr"]["samples_per_s"] / res["diffusers"]["samples_per_s"]
                              if "diffusers" in res else None)
        _free(device)
    return out


# ------------------------------------------------------------------------------------------- 2. sampling

def _sample_context(H: int, W: int, device, seed: int = 1):
    """One date's normalised context (C, H, W) and ocean mask (H, W)."""
    g = torch.Generator().manual_seed(seed)
    mask = _mask(H, W, "cpu")
    ctx = torch.randn((context_channels(), H, W), generator=g) * mask
    ctx[-1] = mask
    return ctx.to(device), mask.to(device)


def diffusers_scheduler(steps: int):
    """A deterministic diffusers DDIM scheduler (cosine betas, epsilon prediction) set to ``steps`` steps."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                          set_alpha_to_one=False, prediction_type="epsilon")
    sched.set_timesteps(steps)
    return sched


@torch.no_grad()
def diffusers_generate(net: DiffusersNet, context: torch.Tensor, mask: torch.Tensor, *, members: int, steps: int,
                       chunk: int, bf16: bool, channels_last: bool, seed: int = 0) -> torch.Tensor:
    """An ensemble with a plain diffusers ``DDIMScheduler`` loop (eta = 0): ``steps`` network calls per member.

    Members are sampled ``chunk`` at a time over the whole domain (no tiling); the network runs
    under the same autocast / memory format as sitsr's :class:`~sitsr_core.diffusion.Denoiser`.
    Returns (members, H, W) on the CPU, masked.
    """
    device = context.device
    H, W = context.shape[-2:]
    sched = diffusers_scheduler(steps)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    out = []
    for m0 in range(0, members, chunk):
        n = min(chunk, members - m0)
        g = torch.Generator().manual_seed(seed + m0)
        x = torch.randn((n, 1, H, W), generator=g).to(device)
        ctx = context.unsqueeze(0).expand(n, -1, -1, -1).contiguous(memory_format=mf)
        for t in sched.timesteps:
            ts = t.to(device=device, dtype=torch.float32).expand(n)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                eps = net(x.contiguous(memory_format=mf), None, ctx, timestep=ts)
            x = sched.step(eps.float().contiguous(), t, x, eta=0.0).prev_sample
        out.append((x[:, 0] * mask).float().cpu())
    return torch.cat(out)


#: Compiled denoisers by (precision, device): a warm-up case and its timed case share one compilation.
_COMPILED: dict = {}


def _sitsr_denoiser(net: nn.Module, bf16: bool, compiled: bool):
    from sitsr_core import diffusion

    if not compiled:
        return diffusion.Denoiser(net, sitsr_config(), {}, bf16=bf16, channels_last=bf16, compile=False).eval()
    key = (bf16, str(next(net.parameters()).device))
    if key not in _COMPILED:
        _COMPILED[key] = diffusion.Denoiser(net, sitsr_config(), {}, bf16=bf16, channels_last=bf16,
                                            compile=True).eval()
    return _COMPILED[key]


def make_sample_case(model: str, precision: str, H: int, W: int, members: int, steps: int, chunk: int,
                     device="cpu", tile: int | None = None, overlap: int = 0, tile_batch: int | None = None,
                     seed: int = 0):
    """A closure sampling one ensemble: ``sampling.generate`` (sitsr, tiling on) or :func:`diffusers_generate`.

    ``model``: ``sitsr``, ``sitsr_compile`` (the same through ``torch.compile``; built once per
    precision and device, so its warm-up compiles it for the timed call) or ``diffusers``.
    """
    from sitsr_core import sampling

    dev = torch.device(device)
    bf16 = precision == "bf16_cl"
    torch.manual_seed(seed)
    net = build(model).to(dev).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if bf16:
        net = net.to(memory_format=torch.channels_last)
    context, mask = _sample_context(H, W, dev)
    if model.startswith("sitsr"):
        den = _sitsr_denoiser(net, bf16, compiled=model == "sitsr_compile")
        tile = tile or max(H, W)
        tb = tile_batch or chunk * len(sampling.Tiler(den, tile, overlap).layout(H, W)[2])

        def run():
            # DDIM, like the diffusers baseline (the default sampler, DPM-Solver++(2M), costs the same per step)
            return sampling.generate(den, context, mask, members=members, steps=steps, eta=0.0, seed=seed,
                                     chunk=chunk, tile=tile, overlap=overlap, tile_batch=tb, sampler="ddim")
    else:
        def run():
            return diffusers_generate(net, context, mask, members=members, steps=steps, chunk=chunk, bf16=bf16,
                                      channels_last=bf16, seed=seed)
    return run


def bench_sample(device="cpu", size=(256, 256), members: int = 30, steps: int = 20, chunk: int = 10,
                 warmup_steps: int = 3, repeats: int = 2, precisions=("bf16_cl",), models=None,
                 tile: int | None = None, overlap: int = 0, tile_batch: int | None = None,
                 baseline_chunk: int | None = None, memory: bool = True) -> dict:
    """Ensemble sampling throughput (members/s) and peak memory, sitsr vs diffusers.

    Both are deterministic DDIM (eta = 0) with ``steps`` network evaluations per member. sitsr runs
    :func:`sitsr_core.sampling.generate` with the tiling (``tile`` None: one tile covering the
    domain; ``tile_batch`` None: all crops of a chunk in one pass, so no padding crops);
    diffusers a ``DDIMScheduler`` loop on the whole domain, ``baseline_chunk`` members per pass
    (default ``chunk``). Warm-up: one call per case of one chunk and ``warmup_steps`` steps
    (same shapes). CPU memory is measured on such a call in a subprocess (one chunk: the same peak
    as the whole ensemble, chunks being sequential).
    """
    models = tuple(models or default_models())
    H, W = size
    bchunk = baseline_chunk or chunk
    chunks = {"sitsr": chunk, "sitsr_compile": chunk, "diffusers": bchunk}
    sitsr_kw = dict(tile=tile, overlap=overlap, tile_batch=tile_batch)
    out = {"size": [H, W], "members": members, "steps": steps, "eta": 0.0, "chunk": chunks,
           "tiling": {"tile": tile or max(H, W), "overlap": overlap, "tile_batch": tile_batch}, "repeats": repeats,
           "cases": {}, "ratio": {}}
    for prec in precisions:
        cases, warm = {}, {}
        for m in models:
            kw = sitsr_kw if m.startswith("sitsr") else {}
            cases[m] = make_sample_case(m, prec, H, W, members, steps, chunks[m], device, **kw)
            warm[m] = make_sample_case(m, prec, H, W, min(members, chunks[m]), warmup_steps, chunks[m], device, **kw)
        res = interleaved(cases, 1, repeats, device, warmups=warm)
        for m in models:
            res[m]["members_per_s"] = members / res[m]["median_s"]
            res[m]["s_per_member"] = res[m]["median_s"] / members
            if memory:
                if torch.device(device).type == "cuda":
                    res[m]["memory"] = _cuda_peak(warm[m], device)
                else:
                    kw = sitsr_kw if m.startswith("sitsr") else {}
                    res[m]["memory"] = memory_in_subprocess(
                        dict(kind="sample", model=m, precision=prec, H=H, W=W, members=min(members, chunks[m]),
                             steps=warmup_steps, chunk=chunks[m], device=device, **kw))
        del cases, warm
        out["cases"][prec] = res
        out["ratio"][prec] = (res["sitsr"]["members_per_s"] / res["diffusers"]["members_per_s"]
                              if "diffusers" in res else None)
        _free(device)
    return out


# ------------------------------------------------------------------------------------------- 3. scaling

def _scaling_case(device, H, W, members, steps, chunk, tile, overlap, tile_batch, precision) -> dict:
    """Time (after a warm-up call) and peak memory of one sitsr ensemble; per-pixel cost."""
    kw = dict(tile=tile, overlap=overlap, tile_batch=tile_batch)
    run = make_sample_case("sitsr", precision, H, W, members, steps, chunk, device, **kw)
    warm = make_sample_case("sitsr", precision, min(H, tile), min(W, tile), min(members, chunk), 2, chunk, device,
                            **kw)
    warm()
    sync(device)
    t0 = time.perf_counter()
    run()
    sync(device)
    sec = time.perf_counter() - t0
    n_tiles = len(_layout(H, W, tile, overlap))
    passes = sum(math.ceil(n_tiles * min(chunk, members - m0) / tile_batch) for m0 in range(0, members, chunk))
    crops = members * n_tiles
    th, tw = min(tile, H), min(tile, W)
    res = {"size": [H, W], "members": members, "steps": steps, "tiles": n_tiles,
           "tile_pixel_overhead": n_tiles * th * tw / (H * W), "passes_per_step": passes, "crops_per_step": crops,
           "padded_crops_per_step": passes * tile_batch - crops,
           "seconds": sec, "s_per_member": sec / members,
           "ns_per_pixel_member_step": 1e9 * sec / (H * W * members * steps)}
    return res


def _layout(H, W, tile, overlap):
    from sitsr_core import sampling

    rs, cs = sampling.tile_starts(H, tile, overlap), sampling.tile_starts(W, tile, overlap)
    return [(r, c) for r in rs for c in cs]


def bench_scaling(device="cpu", domains=(128, 256, 512), domain_members: int = 10, ensembles=(1, 10, 30),
                  ensemble_size: int = 128, steps: int = 2, chunk: int = 10, tile: int = 128, overlap: int = 32,
                  tile_batch: int = 10, full: bool = False, full_job: dict | None = None, precision: str = "bf16_cl",
                  memory: bool = True) -> dict:
    """sitsr sampler cost against the domain size (``domain_members`` members) and the ensemble size.

    Tiling is on (``tile``, ``overlap``, ``tile_batch`` crops per pass, padded), so memory should
    stay bounded by the tile batch while time grows with pixels x members. Each case runs in a
    fresh subprocess on the CPU (time after a warm-up call, and peak RSS); on CUDA in-process.
    ``full`` adds the whole 1086 x 1308 grid to the domain sweep. ``full_job`` (``members``,
    ``steps``) runs that ensemble on the whole grid as ``full_grid_job``: on a CPU, 30 members and
    one step give the peak memory of the 30-member job (memory does not depend on the steps).
    """
    from sitsr_core.grid import FULL_SHAPE

    shapes = [(d, d) for d in domains] + ([tuple(FULL_SHAPE)] if full else [])
    common = dict(steps=steps, chunk=chunk, tile=tile, overlap=overlap, tile_batch=tile_batch, precision=precision)
    out = {"precision": precision, "tiling": {"tile": tile, "overlap": overlap, "tile_batch": tile_batch},
           "chunk": chunk, "steps": steps, "domain": [], "ensemble": []}

    def one(H, W, members, **over):
        spec = dict(H=H, W=W, members=members, **{**common, **over})
        if torch.device(device).type == "cuda":
            res = _scaling_case(device, **spec)
            if memory:
                res["memory"] = _cuda_peak(make_sample_case("sitsr", precision, H, W, min(members, chunk), 2,
                                                            chunk, device, tile=tile, overlap=overlap,
                                                            tile_batch=tile_batch), device)
            _free(device)
            return res
        return scaling_in_subprocess(dict(device=device, **spec), memory)

    for H, W in shapes:
        out["domain"].append(one(H, W, domain_members))
    for m in ensembles:
        out["ensemble"].append(one(ensemble_size, ensemble_size, m))
    if full_job:
        out["full_grid_job"] = one(*FULL_SHAPE, full_job["members"], steps=full_job["steps"])
    for key in ("domain", "ensemble"):
        rows = out[key]
        ref = rows[-1]["ns_per_pixel_member_step"] if rows else None
        for r in rows:
            r["cost_vs_largest"] = r["ns_per_pixel_member_step"] / ref if ref else None
    return out


def scaling_in_subprocess(spec: dict, memory: bool = True, timeout: float = 3600) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.model", "--threads", str(torch.get_num_threads()),
                           "--scaling-child", json.dumps(spec)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"scaling subprocess failed for {spec}:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if not memory:
        res.pop("memory", None)
    return res


def _scaling_child(spec: dict) -> dict:
    base = _rss_bytes()
    res = _scaling_case(**spec)
    peak = _maxrss_bytes()
    mb = 1024.0 ** 2
    res["memory"] = {"peak_rss_mb": round(peak / mb, 1), "baseline_rss_mb": round(base / mb, 1),
                     "peak_delta_mb": round((peak - base) / mb, 1)}
    return res


# ------------------------------------------------------------------------------------------- profiling

def profile_top_ops(fn: Callable[[], object], device="cpu", top: int = 15, warmup: int = 2) -> list[dict]:
    """Self time of the ``top`` most expensive operators of one call of ``fn`` (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        fn()
    sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    cuda = torch.device(device).type == "cuda"
    events = prof.key_averages()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    rows = sorted(events, key=lambda e: getattr(e, key, 0) or 0, reverse=True)
    total = sum(getattr(e, key, 0) or 0 for e in events) or 1
    return [{"op": e.key, "self_ms": round((getattr(e, key, 0) or 0) / 1e3, 3),
             "share": round((getattr(e, key, 0) or 0) / total, 4), "calls": e.count} for e in rows[:top]]


def bench_profile(device="cpu", batch: int = 4, patch: int = 64, size=(256, 256), chunk: int = 4,
                  precisions=PRECISIONS, models=None, top: int = 12) -> dict:
    """Top operators of one training step and of one 2-step sampling call per model and precision."""
    models = tuple(models or default_models())
    out = {"train": {"batch": batch, "patch": patch}, "sample": {"size": list(size), "members": chunk, "steps": 2}}
    for prec in precisions:
        out["train"][prec] = {m: profile_top_ops(make_train_case(m, prec, batch, patch, device), device, top)
                              for m in models}
        out["sample"][prec] = {m: profile_top_ops(make_sample_case(m, prec, size[0], size[1], chunk, 2, chunk,
                                                                   device), device, top) for m in models}
        _free(device)
    return out


def _free(device) -> None:
    import gc

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="internal: one benchmark case in a fresh process")
    p.add_argument("--child", help="JSON spec of a train/sample case whose peak memory to measure")
    p.add_argument("--scaling-child", help="JSON spec of a scaling case")
    p.add_argument("--threads", type=int, help="torch threads (the parent's)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.child:
        print(json.dumps(_child(json.loads(a.child))))
    elif a.scaling_child:
        print(json.dumps(_scaling_child(json.loads(a.scaling_child))))
    else:
        p.error("give --child or --scaling-child")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
