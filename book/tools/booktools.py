"""Build helpers of the Jupyter Book (``book/``): the notebooks copied in, the performance page, the static site.

Not part of the ``sitsr_core`` library. ``_toc.yml`` (a glob over ``notebooks/``) and ``api.md`` (Sphinx autodoc)
are static sources; two things are prepared just before ``jupyter-book build`` (see ``book/book.mk``):

- the executed notebooks copied into ``book/notebooks/`` (links to notebooks not executed are dropped);
- ``performance.md`` from the benchmark results ``benchmarks/results/*.json``: its prose and layout are the
  template ``book/tools/performance.md.tmpl``, filled with table rows, values and a figure.

Command line (from the repository root)::

    python book/tools/booktools.py prepare --book book --executed notebooks/executed --results benchmarks/results
    python book/tools/booktools.py publish --html book/_build/html --site book/_build/site \\
        --archive book/_build/sitsr-book.tar.gz
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tarfile
from pathlib import Path
from string import Template

from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone
from matplotlib.ticker import NullFormatter

from sitsr_core.errors import SitsrInputError
from sitsr_core.fileio import write_text_if_changed

#: Attributes that load or link a non-relative URL: http(s), protocol-relative, root-absolute or file.
_NON_RELATIVE = re.compile(
    r"""(?:\b(?:src|href|srcset|poster|data)\s*=\s*["']?|url\(\s*["']?)((?:https?:|file:|/)[^"')\s>]*)""", re.IGNORECASE
)
#: A Markdown link to a local notebook: [text](target.ipynb#anchor).
_NOTEBOOK_LINK = re.compile(r"\[([^\]]*)\]\(((?![a-z]+://)[^()\s#]+\.ipynb)(#[^()\s]*)?\)")


def copy_notebooks(executed_dir: str | os.PathLike, book_dir: str | os.PathLike) -> list[Path]:
    """Copy the executed notebooks into ``book_dir/notebooks/``, replacing earlier copies.

    Markdown links to notebooks that are not (yet) executed, such as ``[02](02_training.ipynb)`` while
    only notebook 01 exists, are replaced by their text in the copies: the book has no broken link, and
    the build keeps treating other broken references as errors. Unchanged copies keep their mtime, so
    Sphinx does not reread them.

    Parameters
    ----------
    executed_dir : path-like
        Folder of notebooks executed by papermill (``*.ipynb``; may be empty).
    book_dir : path-like
        The book source folder (holding ``_config.yml``).

    Returns
    -------
    list of Path
        The copied notebooks, sorted by name (the numeric prefixes give the reading order).

    Raises
    ------
    SitsrInputError
        If ``executed_dir`` is not a folder or holds a file that is not a JSON notebook.
    """
    src = Path(executed_dir)
    if not src.is_dir():
        raise SitsrInputError(f"{src}: no such folder of executed notebooks (execute the notebooks first)")
    sources = sorted(src.glob("*.ipynb"))
    present = {nb.name for nb in sources}
    dest = Path(book_dir) / "notebooks"
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.ipynb"):
        if old.name not in present:
            old.unlink()

    def unlink_absent(match: re.Match) -> str:
        return match.group(0) if Path(match.group(2)).name in present else match.group(1)

    copied = []
    for nb in sources:
        try:
            data = json.loads(nb.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise SitsrInputError(f"{nb}: not a notebook ({err})") from err
        for cell in data.get("cells", []):
            if cell.get("cell_type") == "markdown":
                source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                cell["source"] = _NOTEBOOK_LINK.sub(unlink_absent, source)
        write_text_if_changed(dest / nb.name, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        copied.append(dest / nb.name)
    return copied


#: The performance page's prose and layout: ``string.Template`` blocks, each after a line ``@@ name``.
PAGE_TEMPLATE = Path(__file__).with_name("performance.md.tmpl")
#: Display order of the benchmarked models (others follow in file order).
_MODELS = ("sitsr", "sitsr_compile", "diffusers")
#: Labels of the data-stage timings (``benchmarks/data.py``).
_DATA_STAGES = {"synth_day_s": "synthetic day (`synth_day`)", "constitute_day_s": "dataset day (`constitute_day`)",
                "box_filter_s": "box filter (`box_filter`)"}
#: A ``summary`` speed-up key: section and precision (``sample_full_bf16_cl``).
_SUMMARY_RATIO = re.compile(r"(train|sample_full|sample)_(.+)")
#: Characters that Markdown (with MyST's dollarmath) would read as markup.
_MARKUP = re.compile(r"([\\`*_\[\]<>|$])")


def read_benchmarks(results_dir: str | os.PathLike) -> dict[str, dict]:
    """Read the results files ``results_dir/*.json`` written by ``python -m benchmarks.run``.

    Parameters
    ----------
    results_dir : path-like
        Folder of JSON files, each holding one benchmark run (an object with ``environment``,
        ``summary`` and the sections ``train``, ``sample``, ``sample_full``, ``scaling``, ``data``;
        any of them may be missing). A missing folder means no results.

    Returns
    -------
    dict
        The runs by file name (``"cpu.json"``), sorted by name.

    Raises
    ------
    SitsrInputError
        If a file is not valid JSON or not a JSON object.
    """
    runs = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise SitsrInputError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(data, dict):
            raise SitsrInputError(f"{path}: expected a JSON object (a run of python -m benchmarks.run)")
        runs[path.name] = data
    return runs


def _templates() -> dict[str, Template]:
    """The blocks of :data:`PAGE_TEMPLATE` by name (the text before the first block is its description)."""
    parts = re.split(r"^@@ (\w+)\n", PAGE_TEMPLATE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {name: Template(body.strip("\n")) for name, body in zip(parts[1::2], parts[2::2])}


def _facts(block: Template, sep: str = ", ", **fields) -> str:
    """The phrases (lines) of a ``*_facts`` block whose fields are all known (not ``None`` or empty), joined."""
    known = {k: v for k, v in fields.items() if not (v is None or v is False or v == "")}
    phrases = []
    for line in block.template.splitlines():
        try:
            phrases.append(Template(line).substitute(known))
        except KeyError:
            continue  # a field of this phrase is unknown
    return sep.join(phrases)


def _md(value) -> str:
    """A value as Markdown text (one line, markup characters escaped); ``None`` is empty."""
    return "" if value is None else _MARKUP.sub(r"\\\1", " ".join(str(value).split()))


def _code(value) -> str:
    """An identifier (model, precision) as inline code."""
    return "`" + str(value).replace("`", "") + "`"


def _is_number(value) -> bool:
    """True for a finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value, digits: int = 4) -> str:
    """A number as text: ``digits`` significant digits, whole with separators from ``10**digits`` on; else a dash."""
    if not _is_number(value):
        return "–"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:#.{digits}g}".rstrip(".") if isinstance(value, float) else str(value)


def _spread(median, low, high, digits: int = 4) -> str:
    """``median (low–high)``, the range left out when unknown."""
    text = _num(median, digits)
    return f"{text} ({_num(low, digits)}–{_num(high, digits)})" if _is_number(low) and _is_number(high) else text


def _plural(n, word: str) -> str | None:
    """``n word`` with an ``s`` unless ``n`` is 1; ``None`` without ``n``."""
    return f"{n} {word}{'s' * (n != 1)}" if n else None


def _side(size) -> str:
    """A domain size ``[H, W]`` as ``H×W``."""
    return "×".join(str(s) for s in size) if isinstance(size, list) and size else "–"


def _rows(rows: list[list[str]]) -> str:
    """The rows of a Markdown table (its header is in the template)."""
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _run_title(name: str, result: dict) -> str:
    """Section title of a run: the GPU, else the CPU model and cores, then the file name."""
    env = result.get("environment") or {}
    if env.get("cuda"):
        device = env["cuda"]
    elif env.get("cpu_model"):
        device = env["cpu_model"] + (f", {env['cpus']} cores" if env.get("cpus") else "")
    else:
        device = result.get("device") or "unknown device"
    return f"{_md(device)} ({_md(name)})"


def _environment(t: dict[str, Template], result: dict) -> str:
    """Device, host, versions, commit, threads, allocator, load and start time of a run, joined by dots."""
    env = result.get("environment") or {}
    gpu = ", ".join(p for p in (env.get("cuda_version") and f"CUDA {_md(env['cuda_version'])}",
                                {True: "cuDNN TF32 on", False: "cuDNN TF32 off"}.get(env.get("cudnn_allow_tf32"))) if p)
    host = ", ".join(p for p in (_md(env.get("cpu_model")), _plural(env.get("cpus"), "core"),
                                 env.get("mem_total_gb") and f"{env['mem_total_gb']} GB") if p)
    dirty = {True: " (uncommitted changes)", False: " (clean)"}.get(env.get("dirty"), "")
    load = env.get("loadavg_start")
    return _facts(t["environment_facts"], " · ",
                  gpu=env.get("cuda") and _md(env["cuda"]) + (f" ({gpu})" if gpu else ""),
                  host=host and ("host " if env.get("cuda") else "") + host,
                  torch=_md(env.get("torch")), diffusers=_md(env.get("diffusers")),
                  commit=env.get("commit") and _code(env["commit"]) + dirty,
                  threads=_plural(env.get("torch_threads"), "torch thread"), allocator=_md(env.get("allocator")),
                  load=f"{load[0]:.1f}" if isinstance(load, list) and load and _is_number(load[0]) else None,
                  started=_md(str(env.get("started") or "").replace("T", " ")),
                  sizes=result.get("sizes") and _code(result["sizes"])) or "not recorded"


def _bound(op: str, target, unit: str) -> str:
    """A target as ``op target unit`` (``≥ 1.5×``, no line break), a dash when unknown."""
    return f"{op}\N{NO-BREAK SPACE}{target:g}{unit}" if _is_number(target) else "–"


def _headline_row(key: str, item: dict, full: dict) -> list[str] | None:
    """A row (measure, value, target, verdict) of one ``summary`` entry; ``None`` for unknown entries.

    ``full`` is the run's ``sample_full`` section, for the size of the full-grid ensemble.
    """
    verdict = {True: "met", False: "**missed**"}.get(item.get("met"), "n/a")
    target = item.get("target")
    if "ratio" in item:
        match = _SUMMARY_RATIO.fullmatch(key)
        kind, prec = match.groups() if match else (key, "")
        what = {"train": "training", "sample": "sampling", "sample_full": "full-grid sampling"}.get(kind, kind)
        value = f"{item['ratio']:.2f}×" if _is_number(item["ratio"]) else "n/a (no diffusers run)"
        return [f"{what} speed-up" + (f", {_code(prec)}" if prec else ""), value, _bound("≥", target, "×"), verdict]
    if "seconds" in item:
        prec = key.removeprefix("sample_full_").removesuffix("_seconds")
        size = f" ({full['members']} members × {full['steps']} steps)" if full.get("members") and full.get("steps") \
            else ""
        case = f", fastest sitsr ({_code(item['case'])})" if item.get("case") else ""
        return [f"full-grid ensemble{size}, {_code(prec)}{case}",
                f"{_num(item['seconds'], 3)} s", _bound("≤", target, "\N{NO-BREAK SPACE}s"), verdict]
    if "peak_gb" in item:
        return ["CPU peak memory, full-grid job", f"{_num(item['peak_gb'], 3)} GB",
                _bound("≤", target, "\N{NO-BREAK SPACE}GB"), verdict]
    return None


def _headline(t: dict[str, Template], summary: dict, full: dict) -> str:
    """The ``summary`` entries against their targets: speed-ups sitsr / diffusers, full-grid time and memory."""
    rows = [_headline_row(key, item, full) for key, item in summary.items()
            if isinstance(item, dict) and key != "targets"]
    rows = [r for r in rows if r]
    return t["headline"].substitute(rows=_rows(rows)) if rows else ""


def _peak(case: dict) -> str:
    """Peak memory of a case (MB; CUDA allocated or CPU RSS) and its growth over the baseline."""
    mem = case.get("memory") or {}
    text = _num(mem.get("peak_allocated_mb", mem.get("peak_rss_mb")), 3)
    return text + (f" (+{_num(mem['peak_delta_mb'], 3)})" if _is_number(mem.get("peak_delta_mb")) else "")


def _samples_per_s(case: dict) -> str:
    """Training samples/s with the range ``batch / q75 – batch / q25`` of the step times."""
    rate, med, q25, q75 = (case.get(k) for k in ("samples_per_s", "median_s", "q25_s", "q75_s"))
    batch = rate * med if _is_number(rate) and _is_number(med) else None  # samples per step
    low, high = (batch / q75, batch / q25) if batch and _is_number(q25) and _is_number(q75) and q25 else (None,) * 2
    return _spread(rate, low, high)


def _tiling(section: dict, model: str) -> str:
    """How a model covered the domain: sitsr's tiles, overlap and crops per pass, or the baseline's whole domain."""
    chunk = (section.get("chunk") or {}).get(model)
    if not model.startswith("sitsr"):
        return "whole domain" + (f", {chunk} members/pass" if chunk else "")
    tiling, size = section.get("tiling") or {}, section.get("size") or []
    tile = tiling.get("tile")
    if not _is_number(tile):
        return ""
    one = isinstance(size, list) and size and all(_is_number(s) for s in size) and tile >= max(size)
    parts = ["one tile" if one else f"{tile}² tiles, overlap {tiling.get('overlap', 0)}"]
    if tiling.get("tile_batch"):
        parts.append(f"{tiling['tile_batch']} crops/pass")
    if chunk:
        parts.append(f"{chunk} members/chunk")
    return ", ".join(parts)


def _speedup(cases: dict, model: str, rate: str) -> str:
    """Throughput of ``model`` over the diffusers baseline's (``rate``: the per-second key); empty without it."""
    if model == "diffusers":
        return "baseline"
    base, mine = (cases.get("diffusers") or {}).get(rate), cases[model].get(rate)
    return f"{mine / base:.2f}×" if _is_number(base) and base and _is_number(mine) else ""


def _case_rows(section: dict, cells, rate: str) -> list[list[str]]:
    """The rows of a training or sampling table: precision, model, ``cells(model, case)``, speed-up.

    One row per timed case, models in :data:`_MODELS` order first; ``rate`` is the per-second key
    whose ratio to the diffusers baseline's is the speed-up.
    """
    rows = []
    for prec, cases in (section.get("cases") or {}).items():
        if isinstance(cases, dict):
            models = sorted(cases, key=lambda m: _MODELS.index(m) if m in _MODELS else len(_MODELS))
            rows += [[_code(prec), _code(m), *cells(m, cases[m]), _speedup(cases, m, rate)]
                     for m in models if isinstance(cases[m], dict)]
    return rows


def _train(t: dict[str, Template], section: dict, memory: str) -> str:
    """Training: samples/s (median, IQR), peak memory and speed-up per precision and model."""
    rows = _case_rows(section, lambda m, c: [_samples_per_s(c), _peak(c)], "samples_per_s")
    params = ", ".join(f"{_code(m)} {p / 1e6:.2f} M" for m, p in (section.get("params") or {}).items()
                       if _is_number(p))
    facts = _facts(t["train_facts"], "; ", batch=section.get("batch"), patch=section.get("patch"),
                   step=_md(section.get("step")), warmup=section.get("warmup", 0), repeats=section.get("repeats"),
                   params=params)
    return t["train"].substitute(facts=facts and facts + ".", memory=memory, rows=_rows(rows)) if rows else ""


def _sample(t: dict[str, Template], section: dict, block: str, memory: str) -> str:
    """Ensemble sampling (``block``: ``sample`` or ``sample_full``): seconds, members/s, memory, tiling, speed-up."""
    rows = _case_rows(section, lambda m, c: [_spread(c.get("median_s"), c.get("q25_s"), c.get("q75_s")),
                                             _num(c.get("members_per_s"), 3), _peak(c), _tiling(section, m)],
                      "members_per_s")
    facts = _facts(t["sample_facts"], size=_side(section.get("size")), members=section.get("members"),
                   steps=section.get("steps"), repeats=section.get("repeats"))
    return t[block].substitute(facts=facts + ".", memory=memory, rows=_rows(rows)) if rows else ""


def _plot_scaling(section: dict, path: Path) -> bool:
    """Save the two scaling panels: ns per pixel-member-step vs domain pixels, seconds vs ensemble size.

    Only cases whose coordinates are known are plotted; with none, nothing is written and the result is False.
    """
    domain = [r for r in section.get("domain") or [] if isinstance(r, dict) and isinstance(r.get("size"), list)
              and len(r["size"]) == 2 and all(_is_number(v) for v in r["size"])
              and _is_number(r.get("ns_per_pixel_member_step"))]
    ensemble = [r for r in section.get("ensemble") or [] if isinstance(r, dict)
                and _is_number(r.get("members")) and _is_number(r.get("seconds"))]
    if not (domain or ensemble):
        return False
    path.parent.mkdir(exist_ok=True)
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    pixels = [r["size"][0] * r["size"][1] for r in domain]
    left.plot(pixels, [r["ns_per_pixel_member_step"] for r in domain], "o-", color="#2b6ca3")
    for i, (x, r) in enumerate(zip(pixels, domain)):
        tiles = r.get("tiles")
        label = _side(r["size"]) + (f"\n{tiles} tile{'s' * (tiles != 1)}" if _is_number(tiles) else "")
        below = i > 0 and x < 2 * pixels[i - 1]  # close to the previous point, whose label is above
        left.annotate(label, (x, r["ns_per_pixel_member_step"]), textcoords="offset points", fontsize=7,
                      xytext=(0, -9 if below else 9), ha="center", va="top" if below else "bottom")
    left.set_xscale("log")
    left.xaxis.set_minor_formatter(NullFormatter())
    left.set(xlabel="domain pixels", ylabel="ns per pixel · member · step",
             title=f"Domain size ({domain[0].get('members', '?')} members)" if domain else "Domain size")
    right.plot([r["members"] for r in ensemble], [r["seconds"] for r in ensemble], "o-", color="#c2571a")
    for r in ensemble:
        right.annotate(f"{_num(r['seconds'] / r['members'], 3)} s/member" if r["members"] else "",
                       (r["members"], r["seconds"]), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=7)
    right.set(xlabel="ensemble members", ylabel="seconds per ensemble",
              title=f"Ensemble size ({_side(ensemble[0].get('size'))})" if ensemble else "Ensemble size")
    for ax in (left, right):
        ax.margins(x=0.12)
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.2)  # room for the labels
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


#: The numbers of a scaling case in the table's columns (after sweep and domain): key and significant digits.
_SCALING_COLUMNS = (("members", 4), ("steps", 4), ("tiles", 4), ("tile_pixel_overhead", 3), ("passes_per_step", 4),
                    ("padded_crops_per_step", 4), ("seconds", 3), ("ns_per_pixel_member_step", 3))


def _scaling(t: dict[str, Template], section: dict, book: Path, stem: str, memory: str) -> str:
    """The scaling of the sitsr sampler: a figure (``_generated/performance_<stem>.png``) and a table of all cases."""
    cases = [(sweep, r) for sweep in ("domain", "ensemble") for r in section.get(sweep) or [] if isinstance(r, dict)]
    if isinstance(section.get("full_grid_job"), dict):
        cases.append(("full-grid job", section["full_grid_job"]))
    if not cases:
        return ""
    tiling = section.get("tiling") or {}
    facts = _facts(t["scaling_facts"], precision=section.get("precision") and _code(section["precision"]),
                   tile=tiling.get("tile"), overlap=tiling.get("overlap", 0), tile_batch=tiling.get("tile_batch"))
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", stem)
    plotted = _plot_scaling(section, book / "_generated" / f"performance_{slug}.png")
    figure = t["figure"].substitute(slug=slug) if plotted else ""
    rows = [[sweep, _side(r.get("size")), *(_num(r.get(key), digits) for key, digits in _SCALING_COLUMNS), _peak(r)]
            for sweep, r in cases]
    return t["scaling"].substitute(facts=facts and f" ({facts})", figure=figure, memory=memory, rows=_rows(rows))


def _data(t: dict[str, Template], section: dict) -> str:
    """Data-stage timings (median ± standard deviation), or why the stage was skipped."""
    if section.get("skipped"):
        return t["data_skipped"].substitute(reason=_md(section["skipped"]))
    rows = []
    for key, value in section.items():
        median, std = (value + [None, None])[:2] if isinstance(value, list) else (value, None)
        if key.endswith("_s") and _is_number(median):
            rows.append([_DATA_STAGES.get(key, _code(key)),
                         _num(median, 3) + (f" ± {_num(std, 2)}" if _is_number(std) else "")])
    facts = _facts(t["data_facts"], region=_code(section["region"]),
                   shape=section.get("shape") and _side(section["shape"])) if section.get("region") else ""
    return t["data"].substitute(facts=facts and facts + ".", rows=_rows(rows)) if rows else ""


def _run_section(t: dict[str, Template], name: str, result: dict, book: Path) -> str:
    """The ``##`` section of one results file."""
    env = result.get("environment") or {}
    memory = "peak GPU memory, MB" if env.get("cuda") or result.get("device") == "cuda" else "peak RSS, MB"
    s = {key: result.get(key) if isinstance(result.get(key), dict) else {}
         for key in ("summary", "train", "sample", "sample_full", "scaling", "data")}
    return t["run"].substitute(
        title=_run_title(name, result), environment=_environment(t, result),
        headline=_headline(t, s["summary"], s["sample_full"]), train=_train(t, s["train"], memory),
        sample=_sample(t, s["sample"], "sample", memory),
        sample_full=_sample(t, s["sample_full"], "sample_full", memory),
        scaling=_scaling(t, s["scaling"], book, Path(name).stem, memory), data=_data(t, s["data"]))


def write_performance_page(book_dir: str | os.PathLike, results_dir: str | os.PathLike) -> int:
    """Write ``performance.md`` from :data:`PAGE_TEMPLATE`: one section per benchmark run, tables and a figure.

    Each section holds the run's environment, the headline speed-ups and times against their
    targets (``summary``), training and sampling throughput and peak memory per precision and
    model, the scaling of the sitsr sampler (a figure ``_generated/performance_<stem>.png`` and a
    table) and the data-stage timings; sections or keys missing from a file are left out.

    Parameters
    ----------
    book_dir : path-like
        The book source folder; the figures go to its ``_generated/`` folder.
    results_dir : path-like
        Folder of benchmark results (see :func:`read_benchmarks`).

    Returns
    -------
    int
        The number of results files shown (0 writes a page saying there are no results yet).

    Raises
    ------
    SitsrInputError
        If a results file is not a JSON object.
    """
    book, t = Path(book_dir), _templates()
    runs = read_benchmarks(results_dir)
    source = "/".join(Path(results_dir).resolve().parts[-2:]) + "/*.json"  # e.g. benchmarks/results/*.json
    if runs:
        sections = "\n\n".join(_run_section(t, name, result, book) for name, result in runs.items())
        page = t["page"].substitute(runs=_plural(len(runs), "benchmark run"), source=source, sections=sections)
    else:
        page = t["no_results"].substitute(source=source)
    write_text_if_changed(book / "performance.md", re.sub(r"\n{3,}", "\n\n", page).strip("\n") + "\n")
    return len(runs)


def prepare(book_dir: str | os.PathLike, executed_dir: str | os.PathLike, results_dir: str | os.PathLike) -> dict:
    """Copy the notebooks and write the generated pages, ready for ``jupyter-book build``.

    Parameters
    ----------
    book_dir : path-like
        The book source folder.
    executed_dir : path-like
        Folder of executed notebooks (see :func:`copy_notebooks`).
    results_dir : path-like
        Folder of benchmark results (see :func:`read_benchmarks`).

    Returns
    -------
    dict
        ``notebooks`` (the copies, sorted by name) and ``benchmarks`` (number of results files shown).

    Raises
    ------
    SitsrInputError
        If ``book_dir`` has no ``_config.yml`` or ``executed_dir`` is not a folder.
    """
    if not (Path(book_dir) / "_config.yml").is_file():
        raise SitsrInputError(f"{book_dir}: not a book folder (no _config.yml)")
    return {"notebooks": copy_notebooks(executed_dir, book_dir),
            "benchmarks": write_performance_page(book_dir, results_dir)}


def non_relative_urls(html_dir: str | os.PathLike) -> list[str]:
    """URLs in the built HTML/CSS that are not relative: the book must work offline from any folder.

    Parameters
    ----------
    html_dir : path-like
        The built site (``book/_build/html``).

    Returns
    -------
    list of str
        ``"file: url"`` entries for every ``src``/``href``/``url()`` that is http(s), protocol-relative,
        root-absolute or ``file:``; empty when the site is self-contained. JavaScript sources are not
        scanned (their licence comments hold URLs that are never fetched).
    """
    root = Path(html_dir)
    hits = []
    for path in sorted(p for suffix in ("*.html", "*.css") for p in root.rglob(suffix)):
        text = path.read_text(encoding="utf-8", errors="replace")
        hits += [f"{path.relative_to(root).as_posix()}: {m.group(1)}" for m in _NON_RELATIVE.finditer(text)]
    return hits


def publish(html_dir: str | os.PathLike, site_dir: str | os.PathLike, archive: str | os.PathLike) -> Path:
    """Export the built book as a self-contained static site folder and a ``.tar.gz`` of it.

    Parameters
    ----------
    html_dir : path-like
        The built HTML (``book/_build/html``).
    site_dir : path-like
        Output folder, replaced; gets a ``.nojekyll`` so GitHub Pages serves ``_static/`` as is.
    archive : path-like
        Output ``.tar.gz``; its members live under ``sitsr-book/``.

    Returns
    -------
    Path
        The site folder.

    Raises
    ------
    SitsrInputError
        If ``html_dir`` holds no ``index.html`` or the site has non-relative URLs.
    """
    src, site = Path(html_dir), Path(site_dir)
    if not (src / "index.html").is_file():
        raise SitsrInputError(f"{src}: no index.html (build the book first)")
    bad = non_relative_urls(src)
    if bad:
        raise SitsrInputError(f"{src}: {len(bad)} non-relative URLs, first: {bad[0]}")
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(src, site, ignore=shutil.ignore_patterns(".buildinfo", "*.tmp"))
    (site / ".nojekyll").touch()
    tmp = Path(str(archive) + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(site, arcname="sitsr-book")
    os.replace(tmp, archive)
    return site


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (``python book/tools/booktools.py {prepare,publish}``).

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0, or 2 after printing a one-line input error.
    """
    p = argparse.ArgumentParser(prog="python book/tools/booktools.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pp = sub.add_parser("prepare", help="copy the executed notebooks and write performance.md")
    pp.add_argument("--book", default="book")
    pp.add_argument("--executed", default="notebooks/executed")
    pp.add_argument("--results", default="benchmarks/results")
    pb = sub.add_parser("publish", help="export the built HTML as a static site folder and a .tar.gz")
    pb.add_argument("--html", default="book/_build/html")
    pb.add_argument("--site", default="book/_build/site")
    pb.add_argument("--archive", default="book/_build/sitsr-book.tar.gz")
    a = p.parse_args(argv)
    try:
        if a.command == "prepare":
            out = prepare(a.book, a.executed, a.results)
            print(f"book: {len(out['notebooks'])} notebooks, {out['benchmarks']} benchmark results files")
        else:
            print(f"site: {publish(a.html, a.site, a.archive)} and {a.archive}")
    except SitsrInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
