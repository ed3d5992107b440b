"""Training data in memory against streamed from the store: peak RSS and patches/s against the number of days.

Stores of 30 .. 720 training days on a ``central``-sized window (384 x 384) are grown from a small store
(:func:`grown_store`: its days tiled in space and repeated in time, each repeat scaled by its own factor).
Each measurement runs in a fresh process (its peak RSS is its own):

- ``memory``: today's path before issue 17, all days read and normalised into memory
  (:func:`sitsr_core.train.read_days`, :func:`~sitsr_core.train.normalise_days`), batches sliced from them;
- ``stream``: :class:`sitsr_core.loader.StorePatches` through :func:`sitsr_core.loader.patch_loader`.

Both draw the same patches (:class:`sitsr_core.train.PatchSampler`, seed 0) and time the same number of
batches; ``setup_s`` is the time before the first batch (reading all days for ``memory``).

Usage::

    .venv/bin/python -m benchmarks.streaming --src data/tiny.zarr --work /tmp/streaming \\
        --days 30 180 720 --out benchmarks/results/streaming_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from sitsr_core import loader
from sitsr_core.config import apply_overrides, profile
from sitsr_core.dataset import norm_stats, open_dataset
from sitsr_core.fileio import atomic_output
from sitsr_core.train import PatchSampler, make_batch, normalise_days, read_days

#: Variables a grown store keeps (what :func:`sitsr_core.dataset.open_dataset` requires).
KEEP = ("sit", "sit_lr", "sic_lr", "divergence_lr", "shear_lr", "sit_interp", "sic")


def grown_store(src, dst, days: int, size: int = 384, time_chunk: int = 1, space_chunk: int | None = None) -> Path:
    """A store of ``days`` training days on a ``size`` x ``size`` window from the days of the store ``src``.

    The source window is tiled to ``size`` (cropped) and its days repeated, day ``i`` scaled by
    ``1 + 0.01 sin(i)`` and every value by ``1 + 0.001 N(0, 1)`` so that no two days are equal and the
    chunks compress about as little as real fields; every day is ``train``. Written chunk by chunk
    (dask), chunks of ``time_chunk`` days by ``space_chunk`` (default ``size``) squared cells, to ``dst``.
    """
    ds = xr.open_zarr(src, consolidated=True)
    T, H, W = ds["sit"].shape
    reps = (-(-size // H), -(-size // W))
    idx = np.arange(days) % T
    sc = space_chunk or size
    scale = da.from_array((1.0 + 0.01 * np.sin(np.arange(days))).astype(np.float32)[:, None, None],
                          chunks=(time_chunk, 1, 1))
    out = {}
    for name in KEEP:
        a = da.from_array(np.asarray(ds[name].values, dtype=np.float32), chunks=(1, H, W))[idx]
        a = da.tile(a, (1,) + reps)[:, :size, :size].rechunk((time_chunk, sc, sc))
        noise = da.random.default_rng(len(out)).standard_normal((days, size, size), chunks=(time_chunk, sc, sc),
                                                              dtype=np.float32)
        out[name] = (("time", "y", "x"), a * scale * (1 + 1e-3 * noise), ds[name].attrs)
    mask = np.tile(np.asarray(ds["mask"].values), reps)[:size, :size]
    new = xr.Dataset({k: xr.Variable(*v) for k, v in out.items()}, attrs=ds.attrs)
    new["mask"] = (("y", "x"), mask)
    new["split"] = ("time", np.full(days, "train", dtype="<U5"))
    new = new.assign_coords(time=pd.date_range("2000-01-01", periods=days, freq="D"))
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    new.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return dst


def _pss_mb(pid: int) -> float:
    """Proportional set size of a process (MiB): shared pages split between the processes sharing them."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:  # the process has ended
        return 0.0
    return next(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")) / 1024


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


class PeakMemory:
    """Peak over time of the summed PSS of this process and its children (the loader's workers), sampled."""

    def __init__(self, every: float = 0.02):
        self.every, self.peak_mb = every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pid = os.getpid()
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, _pss_mb(pid) + sum(_pss_mb(c) for c in _children(pid)))
            self._stop.wait(self.every)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _vm_hwm_mb() -> float:
    """This process's own peak RSS (``VmHWM``; unlike ``ru_maxrss`` it is not inherited across ``exec``)."""
    text = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in text.splitlines() if line.startswith("VmHWM:")) / 1024


def measure(path: str, store, batches: int, batch: int, patch: int, workers: int) -> dict:
    """One measurement in this process: ``{"setup_s", "patches_per_s", "peak_pss_mb", "peak_rss_main_mb"}``.

    ``peak_pss_mb``: sampled peak of the PSS summed over this process and its workers (pages shared after
    the fork are counted once); ``peak_rss_main_mb``: this process's own high-water mark.
    """
    with PeakMemory() as mem:
        res = _measure(path, store, batches, batch, patch, workers)
    return {**res, "peak_pss_mb": mem.peak_mb, "peak_rss_main_mb": _vm_hwm_mb()}


def _measure(path: str, store, batches: int, batch: int, patch: int, workers: int) -> dict:
    cfg = apply_overrides(profile("quick"), [f"data.patch={patch}"])
    t0 = time.perf_counter()
    ds = open_dataset(store)
    stats = norm_stats(ds)
    if path == "memory":
        data = normalise_days(read_days(ds, "train", cfg), cfg, stats)
        sampler = PatchSampler(data["ctx"].shape[0], data["mask"], patch, cfg.data.max_land_fraction)
        rng = np.random.default_rng(0)
        draws = [sampler.draw(rng, batch) for _ in range(batches)]
        it = (make_batch(data, d, patch) for d in draws)
    else:
        patches = loader.StorePatches(store, "train", cfg, stats, patch)
        sampler = PatchSampler(patches.n_days, patches.mask, patch, cfg.data.max_land_fraction)
        batch_sampler = loader.DrawBatches(sampler, np.random.default_rng(0), batch, batches)
        it = (b[1:] for b in loader.patch_loader(patches, batch_sampler, workers=workers))
    first = None
    n = 0
    for ctx, _ in it:
        if first is None:
            first = time.perf_counter()
        n += ctx.shape[0]
    end = time.perf_counter()
    return {"setup_s": first - t0, "patches_per_s": (n - batch) / max(end - first, 1e-9)}


def run(src, work, days: list[int], out, batches: int = 100, batch: int = 16, patch: int = 64,
        workers: list[int] = (0, 2), chunks: list[str] = ("1:384", "12:384", "1:128"), size: int = 384) -> dict:
    """All measurements (one subprocess each); the JSON written to ``out`` (temp name, then renamed).

    ``chunks``: store layouts ``"DAYS:CELLS"`` (days per chunk, chunk side); the in-memory path is measured
    on the first one only (its layout does not matter once the days are in memory).
    """
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for layout in chunks:
        tc, sc = (int(v) for v in layout.split(":"))
        for n in days:
            store = work / (f"grown_{n}d_c{tc}.zarr" if sc == size else f"grown_{n}d_c{tc}x{sc}.zarr")
            if not store.exists():
                grown_store(src, store, n, size=size, time_chunk=tc, space_chunk=sc)
            cases = ([("stream", w) for w in workers] + ([("memory", 0)] if layout == chunks[0] else []))
            for path, w in cases:
                cmd = [sys.executable, "-m", "benchmarks.streaming", "--one", path, "--store", str(store),
                       "--batches", str(batches), "--batch", str(batch), "--patch", str(patch), "--workers", str(w)]
                res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                row = {"path": path, "days": n, "time_chunk": tc, "space_chunk": sc, "workers": w, **res}
                print(json.dumps(row), flush=True)
                rows.append(row)
    result = {"what": "peak RSS and patches/s of training batches against the number of days (issue 17 item 4)",
              "window": [size, size], "batch": batch, "patch": patch, "batches": batches,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared)",
              "command": " ".join(["python -m benchmarks.streaming", *sys.argv[1:]]), "rows": rows}
    with atomic_output(out, overwrite=True) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", help="small dataset store the grown stores are made from")
    ap.add_argument("--work", default="/tmp/sitsr_streaming", help="folder of the grown stores")
    ap.add_argument("--days", type=int, nargs="+", default=[30, 180, 720])
    ap.add_argument("--chunks", nargs="+", default=["1:384", "12:384", "1:128"],
                    help="store layouts DAYS:CELLS (days per chunk, chunk side)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--out", default="benchmarks/results/streaming_cpu.json")
    ap.add_argument("--one", choices=["memory", "stream"], help="(internal) one measurement, JSON on stdout")
    ap.add_argument("--store")
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=64)
    a = ap.parse_args(argv)
    if a.one:
        workers = a.workers[0] if isinstance(a.workers, list) else a.workers
        print(json.dumps(measure(a.one, a.store, a.batches, a.batch, a.patch, workers)))
        return
    run(a.src, a.work, a.days, a.out, batches=a.batches, batch=a.batch, patch=a.patch, workers=a.workers,
        chunks=a.chunks)


if __name__ == "__main__":
    main()
