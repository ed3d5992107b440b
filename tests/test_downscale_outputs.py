"""What an ensemble file says about itself, and date sharding over ranks (torchrun, one device per rank)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sitsr_core import downscale

ROOT = Path(__file__).resolve().parents[1]


def test_output_attributes_are_cf_and_carry_no_absolute_path(smoke_run, tiny_dataset, tmp_path):
    out = downscale.downscale(smoke_run, tiny_dataset, "2020-12-01", members=3, steps=2, seed=1,
                              out_path=tmp_path / "o.nc", progress=False)
    with xr.open_dataset(out) as ds:
        assert ds["member"].attrs["standard_name"] == "realization"
        assert ds["sit_ai_mean"].attrs["cell_methods"] == "realization: mean"
        assert ds["sit_ai_std"].attrs["cell_methods"] == "realization: standard_deviation"
        for key in ("history", "institution", "source"):
            assert ds.attrs[key], key
        assert "sitsr" in ds.attrs["history"] and ds.attrs["run"] == Path(smoke_run).name
        machine = {str(tmp_path), str(Path(smoke_run).parent), str(Path(tiny_dataset).parent), str(Path.home()),
                   os.getcwd()}
        for key, value in ds.attrs.items():
            for place in machine:
                assert place not in str(value), f"global attribute {key} names {place}"
        for name, var in ds.variables.items():
            for key, value in var.attrs.items():
                assert str(tmp_path) not in str(value), f"{name}.{key}"


@pytest.mark.parametrize("device, local_rank, cuda, expected", [
    (None, None, False, "cpu"),
    ("cpu", "1", False, "cpu"),
    (None, None, True, "cuda"),
    ("cuda:1", "0", False, "cuda:1"),  # an explicit index is kept
    ("cuda", "3", False, "cuda:3"),   # torchrun: rank 3 of the node on GPU 3, not GPU 0
])
def test_each_rank_gets_its_own_device(device, local_rank, cuda, expected):
    assert downscale.rank_device(device, local_rank=local_rank, cuda_available=cuda) == expected


def test_torchrun_two_ranks_write_what_one_process_writes(smoke_run, tiny_dataset, tmp_path):
    """``torchrun --nproc_per_node 2 -m sitsr_core.downscale``: dates sharded over 2 CPU ranks (gloo barrier);
    every file equals the single-process run's, bit for bit."""
    dates = ["2020-12-01", "2020-12-02", "2020-12-11"]
    args = ["--run-dir", str(smoke_run), "--data", str(tiny_dataset), "--date", *dates, "--members", "2", "--steps",
            "2",
            "--device", "cpu", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    one = subprocess.run([sys.executable, "-m", "sitsr_core.downscale", *args, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "sitsr_core.downscale", *args, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "one").glob("sit_hrai_*.nc"))
    assert names == [downscale.output_name(d) for d in dates]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == names  # nothing else (no temporaries)
    for name in names:
        with xr.open_dataset(tmp_path / "one" / name) as a, xr.open_dataset(tmp_path / "two" / name) as b:
            np.testing.assert_array_equal(a["sit_ai"].values, b["sit_ai"].values)
