"""Run the benchmarks and write one JSON file.

``python -m benchmarks.run --device cpu --out benchmarks/results/cpu.json``

Each section records median and spread of repeated timings after warm-up, with
hardware, package versions, the git commit and the load average at start.
Sections: ``train`` and ``sample`` (sitsr against a diffusers baseline, see
:mod:`benchmarks.model`), ``sample_full`` (the full 1086 x 1308 grid, CUDA only),
``scaling`` (the sitsr sampler against domain and ensemble size), ``data``
(:mod:`benchmarks.data`) and, with ``--profile``, the top operators of each
model. The file is rewritten after every section, so an interrupted run keeps
what it finished; ``summary`` holds the headline ratios (sitsr / diffusers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from .data import bench_data

SECTIONS = ("train", "sample", "sample_full", "scaling", "data", "profile")
#: Headline targets: sitsr / diffusers throughput.
TARGETS = {"train": 1.5, "sample": 2.0}
#: 30 members x 20 steps on the full grid: seconds on one H100, and peak memory (GB) of the same job on a CPU.
FULL_GRID_SECONDS = 10.0
CPU_FULL_GRID_GB = 8.0


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 1024 ** 3, 1)
    except ImportError:
        return None


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    """Output of a git command in the current folder, or None (no git, or a copy of the tree without .git)."""
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def environment() -> dict:
    """Hardware, versions, commit, allocator, threads and the load average recorded with every result file."""
    import numpy
    import torch

    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    cuda = torch.cuda.is_available()
    preload = os.environ.get("LD_PRELOAD", "")
    return {"machine": platform.machine(), "processor": platform.processor(), "cpu_model": _cpu_model(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "mem_total_gb": _mem_total_gb(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "diffusers": _version("diffusers"),
            "cuda": torch.cuda.get_device_name(0) if cuda else None,
            "cuda_version": torch.version.cuda if cuda else None,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32 if cuda else None,
            "cudnn_benchmark": torch.backends.cudnn.benchmark if cuda else None,
            "allocator": "tcmalloc" if "tcmalloc" in preload else ("jemalloc" if "jemalloc" in preload else "glibc"),
            "commit": commit, "dirty": None if dirty is None else bool(dirty), "loadavg_start": list(os.getloadavg()),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def summary(result: dict) -> dict:
    """Headline ratios sitsr / diffusers (training samples/s, sampling members/s) against the targets."""
    out = {"targets": TARGETS}
    for key, section in (("train", "train"), ("sample", "sample"), ("sample_full", "sample_full")):
        target = TARGETS["train" if key == "train" else "sample"]
        for prec, ratio in (result.get(section) or {}).get("ratio", {}).items():
            out[f"{key}_{prec}"] = {"ratio": ratio, "target": target, "met": None if ratio is None else ratio >= target}
    full = result.get("sample_full") or {}
    for prec, cases in full.get("cases", {}).items():
        best = min((c["median_s"], name) for name, c in cases.items() if name.startswith("sitsr"))
        out[f"sample_full_{prec}_seconds"] = {"seconds": best[0], "case": best[1], "target": FULL_GRID_SECONDS,
                                              "met": best[0] <= FULL_GRID_SECONDS}
    job = (result.get("scaling") or {}).get("full_grid_job") or {}
    if "peak_rss_mb" in job.get("memory", {}):
        peak = job["memory"]["peak_rss_mb"] / 1024
        out["cpu_full_grid_peak_gb"] = {"peak_gb": round(peak, 2), "target": CPU_FULL_GRID_GB,
                                        "met": peak <= CPU_FULL_GRID_GB}
    return out


_ORDER = ("environment", "device", "sizes", "models", "summary", "section_seconds") + SECTIONS


def _write(result: dict, out: Path) -> None:
    """Write atomically, keys in a fixed order (headers and summary first)."""
    result = {k: result[k] for k in sorted(result, key=lambda k: _ORDER.index(k) if k in _ORDER else len(_ORDER))}
    from sitsr_core.fileio import atomic_output

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out, overwrite=True) as tmp:
        tmp.write_text(json.dumps(result, indent=2))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", required=True)
    p.add_argument("--region", default="arctic", help="grid for the data timings (default: the full 1086 x 1308 grid)")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the data timings")
    p.add_argument("--small", action="store_true", help="quick check sizes (CPU: 4 x 64x64 training, 4 members)")
    p.add_argument("--sections", default="train,sample,sample_full,scaling,data",
                   help=f"comma-separated subset of {','.join(SECTIONS)} (profile is off by default)")
    p.add_argument("--profile", action="store_true", help="also record the top operators (torch.profiler)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice, the number of cores)")
    p.add_argument("--full-models", help="models of sample_full (default: sitsr,sitsr_compile,diffusers)")
    p.add_argument("--full-tile", type=int, help="sitsr tile of sample_full (default 512; >= 1308: one tile)")
    p.add_argument("--full-tile-batch", type=int, help="sitsr crops per pass of sample_full (default 30)")
    a = p.parse_args(argv)

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)

    from . import model as bm

    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device")
    sections = [s for s in a.sections.split(",") if s]
    if a.profile and "profile" not in sections:
        sections.append("profile")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}")
    sizes = bm.SIZES["cpu-small" if (a.small and a.device == "cpu") else a.device]
    memory = not a.no_memory
    out = Path(a.out)
    result = {"environment": environment(), "device": a.device,
              "sizes": "cpu-small" if (a.small and a.device == "cpu") else a.device,
              "models": {"sitsr": "sitsr_core.networks.UNet (Config() defaults)",
                         "diffusers": bm.DIFFUSERS_CONFIG if bm.have_diffusers() else None}}
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the default, stated: fp32 is fp32 apart from cuDNN's TF32
    timings = {}
    for section in sections:  # in the order given: put the one that matters most first on a timed machine
        t0 = time.perf_counter()
        print(f"[bench] {section} ...", flush=True)
        if section == "train":
            result["train"] = bm.bench_train(a.device, memory=memory, **sizes["train"])
        elif section == "sample":
            result["sample"] = bm.bench_sample(a.device, memory=memory, precisions=bm.PRECISIONS
                                               if a.device == "cuda" else ("bf16_cl",), **sizes["sample"])
        elif section == "sample_full":
            if sizes["sample_full"] is None:
                continue
            from sitsr_core.grid import FULL_SHAPE

            full = dict(sizes["sample_full"])
            full.update({k: v for k, v in (("tile", a.full_tile), ("tile_batch", a.full_tile_batch),
                                           ("models", a.full_models and tuple(a.full_models.split(","))))
                         if v})
            result["sample_full"] = bm.bench_sample(a.device, size=tuple(FULL_SHAPE), memory=memory, **full)
        elif section == "scaling":
            result["scaling"] = bm.bench_scaling(a.device, memory=memory, **sizes["scaling"])
        elif section == "data":
            try:
                result["data"] = bench_data(a.region, a.repeats)
            except ImportError as exc:  # a GPU image without xarray/scipy/pandas: the model sections still count
                result["data"] = {"skipped": f"missing module: {exc.name or exc}"}
        elif section == "profile":
            kw = dict(batch=4, patch=64) if a.device == "cpu" else dict(batch=16, patch=256, chunk=10)
            result["profile"] = bm.bench_profile(a.device, **kw)
        timings[section] = round(time.perf_counter() - t0, 1)
        result["section_seconds"] = timings
        result["summary"] = summary(result)
        _write(result, out)
        print(f"[bench] {section} done in {timings[section]} s", flush=True)
    result["environment"]["loadavg_end"] = list(os.getloadavg())
    result["summary"] = summary(result)
    _write(result, out)
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
