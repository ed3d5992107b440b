"""Build helpers of the Jupyter Book (``book/``): the notebooks copied in, the performance page, the static site.

Not part of the ``sitsr_core`` library. ``_toc.yml`` (a glob over ``notebooks/``) and ``api.md`` (Sphinx autodoc)
are static sources; two things are prepared just before ``jupyter-book build`` (see ``book/book.mk``):

- the executed notebooks copied into ``book/notebooks/`` (links to notebooks not executed are dropped);
- ``performance.md`` from the benchmark results ``benchmarks/results/*.json``.

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

from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone
from matplotlib.ticker import NullFormatter

from sitsr_core.errors import SitsrInputError

#: Attributes that load or link a non-relative URL: http(s), protocol-relative, root-absolute or file.
_NON_RELATIVE = re.compile(
    r"""(?:\b(?:src|href|srcset|poster|data)\s*=\s*["']?|url\(\s*["']?)((?:https?:|file:|/)[^"')\s>]*)""", re.IGNORECASE
)
#: A Markdown link to a local notebook: [text](target.ipynb#anchor).
_NOTEBOOK_LINK = re.compile(r"\[([^\]]*)\]\(((?![a-z]+://)[^()\s#]+\.ipynb)(#[^()\s]*)?\)")


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` through a temporary name then rename it, leaving an identical file untouched."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return  # keep the mtime: Sphinx then skips rereading the page
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
        _write_text(dest / nb.name, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        copied.append(dest / nb.name)
    return copied


#: Display order of the benchmarked models (others follow in file order).
_MODELS = ("sitsr", "sitsr_compile", "diffusers")
#: Labels of the data-stage timings (``benchmarks/data.py``).
_DATA_STAGES = {"synth_day_s": "synthetic day (`synth_day`)", "constitute_day_s": "dataset day (`constitute_day`)",
                "box_filter_s": "box filter (`box_filter`)"}
#: The paragraph opening the performance page.
_PAGE_INTRO = (
    "{n} benchmark run{s} of `python -m benchmarks.run`, one section per file of `{source}` (method and sizes: "
    "`benchmarks/README.md`). The sitsr network is compared with a diffusers `UNet2DModel` of the same size; a "
    "speed-up (*vs diffusers*) is sitsr's throughput over the baseline's, higher is better. Times are medians of "
    "interleaved repeats with the interquartile range (IQR) in brackets. Peak memory is the peak RSS of a fresh "
    "process on a CPU and `torch.cuda.max_memory_allocated` on a GPU, followed by its growth over the memory held "
    "before the measured call. `bf16_cl`: bf16 autocast with channels_last tensors; `sitsr_compile`: sitsr "
    "through `torch.compile` (the baseline runs eagerly)."
)
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


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a Markdown table (nothing when there are no rows), followed by a blank line."""
    if not rows:
        return []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _side(size) -> str:
    """A domain size ``[H, W]`` as ``H×W``."""
    return "×".join(str(s) for s in size) if isinstance(size, list) and size else "–"


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


def _environment_line(result: dict) -> str:
    """One line: device, host, versions, commit, threads, allocator, load and start time of a run."""
    env = result.get("environment") or {}
    parts = []
    if env.get("cuda"):
        tf32 = {True: ", cuDNN TF32 on", False: ", cuDNN TF32 off"}.get(env.get("cudnn_allow_tf32"), "")
        version = f"CUDA {_md(env['cuda_version'])}" if env.get("cuda_version") else ""
        details = (version + tf32).removeprefix(", ")
        parts.append(_md(env["cuda"]) + (f" ({details})" if details else ""))
    host = ", ".join(p for p in (_md(env.get("cpu_model")), f"{env['cpus']} cores" if env.get("cpus") else "",
                                 f"{env['mem_total_gb']} GB" if env.get("mem_total_gb") else "") if p)
    if host:
        parts.append(("host " if env.get("cuda") else "") + host)
    parts += [f"{label} {_md(env[key])}" for key, label in (("torch", "torch"), ("diffusers", "diffusers"))
              if env.get(key)]
    if env.get("commit"):
        dirty = {True: " (uncommitted changes)", False: " (clean)"}.get(env.get("dirty"), "")
        parts.append(f"commit {_code(env['commit'])}{dirty}")
    if env.get("torch_threads"):
        n = env["torch_threads"]
        parts.append(f"{n} torch thread{'s' * (n != 1)}")
    if env.get("allocator"):
        parts.append(f"{_md(env['allocator'])} allocator")
    load = env.get("loadavg_start")
    if isinstance(load, list) and load and _is_number(load[0]):
        parts.append(f"load {load[0]:.1f} at start")
    if env.get("started"):
        parts.append("started " + _md(str(env["started"]).replace("T", " ")))
    if result.get("sizes"):
        parts.append(f"sizes {_code(result['sizes'])}")
    return "**Environment:** " + (" · ".join(parts) or "not recorded") + "."


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


def _headline(summary: dict, full: dict) -> list[str]:
    """The ``summary`` entries against their targets: speed-ups sitsr / diffusers, full-grid time and memory."""
    rows = [_headline_row(key, item, full) for key, item in summary.items()
            if isinstance(item, dict) and key != "targets"]
    table = _table(["measure", "value", "target", ""], [r for r in rows if r])
    return ["### Headline", "", *table] if table else []


def _cases(section: dict) -> list[tuple[str, dict, str, dict]]:
    """A section's timed cases as ``(precision, cases, model, case)``, models ordered as ``_MODELS`` first."""
    found = []
    for prec, cases in (section.get("cases") or {}).items():
        if isinstance(cases, dict):
            models = sorted(cases, key=lambda m: _MODELS.index(m) if m in _MODELS else len(_MODELS))
            found += [(prec, cases, m, cases[m]) for m in models if isinstance(cases[m], dict)]
    return found


def _peak(case: dict) -> str:
    """Peak memory of a case (MB; CUDA allocated or CPU RSS) and its growth over the baseline."""
    mem = case.get("memory") or {}
    peak = mem.get("peak_allocated_mb", mem.get("peak_rss_mb"))
    text = _num(peak, 3) if _is_number(peak) else "–"
    return text + (f" (+{_num(mem['peak_delta_mb'], 3)})" if _is_number(mem.get("peak_delta_mb")) else "")


def _speedup(cases: dict, model: str, rate: str) -> str:
    """Throughput of ``model`` over the diffusers baseline's (``rate``: the per-second key); empty without it."""
    if model == "diffusers":
        return "baseline"
    base, mine = (cases.get("diffusers") or {}).get(rate), cases[model].get(rate)
    return f"{mine / base:.2f}×" if _is_number(base) and base and _is_number(mine) else ""


def _training(section: dict, memory: str) -> list[str]:
    """Training throughput (samples/s, median and interquartile range), peak memory and speed-up."""
    rows = []
    for prec, cases, model, c in _cases(section):
        rate, med, q25, q75 = (c.get(k) for k in ("samples_per_s", "median_s", "q25_s", "q75_s"))
        batch = rate * med if _is_number(rate) and _is_number(med) else None  # samples per step
        low, high = (batch / q75, batch / q25) if batch and _is_number(q25) and _is_number(q75) and q25 else (None,) * 2
        rows.append([_code(prec), _code(model), _spread(rate, low, high), _peak(c),
                     _speedup(cases, model, "samples_per_s")])
    table = _table(["precision", "model", "samples/s (IQR)", memory, "vs diffusers"], rows)
    if not table:
        return []
    setup = []
    if section.get("batch") and section.get("patch"):
        setup.append(f"Batch {section['batch']} × {section['patch']}² per step")
    if section.get("step"):
        setup.append(_md(section["step"]))
    if section.get("repeats"):
        setup.append(f"{section.get('warmup', 0)} warm-up + {section['repeats']} timed steps")
    params = {m: p for m, p in (section.get("params") or {}).items() if _is_number(p)}
    if params:
        setup.append("parameters: " + ", ".join(f"{_code(m)} {p / 1e6:.2f} M" for m, p in params.items()))
    return ["### Training", "", *(["; ".join(setup) + ".", ""] if setup else []), *table]


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


def _sampling(section: dict, title: str, memory: str) -> list[str]:
    """Ensemble sampling: seconds (median, IQR), members/s, peak memory, tiling and speed-up per model."""
    rows = [[_code(prec), _code(model), _spread(c.get("median_s"), c.get("q25_s"), c.get("q75_s")),
             _num(c.get("members_per_s"), 3), _peak(c), _tiling(section, model),
             _speedup(cases, model, "members_per_s")] for prec, cases, model, c in _cases(section)]
    table = _table(["precision", "model", "seconds (IQR)", "members/s", memory, "tiling", "vs diffusers"], rows)
    if not table:
        return []
    setup = f"Domain {_side(section.get('size'))}"
    if section.get("members") and section.get("steps"):
        setup += f", {section['members']} members × {section['steps']} DDIM steps (eta 0)"
    if section.get("repeats"):
        setup += f", {section['repeats']} timed repeats"
    return [f"### {title}", "", setup + ".", "", *table]


def _scaling_rows(section: dict) -> list[tuple[str, dict]]:
    """The scaling cases with the sweep they belong to: domain, ensemble, then the full-grid job."""
    rows = [(sweep, r) for sweep in ("domain", "ensemble") for r in section.get(sweep) or [] if isinstance(r, dict)]
    job = section.get("full_grid_job")
    return rows + ([("full-grid job", job)] if isinstance(job, dict) else [])


def _scaling_points(section: dict) -> tuple[list[dict], list[dict]]:
    """The plottable cases of the domain sweep (size and cost known) and the ensemble sweep (members and time)."""
    domain = [r for r in section.get("domain") or [] if isinstance(r, dict) and isinstance(r.get("size"), list)
              and len(r["size"]) == 2 and all(_is_number(v) for v in r["size"])
              and _is_number(r.get("ns_per_pixel_member_step"))]
    ensemble = [r for r in section.get("ensemble") or [] if isinstance(r, dict)
                and _is_number(r.get("members")) and _is_number(r.get("seconds"))]
    return domain, ensemble


def _plot_scaling(domain: list[dict], ensemble: list[dict], path: Path) -> None:
    """Save the two scaling panels: ns per pixel-member-step vs domain pixels, seconds vs ensemble size.

    ``domain`` and ``ensemble`` are the cases of :func:`_scaling_points`.
    """
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


def _scaling(section: dict, book: Path, stem: str, memory: str) -> list[str]:
    """The scaling figure (``_generated/performance_<stem>.png``) and the table of all scaling cases."""
    rows = [[sweep, _side(r.get("size")), _num(r.get("members")), _num(r.get("steps")), _num(r.get("tiles")),
             _num(r.get("tile_pixel_overhead"), 3), _num(r.get("passes_per_step")),
             _num(r.get("padded_crops_per_step")), _num(r.get("seconds"), 3),
             _num(r.get("ns_per_pixel_member_step"), 3), _peak(r)] for sweep, r in _scaling_rows(section)]
    if not rows:
        return []
    tiling = section.get("tiling") or {}
    facts = [_code(section["precision"])] if section.get("precision") else []
    if tiling.get("tile"):
        facts.append(f"tiles {tiling['tile']}², overlap {tiling.get('overlap', 0)}")
    if tiling.get("tile_batch"):
        facts.append(f"{tiling['tile_batch']} crops per pass, padded")
    setup = "The sitsr sampler" + (f" ({', '.join(facts)})" if facts else "") + " against the domain and ensemble size."
    lines = ["### Scaling", "", setup, ""]
    domain, ensemble = _scaling_points(section)
    if domain or ensemble:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", stem)
        (book / "_generated").mkdir(exist_ok=True)
        _plot_scaling(domain, ensemble, book / "_generated" / f"performance_{slug}.png")
        lines += [f"```{{figure}} _generated/performance_{slug}.png", f":name: fig-performance-{slug}",
                  ":alt: sitsr sampler cost against domain size and ensemble size", "",
                  "Left: cost per pixel, member and step against the domain size (log scale), labelled with the "
                  "number of tiles. Right: seconds per ensemble against the number of members.",
                  "```", ""]
    header = ["sweep", "domain", "members", "steps", "tiles", "tile pixels / pixels", "passes/step",
              "padded crops/step", "seconds", "ns/(pixel·member·step)", memory]
    return lines + _table(header, rows)


def _data(section: dict) -> list[str]:
    """Data-stage timings (median ± standard deviation), or why the stage was skipped."""
    if section.get("skipped"):
        return ["### Data stage", "", f"Skipped: {_md(section['skipped'])}.", ""]
    rows = []
    for key, value in section.items():
        median, std = (value + [None, None])[:2] if isinstance(value, list) else (value, None)
        if key.endswith("_s") and _is_number(median):
            rows.append([_DATA_STAGES.get(key, _code(key)),
                         _num(median, 3) + (f" ± {_num(std, 2)}" if _is_number(std) else "")])
    table = _table(["stage (one day)", "seconds (median ± std)"], rows)
    where = f"Grid {_code(section['region'])}" + (f", {_side(section['shape'])}" if section.get("shape") else "") \
        if section.get("region") else ""
    return ["### Data stage", "", *([where + ".", ""] if where else []), *table] if table else []


def _run_section(name: str, result: dict, book: Path) -> list[str]:
    """The ``##`` section of one results file."""
    env = result.get("environment") or {}
    memory = "peak GPU memory, MB" if env.get("cuda") or result.get("device") == "cuda" else "peak RSS, MB"
    sections = {key: result.get(key) if isinstance(result.get(key), dict) else {}
                for key in ("summary", "train", "sample", "sample_full", "scaling", "data")}
    lines = [f"## {_run_title(name, result)}", "", _environment_line(result), ""]
    lines += _headline(sections["summary"], sections["sample_full"])
    lines += _training(sections["train"], memory)
    lines += _sampling(sections["sample"], "Sampling", memory)
    lines += _sampling(sections["sample_full"], "Full-grid sampling", memory)
    lines += _scaling(sections["scaling"], book, Path(name).stem, memory)
    lines += _data(sections["data"])
    return lines


def write_performance_page(book_dir: str | os.PathLike, results_dir: str | os.PathLike) -> int:
    """Write ``performance.md``: one section per benchmark run, with tables of its results and a scaling figure.

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
    book = Path(book_dir)
    runs = read_benchmarks(results_dir)
    source = "/".join(Path(results_dir).resolve().parts[-2:]) + "/*.json"  # e.g. benchmarks/results/*.json
    lines = ["# Performance", ""]
    if not runs:
        lines.append(f"No benchmark results yet: the benchmarks write them to `{source}`.")
        _write_text(book / "performance.md", "\n".join(lines) + "\n")
        return 0
    lines += [_PAGE_INTRO.format(n=len(runs), s="s" * (len(runs) != 1), source=source), ""]
    for name, result in runs.items():
        lines += _run_section(name, result, book)
    _write_text(book / "performance.md", "\n".join(lines).rstrip("\n") + "\n")
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
