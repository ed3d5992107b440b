"""Content stamps for the Makefile: a stage reruns when what it computes from changes, not when a docstring does.

Each stamp file holds text (a resolved run configuration hash, a hash of code); it is rewritten only when that
text changes, so make's timestamps do the rest. Two kinds of stamp::

    'run:NAME=PROFILE [GROUP.KEY=VALUE ...]'  the hash of the resolved Config (profile + overrides) and of the
                                            code of sitsr_core.train (see code:), in STAMPS/run-NAME.config
    'code:NAME=MODULE [MODULE ...]'           a hash of the modules and every sitsr_core module they import,
                                            transitively, with docstrings and comments stripped (``ast.dump``),
                                            in STAMPS/code-NAME.hash

Usage (from the repository root)::

    python tools/stamps.py .stamps 'run:main=quick data.target=residual' 'code:evaluate=sitsr_core.evaluate'

Exit status 2 with a one-line message on a bad argument (unknown profile, malformed override).
"""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's sitsr_core, also when run as a script

from sitsr_core.config import apply_overrides, profile  # noqa: E402  (after the path set-up above)
from sitsr_core.errors import SitsrInputError  # noqa: E402
from sitsr_core.fileio import write_text_if_changed  # noqa: E402

PACKAGE = "sitsr_core"
#: Modules a training run imports whose code cannot change what it trains: run metadata (provenance, the version),
#: and the product readers / regridding / observation operator, which act through the dataset store (its own
#: stamp: ``code:dataset=sitsr_core.dataset``) or at inference only. Not followed by the ``run:`` stamps.
RUN_SKIP = (f"{PACKAGE}.provenance", f"{PACKAGE}.readers", f"{PACKAGE}.regrid", f"{PACKAGE}.observe", PACKAGE)


def module_path(module: str) -> Path:
    """The source file of a dotted ``sitsr_core`` module (a package's ``__init__.py``)."""
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def strip_docstrings(tree: ast.AST) -> ast.AST:
    """Drop the docstrings of the module, classes and functions of ``tree`` (in place)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def internal_imports(module: str, tree: ast.AST) -> set[str]:
    """The ``sitsr_core`` modules imported anywhere in ``tree`` (relative imports resolved against ``module``)."""
    package = module if module_path(module).name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            if target.split(".")[0] != PACKAGE:
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names if module_path(f"{target}.{a.name}").is_file()}
    return {m for m in found if module_path(m).is_file()}


def skipped(module: str, skip: tuple[str, ...]) -> bool:
    """True when ``module`` is one of ``skip`` or inside one of its packages (the bare package: itself only)."""
    return any(module == s or (s != PACKAGE and module.startswith(s + ".")) for s in skip)


def code_hash(modules: list[str], skip: tuple[str, ...] = ()) -> str:
    """SHA-256 (16 hex digits) of the docstring-free ASTs of ``modules`` and their internal imports.

    Imports of a module in ``skip`` (see :data:`RUN_SKIP`) are not followed.
    """
    todo, seen, digest = list(modules), set(), hashlib.sha256()
    while todo:
        module = todo.pop()
        if module in seen or skipped(module, skip):
            continue
        seen.add(module)
        path = module_path(module)
        if not path.is_file():
            raise SitsrInputError(f"{module}: no such module in {ROOT}")
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        todo += sorted(internal_imports(module, tree))
    for module in sorted(seen):  # a fixed order: the traversal order depends on the import lists
        tree = strip_docstrings(ast.parse(module_path(module).read_text(encoding="utf-8")))
        digest.update(f"{module}\n{ast.dump(tree, include_attributes=False)}\n".encode())
    return digest.hexdigest()[:16]


def stamp_text(spec: str) -> tuple[str, str]:
    """The file name and content of one ``run:`` or ``code:`` stamp specification."""
    kind, _, rest = spec.partition(":")
    name, _, value = rest.partition("=")
    items = value.split()
    if kind == "run" and name and items:
        cfg = apply_overrides(profile(items[0]), items[1:])
        return f"run-{name}.config", f"config {cfg.hash()}\ncode {code_hash([PACKAGE + '.train'], RUN_SKIP)}\n"
    if kind == "code" and name and items:
        return f"code-{name}.hash", f"code {code_hash(items)}\n"
    raise SitsrInputError(f"{spec!r}: expected 'run:NAME=PROFILE [GROUP.KEY=VALUE ...]' "
                          "or 'code:NAME=MODULE [MODULE ...]'")


def main(argv: list[str]) -> int:
    """``python tools/stamps.py FOLDER SPEC...``: compute every stamp first, then write those that changed."""
    if len(argv) < 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    try:
        stamps = [stamp_text(spec) for spec in argv[1:]]
    except SitsrInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in stamps:
        if write_text_if_changed(folder / name, text):
            print(f"stamp {folder / name} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
