"""Provenance: versions, git state (clean, dirty, outside a checkout), dataset identity and its differences."""

from __future__ import annotations

import subprocess

import xarray as xr

from sitsr_core import provenance
from sitsr_core.config import profile
from sitsr_core.dataset import open_dataset


def git(folder, *args):
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


def test_git_state_clean_dirty_and_outside_a_checkout(tmp_path):
    pkg = tmp_path / "repo" / "sitsr_core"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    assert provenance.git_state(pkg) == ("unknown", "unknown")  # not a checkout
    git(pkg.parent, "init", "-q")
    git(pkg.parent, "add", ".")
    git(pkg.parent, "commit", "-q", "-m", "x")
    commit, dirty = provenance.git_state(pkg)
    assert len(commit) == 40 and dirty == "no"
    (pkg / "__init__.py").write_text("x = 1\n")
    assert provenance.git_state(pkg) == (commit, "yes")
    # an installed copy inside some other repository (a venv in a project) is not that repository's code
    nested = pkg.parent / "venv" / "site-packages" / "sitsr_core"
    nested.mkdir(parents=True)
    assert provenance.git_state(nested) == ("unknown", "unknown")


def test_provenance_fields_are_strings():
    p = provenance.provenance(profile("smoke"))
    assert p["config_hash"] == profile("smoke").hash()
    assert set(p) == {"sitsr_version", "python_version", "torch_version", "numpy_version", "xarray_version",
                      "git_commit", "git_dirty", "config_hash"}
    assert all(isinstance(v, str) and v for v in p.values())
    assert "config_hash" not in provenance.provenance()


def test_dataset_identity_tells_datasets_apart(tiny_dataset, other_dataset):
    a = provenance.dataset_record(open_dataset(tiny_dataset), tiny_dataset)
    b = provenance.dataset_record(open_dataset(other_dataset), other_dataset)
    assert a["identity"]["dates"] == "2020-11-20..2020-12-13 (24 days)" == b["identity"]["dates"]
    assert a["fingerprint"] != b["fingerprint"]
    assert provenance.differences(b["identity"], a["identity"]).startswith("kernel_km 96 vs 120; norm_stats ")
    assert provenance.differences(a["identity"], a["identity"]) == ""
    # the identity does not depend on where the store lies or how it is opened
    assert provenance.dataset_identity(xr.open_zarr(tiny_dataset)) == a["identity"]
