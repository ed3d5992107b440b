"""Interruptions: SIGKILL and SIGINT during training and downscaling, then ``--resume`` or a rerun.

Every scenario runs the real command in a subprocess and stops it at an exact point with the
testing hooks ``SITSR_TEST_KILL_AT_STEP`` (end of a training step) and
``SITSR_TEST_KILL_BEFORE_RENAME`` (in the middle of an atomic write: the temporary file is
complete, the rename has not happened). All subprocesses use one thread, so results are
bit-identical across processes; scenarios run two at a time (2-core machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from statecmp import assert_same_states

from sitsr_core import checkpoint
from sitsr_core.fileio import KILL_BEFORE_RENAME_ENV, atomic_output, remove_stale_temporaries
from sitsr_core.train import KILL_AT_STEP_ENV

ROOT = Path(__file__).resolve().parents[1]
#: smoke profile, 8 steps: metrics rows at 2, 4, 6, 8; validation at 4 and 8; checkpoints at 3, 6 and 8.
TRAIN_SETS = ("--set", "train.steps=8", "--set", "train.val_every=4")
RUN_FILES = ["checkpoint.pt", "config.json", "metrics.csv", "norm_stats.json", "provenance.json"]

#: scenario -> hooks of the successive interrupted runs (the first starts the run, the others resume
#: it); one last ``--resume`` without hook then runs to the end. 7 kill points.
KILLS = {
    "step 1, before any checkpoint": [{KILL_AT_STEP_ENV: "1"}],
    "writing the step-3 checkpoint": [{KILL_BEFORE_RENAME_ENV: "checkpoint.pt"}],
    "step 3, just after a checkpoint": [{KILL_AT_STEP_ENV: "3"}],
    "step 5, after a logged and validated step past the checkpoint": [{KILL_AT_STEP_ENV: "5"}],
    "step 7, after the last intermediate checkpoint": [{KILL_AT_STEP_ENV: "7"}],
    "step 4, then the resumed run while writing the step-6 checkpoint": [{KILL_AT_STEP_ENV: "4"},
                                                                         {KILL_BEFORE_RENAME_ENV: "checkpoint.pt"}],
}
SIGINT_AT = 5


def _env(hook: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITSR_TEST_")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(hook or {})}


def _run(args, hook=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, env=_env(hook), capture_output=True,
                          text=True, timeout=300)


def _train(data, run, hook=None, resume=False, module="sitsr_core.train"):
    args = [module] + (["train"] if module == "sitsr_core.cli" else [])
    args += ["--data", data, "--run", run, "--profile", "smoke", "--device", "cpu", "--no-progress", *TRAIN_SETS]
    return _run(args + (["--resume"] if resume else []), hook)


def _chain(data, run, hooks, module="sitsr_core.train") -> list[dict]:
    """Run, interrupting with each hook in turn, then resume to the end; what each process left."""
    out = []
    for i, hook in enumerate(hooks + [None]):
        res = _train(data, run, hook, resume=i > 0, module=module)
        ckpt = run / checkpoint.CHECKPOINT
        step = checkpoint.load_checkpoint(ckpt)["step"] if ckpt.exists() else None
        out.append({"hook": hook, "rc": res.returncode, "stderr": res.stderr, "files": sorted(os.listdir(run)),
                    "step": step, "metrics": [r["step"] for r in checkpoint.read_metrics(run / checkpoint.METRICS)]})
    return out


@pytest.fixture(scope="module")
def trainings(tiny_dataset, tmp_path_factory):
    """The uninterrupted reference, every kill scenario and the SIGINT scenario (two at a time)."""
    base = tmp_path_factory.mktemp("interrupt")
    with ThreadPoolExecutor(max_workers=2) as pool:
        ref = pool.submit(_chain, tiny_dataset, base / "reference", [])
        kills = {name: pool.submit(_chain, tiny_dataset, base / f"kill{i}", hooks)
                 for i, (name, hooks) in enumerate(KILLS.items())}
        sigint = pool.submit(_chain, tiny_dataset, base / "sigint", [{KILL_AT_STEP_ENV: f"{SIGINT_AT}:INT"}],
                             "sitsr_core.cli")
        return {"reference": (base / "reference", ref.result()), "sigint": (base / "sigint", sigint.result()),
                **{name: (base / f"kill{i}", f.result()) for i, (name, f) in enumerate(kills.items())}}


def assert_same_training(run: Path, ref: Path) -> None:
    """Bit-identical weights, EMA, optimiser and RNG states; the same metrics rows, once each."""
    a, b = (checkpoint.load_checkpoint(folder / checkpoint.CHECKPOINT) for folder in (run, ref))
    assert a["step"] == b["step"] == 8
    assert_same_states(a, b)
    assert torch.equal(a["rng"]["torch_global"], b["rng"]["torch_global"])
    ma, mb = checkpoint.read_metrics(run / checkpoint.METRICS), checkpoint.read_metrics(ref / checkpoint.METRICS)
    assert [r["step"] for r in ma] == [r["step"] for r in mb] == [2, 4, 6, 8]
    timing = "samples_per_s"
    assert [{k: v for k, v in r.items() if k != timing} for r in ma] == \
        [{k: v for k, v in r.items() if k != timing} for r in mb]


def test_reference_run(trainings):
    run, (only,) = trainings["reference"]
    assert only["rc"] == 0, only["stderr"][-2000:]
    assert only["files"] == RUN_FILES


@pytest.mark.parametrize("name", KILLS)
def test_sigkill_then_resume_is_bit_identical(trainings, name):
    run, chain = trainings[name]
    *killed, final = chain
    for k in killed:
        assert k["rc"] == -signal.SIGKILL, (k["hook"], k["stderr"][-2000:])
    if KILL_BEFORE_RENAME_ENV in killed[-1]["hook"]:  # died mid-write: a complete temporary, the old checkpoint
        assert any(f.startswith(".checkpoint.tmp-") for f in killed[-1]["files"]), killed[-1]["files"]
    assert final["rc"] == 0, final["stderr"][-2000:]
    assert final["files"] == RUN_FILES  # stale temporaries removed, nothing partial
    assert_same_training(run, trainings["reference"][0])
    sessions = [s["from_step"] for s in checkpoint.read_provenance(run)["sessions"]]
    assert sessions[0] == 0 and sessions == sorted(set(sessions)) and sessions[-1] == (killed[-1]["step"] or 0)


def test_kill_points_hit_where_intended(trainings):
    # the checkpoint each kill left: none before step 3, the old one when killed mid-write
    steps = {name: [k["step"] for k in trainings[name][1][:-1]] for name in KILLS}
    assert list(steps.values()) == [[None], [None], [3], [3], [6], [3, 3]]
    # rows logged after the checkpoint are on disk after the kill, and dropped on resume
    assert trainings["step 5, after a logged and validated step past the checkpoint"][1][0]["metrics"] == [2, 4]


def test_sigint_checkpoints_and_resumes_identically(trainings):
    run, (stopped, final) = trainings["sigint"]
    assert stopped["rc"] == 130, stopped["stderr"][-2000:]
    assert stopped["stderr"].strip().splitlines()[-1] == \
        f"sitsr train: {run}: interrupted at step {SIGINT_AT}; resume with --resume"
    assert "Traceback" not in stopped["stderr"]
    assert stopped["step"] == SIGINT_AT and stopped["metrics"] == [2, 4] and stopped["files"] == RUN_FILES
    assert final["rc"] == 0, final["stderr"][-2000:]
    assert_same_training(run, trainings["reference"][0])


# ----------------------------------------------------------------------------------- temporaries

def test_only_temporaries_of_dead_processes_of_this_host_are_removed(tmp_path):
    host, live = socket.gethostname(), os.getppid()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [f".metrics.tmp-{host}-{dead.pid}.csv", f".store.zarr.old-{host}-{dead.pid}"]
    kept = [f".metrics.tmp-{host}-{live}.csv", f".metrics.tmp-otherhost-{dead.pid}.csv", ".hidden", "metrics.csv",
            f".lost.zarr.old-{host}-{dead.pid}", "store.zarr"]  # lost.zarr is missing: its old copy is kept
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / f".store.tmp-{host}-{dead.pid}.zarr").mkdir()  # a zarr store being written
    with atomic_output(tmp_path / "metrics.csv", overwrite=True) as tmp:  # cleans its own output's first
        assert not (tmp_path / stale[0]).exists() and (tmp_path / stale[1]).exists()
        tmp.write_text("new")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([stale[1], f".store.tmp-{host}-{dead.pid}.zarr"])
    assert sorted(os.listdir(tmp_path)) == sorted(kept)
    assert (tmp_path / "metrics.csv").read_text() == "new"


# ------------------------------------------------------------------------------------------ downscale

DATES = ("20201211", "20201212", "20201213")  # the test split of the tiny dataset


def _downscale(run, data, out, hook=None):
    dates = [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in DATES]  # named: only the final evaluation reads the test split
    return _run(["sitsr_core.cli", "downscale", "--run", run, "--data", data, "--date", *dates, "--members", 2,
                 "--steps", 2, "--out", out, "--device", "cpu", "--no-progress"], hook)


def test_downscale_killed_mid_write_keeps_completed_dates_and_reruns_the_rest(smoke_run, tiny_dataset, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    with ThreadPoolExecutor(max_workers=2) as pool:
        reference = pool.submit(_downscale, smoke_run, tiny_dataset, ref)
        killed = _downscale(smoke_run, tiny_dataset, out, {KILL_BEFORE_RENAME_ENV: f"sit_hrai_{DATES[1]}.nc"})
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        left = sorted(os.listdir(out))
        assert left[1:] == [f"sit_hrai_{DATES[0]}.nc"] and left[0].startswith(f".sit_hrai_{DATES[1]}.tmp-"), left
        with xr.open_dataset(out / f"sit_hrai_{DATES[0]}.nc") as ds:  # the completed date is whole and valid
            assert ds.sizes["member"] == 2 and np.isfinite(ds["sit_ai"].values).all()
        first = (out / f"sit_hrai_{DATES[0]}.nc").stat().st_mtime_ns
        rerun = _downscale(smoke_run, tiny_dataset, out)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert reference.result().returncode == 0
    assert sorted(os.listdir(out)) == [f"sit_hrai_{d}.nc" for d in DATES]  # no temporary left
    assert (out / f"sit_hrai_{DATES[0]}.nc").stat().st_mtime_ns == first  # the completed date was skipped
    for d in DATES:  # same run, seed and settings -> bit-identical ensembles, whichever process made them
        with xr.open_dataset(out / f"sit_hrai_{d}.nc") as a, xr.open_dataset(ref / f"sit_hrai_{d}.nc") as b:
            np.testing.assert_array_equal(a["sit_ai"].values, b["sit_ai"].values)
            # the same attributes but for the command line in ``history`` (its --out folder differs)
            same = [k for k in a.attrs if k != "history"]
            assert set(a.attrs) == set(b.attrs) and all(a.attrs[k] == b.attrs[k] for k in same)
