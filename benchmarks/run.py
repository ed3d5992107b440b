"""Run the benchmarks and write one JSON file: ``python -m benchmarks.run --device cpu --out benchmarks/results/cpu.json``.

Each section records median and spread of repeated timings after warm-up, with
hardware, package versions and the git commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from pathlib import Path

from .data import bench_data


def environment() -> dict:
    """Hardware, versions and commit recorded with every result file."""
    import numpy
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "commit": commit}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", required=True)
    p.add_argument("--region", default="arctic", help="grid for the data timings (default: the full 1086 x 1308 grid)")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    result = {"environment": environment(), "device": a.device, "data": bench_data(a.region, a.repeats)}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
