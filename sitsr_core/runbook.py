"""Execute the numbered notebooks with papermill, using named parameter sets.

Parameter sets live in ``notebooks/parameters.yml``: ``book`` (what ``make book``
runs) and ``smoke`` (tiny inputs, used by ``make test``). Values may contain
``{region}`` and ``{profile}``, replaced by the region and training profile. Notebooks run with ``notebooks/`` as
their working directory, as in JupyterLab, so paths are relative to it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from .errors import SitsrInputError
from .fileio import atomic_output

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_parameters(name: str, param_set: str, region: str = "central", profile: str = "quick",
                        path: Path = NOTEBOOK_DIR / "parameters.yml") -> dict:
    """Parameters of notebook ``name`` (stem, e.g. ``01_dataset_constitution``) in a set."""
    sets = yaml.safe_load(path.read_text())
    if param_set not in sets:
        raise SitsrInputError(f"{path}: no parameter set {param_set!r} (have {sorted(sets)})")
    params = dict((sets[param_set] or {}).get(name) or {})
    return {k: v.format(region=region, profile=profile) if isinstance(v, str) else v for k, v in params.items()}


def show_one_parameters_cell(path: str | os.PathLike) -> bool:
    """Tag the default ``parameters`` cell ``remove-cell`` when papermill injected a ``# Parameters`` cell after it.

    A reader of the executed notebook (or of the book, where Jupyter Book drops ``remove-cell`` cells) then sees
    the values it ran with, once. The file is rewritten in place; True when a cell was tagged.
    """
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    tags = [cell.get("metadata", {}).get("tags", []) for cell in nb["cells"]]
    if not any("injected-parameters" in t for t in tags):
        return False
    for cell, cell_tags in zip(nb["cells"], tags):
        if "parameters" in cell_tags and "remove-cell" not in cell_tags:
            cell.setdefault("metadata", {})["tags"] = [*cell_tags, "remove-cell"]
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def execute(names: list[str] | None, out_dir: str | os.PathLike, param_set: str = "book", region: str = "central",
            profile: str = "quick", progress: bool = True) -> list[Path]:
    """Execute notebooks into ``out_dir`` (atomically: a failed run leaves no executed copy).

    Parameters
    ----------
    names : list of str, optional
        Notebook stems; default all numbered notebooks in order.
    out_dir : path
        Folder of the executed copies (created if missing).
    param_set : str
        ``book`` or ``smoke``.
    region, profile : str
        Substituted into ``{region}`` and ``{profile}`` in parameter values.

    Returns
    -------
    list of Path, the executed notebooks, each showing only papermill's injected parameters cell
    (:func:`show_one_parameters_cell`).
    """
    import papermill  # heavy (nbclient, jupyter_client): only when notebooks are executed

    if not (NOTEBOOK_DIR / "parameters.yml").is_file():
        raise SitsrInputError(f"sitsr notebooks runs the notebooks of a checkout of the project ({NOTEBOOK_DIR} "
                              "is missing: sitsr_core is installed without them); run it from a git clone, "
                              "where notebooks/ sits beside sitsr_core/")
    available = sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    names = names or available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise SitsrInputError(f"unknown notebook(s) {unknown}; available: {available}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for name in names:
        target = out_dir / f"{name}.ipynb"
        with atomic_output(target, overwrite=True) as tmp:
            papermill.execute_notebook(
                str(NOTEBOOK_DIR / f"{name}.ipynb"), str(tmp),
                parameters=notebook_parameters(name, param_set, region, profile), kernel_name="python3",
                cwd=str(NOTEBOOK_DIR), progress_bar=progress)
            show_one_parameters_cell(tmp)
        done.append(target)
    return done
