"""Provenance: which code, settings and dataset made a result.

:func:`provenance` (package versions, git commit, config hash) is recorded in every run folder
(``provenance.json``), every ensemble file (global attributes) and every metrics JSON.
:func:`dataset_record` identifies a dataset store by what distinguishes one from another (grid
window, kernels, dates, splits, source files and a hash of its normalisation statistics, which
are computed from its data) so that ``evaluate`` can refuse to mix results of different datasets
and say what differs (:func:`differences`).

All values are strings, so that they fit netCDF attributes, JSON and CSV alike.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
from pathlib import Path

from . import __version__

#: Seconds allowed to each ``git`` call (a slow network file system must not stall a run).
GIT_TIMEOUT_S = 5


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _git(folder: Path, *args: str) -> str | None:
    """Output of ``git -C folder ARGS``, or None when git is missing, fails or times out."""
    try:
        res = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                             timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def git_state(package_dir: Path | None = None) -> tuple[str, str]:
    """``(commit, dirty)`` of the checkout holding the package; ``("unknown", "unknown")`` outside one.

    The package must sit at the top of the checkout (an installed copy inside some other
    repository, e.g. a virtual environment in a project folder, is not that repository's code).
    ``dirty`` is ``"yes"`` when tracked files differ from the commit, else ``"no"``.
    """
    package_dir = (package_dir or Path(__file__).resolve().parent).resolve()
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    commit = _git(package_dir, "rev-parse", "HEAD")
    if top is None or commit is None or Path(top).resolve() != package_dir.parent:
        return "unknown", "unknown"
    status = _git(package_dir, "status", "--porcelain", "--untracked-files=no")
    return commit, "unknown" if status is None else ("yes" if status else "no")


@functools.lru_cache(maxsize=1)
def code_versions() -> dict[str, str]:
    """Versions of python, torch, numpy, xarray and sitsr, and the git commit (computed once per process)."""
    import numpy
    import torch
    import xarray

    commit, dirty = git_state()
    return {"sitsr_version": __version__, "python_version": platform.python_version(),
            "torch_version": torch.__version__, "numpy_version": numpy.__version__,
            "xarray_version": xarray.__version__, "git_commit": commit, "git_dirty": dirty}


def provenance(cfg=None) -> dict[str, str]:
    """:func:`code_versions` plus ``config_hash`` (:meth:`Config.hash`) when ``cfg`` is given."""
    out = dict(code_versions())
    if cfg is not None:
        out["config_hash"] = cfg.hash()
    return out


def dataset_identity(ds) -> dict[str, str]:
    """What tells a dataset store (:func:`sitsr_core.dataset.open_dataset`) from another; not its path."""
    import pandas as pd

    times = pd.DatetimeIndex(ds["time"].values)
    a = ds.attrs
    return {"region": str(a.get("region")), "grid_window": str(a.get("grid_window")),
            "kernel_km": f"{float(a['kernel_km']):g}", "sic_kernel_km": f"{float(a['sic_kernel_km']):g}",
            "dates": f"{times[0]:%Y-%m-%d}..{times[-1]:%Y-%m-%d} ({len(times)} days)",
            "splits": str(a.get("splits")), "source": str(a.get("source")),
            "norm_stats": _short_hash(str(a["norm_stats"])),
            # how the LR context was observed (sitsr_core.observe; stores made before it: the moving mean)
            "observation_operator": _short_hash(str(a.get("observation_operator", "moving-mean")))}


def fingerprint(identity: dict[str, str]) -> str:
    """Short hash of a :func:`dataset_identity`."""
    return _short_hash(json.dumps(identity, sort_keys=True))


def dataset_record(ds, path) -> dict:
    """``{"path", "fingerprint", "identity"}`` of an open dataset store."""
    identity = dataset_identity(ds)
    return {"path": str(Path(path).resolve()), "fingerprint": fingerprint(identity), "identity": identity}


def dataset_attrs(record: dict) -> dict[str, str]:
    """Attributes ``dataset_fingerprint`` and ``dataset_identity`` (JSON text) of a :func:`dataset_record`."""
    return {"dataset_fingerprint": record["fingerprint"],
            "dataset_identity": json.dumps(record["identity"], sort_keys=True)}


def differences(a: dict[str, str], b: dict[str, str]) -> str:
    """``"kernel_km 96 vs 120; norm_stats ... vs ..."``: the fields where two identities differ."""
    keys = sorted(set(a) | set(b))
    return "; ".join(f"{k} {a.get(k, '?')} vs {b.get(k, '?')}" for k in keys if a.get(k) != b.get(k))
