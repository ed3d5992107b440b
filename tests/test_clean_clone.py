"""The repository is the whole project: samples with checksums, licence, citation, vendored assets, and
the fast test tier passing in a fresh clone with nothing beside it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import SAMPLE_SHA256, SAMPLES, sample_problems

import sitsr_core

try:
    import tomllib
except ImportError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "book" / "_vendor"
PREPRINT_DOI = "10.5194/egusphere-2026-2318"


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_imported_package_is_this_checkout():
    # In the clean-clone run below this is what proves the clone's own code is under test.
    assert Path(sitsr_core.__file__).resolve().is_relative_to(ROOT)


# ------------------------------------------------------------------------------------------------ samples

def test_samples_are_tracked_with_their_checksums_and_origin():
    assert sample_problems() == []
    on_disk = {p.name for p in SAMPLES.iterdir()} - {"README.md", "SHA256SUMS"}
    assert on_disk == set(SAMPLE_SHA256)
    tracked = set(git("ls-files", "data").split())
    assert {f"data/samples/{n}" for n in [*SAMPLE_SHA256, "README.md", "SHA256SUMS"]} <= tracked
    readme = (SAMPLES / "README.md").read_text()
    sums = dict(line.split()[::-1] for line in (SAMPLES / "SHA256SUMS").read_text().splitlines())
    for name, digest in SAMPLE_SHA256.items():
        assert sums[name] == digest and f"`{name}`" in readme and digest in readme
    for licence in ("Apache-2.0", "EUMETSAT", "CC BY 4.0"):
        assert licence in readme


def test_sample_check_names_missing_and_changed_files(tmp_path):
    for name in SAMPLE_SHA256:
        shutil.copyfile(SAMPLES / name, tmp_path / name)
    missing, changed, intact = list(SAMPLE_SHA256)
    (tmp_path / missing).unlink()
    data = bytearray((tmp_path / changed).read_bytes())
    data[-1] ^= 1
    (tmp_path / changed).write_bytes(bytes(data))
    problems = sample_problems(tmp_path)
    assert len(problems) == 2
    assert missing in problems[0] and "missing" in problems[0]
    assert changed in problems[1] and hashlib.sha256(bytes(data)).hexdigest() in problems[1]


def test_nothing_points_outside_the_repository():
    pattern = r"\.\./shared|shared/samples|/work/main|\.\./\.\./"
    hits = subprocess.run(["git", "grep", "-n", "-E", pattern, "--", ".", ":(exclude)book/_vendor",
                           ":(exclude)tests/test_clean_clone.py"],
                          cwd=ROOT, capture_output=True, text=True).stdout
    assert hits == ""


# ------------------------------------------------------------------------------------ licence, citation

def test_licence_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    licence = project["license"]
    licence = licence if isinstance(licence, str) else licence["text"]
    assert licence == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer to it


def test_citation_cff_is_valid_and_cites_the_preprint():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    # required keys of CFF 1.2.0 (https://github.com/citation-file-format/citation-file-format)
    assert cff["cff-version"] == "1.2.0"
    assert {"message", "title", "authors"} <= set(cff) and cff["authors"]
    assert all({"name"} & set(a) or {"family-names"} & set(a) for a in cff["authors"])
    assert str(cff["version"]) == sitsr_core.__version__ and cff["license"] == "Apache-2.0"  # pyproject reads it too
    (ref,) = [r for r in cff["references"] if r.get("doi") == PREPRINT_DOI]
    assert ref["authors"][0]["family-names"] == "Brajard"
    assert "conditional diffusion model" in ref["title"] and ref["type"] and ref["title"]


# ------------------------------------------------------------------------------------- vendored assets

def vendor_check(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(VENDOR / "fetch.py"), "--check", "--dest", str(folder)],
                          capture_output=True, text=True)


def test_vendored_assets_match_their_list():
    res = vendor_check(VENDOR)
    assert res.returncode == 0, res.stdout + res.stderr
    listed = re.findall(r"^\| `([^`]+)` \|", (VENDOR / "LICENSES.md").read_text(), flags=re.M)
    assert "mathjax/tex-mml-chtml.js" in listed and "widgets/embed-amd.js" in listed
    assert "widgets/require.js" in listed and len(listed) == len(set(listed))


def test_vendor_check_names_changed_missing_and_extra_files(tmp_path):
    copy = tmp_path / "_vendor"
    shutil.copytree(VENDOR, copy)
    with open(copy / "widgets" / "require.js", "ab") as f:
        f.write(b"\n")
    (copy / "mathjax" / "LICENSE").unlink()
    (copy / "widgets" / "stray.js").write_text("")
    res = vendor_check(copy)
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert any(line.startswith("widgets/require.js: sha256") for line in lines)
    assert "mathjax/LICENSE: missing" in lines
    assert any(line.startswith("widgets/stray.js: not in") for line in lines)
    assert len(lines) == 3


# ------------------------------------------------------------------------------------------ clean clone

@pytest.mark.slow
def test_fast_tier_passes_in_a_clean_clone(tmp_path):
    """``git clone`` (committed files only) into an empty folder, then the fast tier from inside it."""
    clone = tmp_path / "sitsr"
    git("clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone), cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sitsr"]  # nothing beside it
    venv_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    env.update(PYTHONPATH=str(clone), PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}")
    where = subprocess.run([sys.executable, "-c", "import sitsr_core; print(sitsr_core.__file__)"],
                           cwd=clone, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(clone.resolve()), where  # not the editable install
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not slow and not book",
                          "-p", "no:cacheprovider", "-x"], cwd=clone, env=env, capture_output=True, text=True,
                         timeout=1800)
    tail = (res.stdout + res.stderr)[-4000:]
    assert res.returncode == 0, tail
    assert re.search(r"\b\d+ passed\b", tail), tail
