"""The Jupyter Book: generated pages, offline build, and rendering in headless chromium.

The browser test (marker ``book``) builds a temporary copy of ``book/`` with ``book/book.mk`` from the
executed notebooks in ``$SITSR_EXECUTED`` (default ``notebooks/executed``; ``make test`` executes the
notebooks with smoke parameters first), then opens the index and every page in headless chromium
without network access and checks what a reader would see. Screenshots go to
``book/_build/screenshots/``. Needs Debian's chromium: ``apt-get install -y chromium``.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import booktools  # book/tools/ (pytest's pythonpath, pyproject.toml)
import pytest

from sitsr_core.errors import SitsrInputError

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Networking off: no background services, and every host name resolves to nothing.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars"]
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
# myst-nb renders these before any image of the same output.
RICHER_MIMES = ("application/vnd.jupyter.widget-view+json", "application/javascript", "text/html")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


# ----------------------------------------------------------------------------- generated pages (fast)

def _book_skeleton(tmp_path: Path) -> Path:
    book = tmp_path / "book"
    book.mkdir()
    (book / "_config.yml").write_text("title: t\n")
    return book


def test_prepare_copies_present_notebooks_and_drops_dead_links(tmp_path):
    book = _book_skeleton(tmp_path)
    executed = tmp_path / "executed"
    executed.mkdir()
    links = "Next: [training](02_training.ipynb), [spread](03_ensemble_spread_reliability.ipynb#top), [w](https://x/a.ipynb)"
    for name in ("03_ensemble_spread_reliability", "01_dataset_constitution"):
        nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": [links[:30], links[30:]]}], "metadata": {},
              "nbformat": 4, "nbformat_minor": 5}
        (executed / f"{name}.ipynb").write_text(json.dumps(nb))
    (book / "notebooks").mkdir()
    (book / "notebooks" / "00_stale.ipynb").write_text("{}")  # left from an earlier build
    out = booktools.prepare(book, executed, tmp_path / "no_results")
    names = ["01_dataset_constitution.ipynb", "03_ensemble_spread_reliability.ipynb"]
    assert [p.name for p in out["notebooks"]] == names
    assert sorted(p.name for p in (book / "notebooks").iterdir()) == names
    # the absent notebook 02 loses its link, the present 03 and the web link keep theirs
    copied = json.loads((book / "notebooks" / "01_dataset_constitution.ipynb").read_text())
    assert copied["cells"][0]["source"] == ("Next: training, [spread](03_ensemble_spread_reliability.ipynb#top), "
                                            "[w](https://x/a.ipynb)")
    assert out["benchmarks"] == 0 and "No benchmark results yet" in (book / "performance.md").read_text()


def test_static_sources_list_the_notebooks_and_every_public_module():
    """_toc.yml globs the notebooks; api.md documents exactly the public modules of the installed package."""
    toc = (ROOT / "book" / "_toc.yml").read_text()
    assert "glob: notebooks/*" in toc and toc.index("notebooks/*") < toc.index("file: performance")
    spec = importlib.util.find_spec("sitsr_core")
    public = {m.name for m in pkgutil.walk_packages(spec.submodule_search_locations, prefix="sitsr_core.")
              if not any(part.startswith("_") for part in m.name.split("."))}
    documented = re.findall(r"^\.\. automodule:: (\S+)$", (ROOT / "book" / "api.md").read_text(), re.M)
    assert len(documented) == len(set(documented))
    assert set(documented) == public, f"book/api.md: add {sorted(public - set(documented))}, " \
                                      f"remove {sorted(set(documented) - public)}"
    assert not (ROOT / "sitsr_core" / "booktools.py").exists()  # the book builder is not part of the library


def test_prepare_rejects_missing_folders(tmp_path):
    book = _book_skeleton(tmp_path)
    with pytest.raises(SitsrInputError, match="executed notebooks"):
        booktools.prepare(book, tmp_path / "missing", tmp_path)
    with pytest.raises(SitsrInputError, match="_config.yml"):
        booktools.prepare(tmp_path / "missing", tmp_path, tmp_path)


def _timing(median: float, **extra) -> dict:
    return {"median_s": median, "q25_s": median * 0.9, "q75_s": median * 1.25, "n": 5, **extra}


def _scaling_case(side: int, members: int, seconds: float, memory: dict) -> dict:
    return {"size": [side, side], "members": members, "steps": 2, "tiles": 1, "tile_pixel_overhead": 1.0,
            "passes_per_step": 1, "crops_per_step": members, "padded_crops_per_step": 0, "seconds": seconds,
            "ns_per_pixel_member_step": 1e9 * seconds / (side * side * members * 2), "memory": memory}


def _cpu_run() -> dict:
    """A CPU run as benchmarks.run writes it (small numbers, every section)."""
    rss = {"peak_rss_mb": 585.2, "baseline_rss_mb": 312.6, "peak_delta_mb": 272.5}
    return {
        "environment": {"cpu_model": "AMD EPYC", "cpus": 2, "torch_threads": 1, "torch": "2.13.0+cpu",
                        "diffusers": "0.42.1", "cuda": None, "commit": "f309245", "dirty": True,
                        "allocator": "glibc", "loadavg_start": [2.28, 2.9, 3.4], "started": "2026-11-27T17:30:43+0000"},
        "device": "cpu", "sizes": "cpu-small",
        "summary": {"targets": {"train": 1.5, "sample": 2.0},
                    "train_fp32": {"ratio": 1.3057, "target": 1.5, "met": False},
                    "sample_bf16_cl": {"ratio": 2.5, "target": 2.0, "met": True},
                    "cpu_full_grid_peak_gb": {"peak_gb": 5.25, "target": 8.0, "met": True}},
        "train": {"batch": 4, "patch": 64, "warmup": 3, "repeats": 5,
                  "params": {"sitsr": 3907393, "diffusers": 3958849},
                  "cases": {"fp32": {"sitsr": _timing(0.4, samples_per_s=10.0, memory=rss),
                                     "diffusers": _timing(0.5, samples_per_s=8.0, memory=rss)}},
                  "ratio": {"fp32": 1.25}},
        "sample": {"size": [256, 256], "members": 4, "steps": 20, "chunk": {"sitsr": 4, "diffusers": 4},
                   "tiling": {"tile": 256, "overlap": 0, "tile_batch": None}, "repeats": 2,
                   "cases": {"bf16_cl": {"diffusers": _timing(33.0, members_per_s=0.12, memory=rss),
                                         "sitsr": _timing(23.8, members_per_s=0.168, memory=rss)}}},
        "scaling": {"precision": "bf16_cl", "tiling": {"tile": 128, "overlap": 32, "tile_batch": 10}, "steps": 2,
                    "domain": [_scaling_case(s, 2, s / 100, rss) for s in (128, 256, 512)],
                    "ensemble": [_scaling_case(128, m, 1.4 * max(1, m / 10), rss) for m in (1, 10, 30)],
                    "full_grid_job": {**_scaling_case(1086, 30, 55.0, {"peak_rss_mb": 5376.0}), "size": [1086, 1308]}},
        "data": {"region": "arctic", "shape": [1086, 1308], "synth_day_s": [0.83, 0.053],
                 "constitute_day_s": [0.31, 0.0018], "box_filter_s": [0.06, 0.0009]},
    }


def _cuda_run() -> dict:
    """An H100 run: GPU memory keys, sitsr_compile in sample_full, the data stage skipped."""
    gpu = {"peak_allocated_mb": 13838.4, "baseline_allocated_mb": 308.6, "peak_delta_mb": 13529.8}
    full = {"size": [1086, 1308], "members": 30, "steps": 20,
            "chunk": {"sitsr": 30, "sitsr_compile": 30, "diffusers": 10},
            "tiling": {"tile": 512, "overlap": 64, "tile_batch": 30}, "repeats": 2,
            "cases": {"bf16_cl": {"sitsr": _timing(31.0, members_per_s=0.967, memory=gpu),
                                  "sitsr_compile": _timing(10.66, members_per_s=2.8, memory=gpu),
                                  "diffusers": _timing(43.0, members_per_s=0.7, memory=gpu)}}}
    return {
        "environment": {"cpu_model": "Intel(R) Xeon(R) Processor", "cpus": 16, "torch_threads": 16,
                        "torch": "2.11.0+cu130", "diffusers": "0.42.1", "cuda": "NVIDIA H100 80GB HBM3",
                        "cuda_version": "13.0", "cudnn_allow_tf32": True, "commit": "bcb67c0", "dirty": False,
                        "started": "2026-11-27T19:07:58+0000"},
        "device": "cuda", "sizes": "cuda",
        "summary": {"sample_full_bf16_cl": {"ratio": 1.385, "target": 2.0, "met": False},
                    "sample_full_bf16_cl_seconds": {"seconds": 10.66, "case": "sitsr_compile", "target": 10.0,
                                                    "met": False}},
        "sample_full": full,
        "scaling": {"precision": "bf16_cl", "tiling": {"tile": 512, "overlap": 64, "tile_batch": 30},
                    "domain": [_scaling_case(s, 10, s / 500, gpu) for s in (128, 256)], "ensemble": []},
        "data": {"skipped": "missing module: shapely"},
    }


def _results(tmp_path: Path, runs: dict) -> Path:
    results = tmp_path / "results"
    results.mkdir()
    for name, run in runs.items():
        (results / name).write_text(run if isinstance(run, str) else json.dumps(run))
    return results


def test_performance_page_cpu_and_cuda_runs(tmp_path):
    book = _book_skeleton(tmp_path)
    results = _results(tmp_path, {"cpu.json": _cpu_run(), "cuda.json": _cuda_run()})
    assert booktools.write_performance_page(book, results) == 2
    page = (book / "performance.md").read_text()
    cpu, cuda = page.split("\n## AMD EPYC, 2 cores (cpu.json)\n")[1].split("\n## NVIDIA H100 80GB HBM3 (cuda.json)\n")
    # environment line
    assert "torch 2.13.0+cpu · diffusers 0.42.1 · commit `f309245` (uncommitted changes) · 1 torch thread" in cpu
    assert "started 2026-11-27 17:30:43+0000" in cpu and "sizes `cpu-small`" in cpu
    assert "NVIDIA H100 80GB HBM3 (CUDA 13.0, cuDNN TF32 on) · host Intel(R) Xeon(R) Processor, 16 cores" in cuda
    assert "commit `bcb67c0` (clean) · 16 torch threads" in cuda
    # headline: ratios, seconds and memory against their targets
    assert "| training speed-up, `fp32` | 1.31× | ≥\u00a01.5× | **missed** |" in cpu
    assert "| sampling speed-up, `bf16_cl` | 2.50× | ≥\u00a02× | met |" in cpu
    assert "| CPU peak memory, full-grid job | 5.25 GB | ≤\u00a08\u00a0GB | met |" in cpu
    assert ("| full-grid ensemble (30 members × 20 steps), `bf16_cl`, fastest sitsr (`sitsr_compile`) | 10.7 s "
            "| ≤\u00a010\u00a0s | **missed** |") in cuda
    # training: samples/s with the IQR (batch / q75 .. batch / q25), peak RSS (+growth), speed-up
    assert "| `fp32` | `sitsr` | 10.00 (8.000–11.11) | 585 (+272) | 1.25× |" in cpu
    assert "| `fp32` | `diffusers` | 8.000 (6.400–8.889) | 585 (+272) | baseline |" in cpu
    # sampling: sitsr before diffusers, tiling, GPU memory from peak_allocated_mb
    assert cpu.index("| `bf16_cl` | `sitsr` | 23.80 (21.42–29.75) | 0.168 | 585 (+272) | one tile, 4 members/chunk | "
                     "1.40× |") < cpu.index("| `bf16_cl` | `diffusers` | 33.00")
    assert "whole domain, 4 members/pass | baseline |" in cpu
    assert "peak GPU memory, MB" in cuda and "peak RSS" not in cuda and "### Full-grid sampling" in cuda
    assert ("| `bf16_cl` | `sitsr_compile` | 10.66 (9.594–13.32) | 2.80 | 13,838 (+13,530) | "
            "512² tiles, overlap 64, 30 crops/pass, 30 members/chunk | 4.00× |") in cuda
    # scaling: one figure per file, unique names, relative paths; the full-grid job in the table
    for stem, text in (("cpu", cpu), ("cuda", cuda)):
        assert f"```{{figure}} _generated/performance_{stem}.png\n:name: fig-performance-{stem}\n" in text
        assert (book / "_generated" / f"performance_{stem}.png").stat().st_size > 10_000
    assert "| full-grid job | 1086×1308 | 30 | 2 |" in cpu and "5,376" in cpu
    # data stage
    assert "| synthetic day (`synth_day`) | 0.830 ± 0.053 |" in cpu
    assert "### Data stage\n\nSkipped: missing module: shapely." in cuda
    assert "### Training" not in cuda and "### Sampling" not in cuda


def test_performance_page_skips_missing_sections(tmp_path):
    book = _book_skeleton(tmp_path)
    one_tile = {"environment": {"cuda": "NVIDIA H100 80GB HBM3"}, "device": "cuda",
                "summary": {"targets": {"train": 1.5},
                            "sample_full_bf16_cl": {"ratio": None, "target": 2.0, "met": None}},
                "sample_full": {"size": [1086, 1308], "tiling": {"tile": 1312, "overlap": 64, "tile_batch": 10},
                                "cases": {"bf16_cl": {"sitsr": {"median_s": 30.0}}}}}
    odd = {"train": {"cases": {"fp32": {"sitsr": None}, "bf16_cl": None}}, "sample": {"cases": []},
           "sample_full": "n/a", "scaling": {"domain": [None], "ensemble": []},
           "data": {"region": "r", "synth_day_s": []}}
    results = _results(tmp_path, {"a_one_tile.json": one_tile, "b_empty.json": {}, "c_odd.json": odd})
    assert booktools.write_performance_page(book, results) == 3
    page = (book / "performance.md").read_text()
    assert "## NVIDIA H100 80GB HBM3 (a\\_one\\_tile.json)" in page and "## unknown device (b\\_empty.json)" in page
    assert "| full-grid sampling speed-up, `bf16_cl` | n/a (no diffusers run) | ≥\u00a02× | n/a |" in page
    assert "| `bf16_cl` | `sitsr` | 30.00 | – | – | one tile, 10 crops/pass |  |" in page
    assert "**Environment:** not recorded." in page
    for absent in ("### Training", "### Sampling", "### Scaling", "### Data stage", "{figure}"):
        assert absent not in page
    assert not (book / "_generated").exists()


def test_performance_page_prose_and_layout_come_from_the_template(tmp_path, monkeypatch):
    book = _book_skeleton(tmp_path)
    cpu = _cpu_run()
    cpu["scaling"]["tiling"] = {"tile": 128, "overlap": 0, "tile_batch": None}  # a zero is known, a null is not
    results = _results(tmp_path, {"cpu.json": cpu})
    booktools.write_performance_page(book, results)
    page = (book / "performance.md").read_text()
    # a phrase whose field is missing (train has no "step") is dropped with its separator
    assert "\nBatch 4 × 64² per step; 3 warm-up + 5 timed steps; parameters: `sitsr` 3.91 M, `diffusers` 3.96 M.\n" \
        in page
    assert "\nThe sitsr sampler (`bf16_cl`, tiles 128², overlap 0) against the domain and ensemble size.\n" in page
    assert "\n\n\n" not in page and page.endswith("|\n")
    template = tmp_path / "page.md.tmpl"
    text = booktools.PAGE_TEMPLATE.read_text(encoding="utf-8")
    template.write_text(text.replace("### Training\n", "### Training throughput\n")
                        .replace("Domain $size", "A grid of $size").replace("| stage (one day) |", "| stage |"))
    monkeypatch.setattr(booktools, "PAGE_TEMPLATE", template)
    booktools.write_performance_page(book, results)
    edited = (book / "performance.md").read_text()
    assert "\n### Training throughput\n" in edited and "\n### Training\n" not in edited
    assert "\nA grid of 256×256, 4 members × 20 DDIM steps (eta 0), 2 timed repeats.\n" in edited
    assert "\n| stage | seconds (median ± std) |\n|---|---|\n| synthetic day (`synth_day`) | 0.830 ± 0.053 |\n" \
        in edited


@pytest.mark.parametrize("text", ["[1, 2]", "{not json"])
def test_performance_page_rejects_malformed_results(tmp_path, text):
    book = _book_skeleton(tmp_path)
    results = _results(tmp_path, {"cpu.json": _cpu_run(), "bad.json": text})
    with pytest.raises(SitsrInputError, match="bad.json"):
        booktools.write_performance_page(book, results)
    with pytest.raises(SitsrInputError, match="bad.json"):
        booktools.read_benchmarks(results)


def test_non_relative_urls(tmp_path):
    (tmp_path / "a.html").write_text('<a href="b.html#x">b</a><img src="_images/p.png"><a href="https://x.org">x</a>'
                                     '<script src="//cdn.example/x.js"></script><link href="/abs.css">')
    (tmp_path / "s.css").write_text("@font-face { src: url(fonts/a.woff2) } .x { background: url('http://e/i.png') }")
    assert booktools.non_relative_urls(tmp_path) == ["a.html: https://x.org", "a.html: //cdn.example/x.js",
                                                     "a.html: /abs.css", "s.css: http://e/i.png"]


# ----------------------------------------------------------------------------- the book in a browser

def _chromium(url: str, tmp: Path, *args: str) -> tuple[str, str, list[dict]]:
    """Run chromium on ``url``; return stdout, the log, and the network requests the page made."""
    tmp.mkdir(parents=True)
    netlog = tmp / "netlog.json"
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--vmodule=file_url_loader_factory=1", f"--log-net-log={netlog}", "--virtual-time-budget=5000",
           *args, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = netlog.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # chromium may leave the trailing brackets out
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    # Requests from the page carry its file:// origin; chromium's own (from "not an origin") are ignored.
    page_requests = [e["params"] for e in log["events"] if e["type"] == start_job
                     and "file://" in e.get("params", {}).get("network_isolation_key", "")]
    return proc.stdout, proc.stderr, page_requests


def _check_loads(name: str, html_dir: Path, stderr: str, requests: list[dict]) -> None:
    assert not requests, f"{name}: network requests {[r['url'] for r in requests]}"
    files = [unquote(urlparse(u).path) for u in re.findall(r"FileURLLoader::Start: (file://\S+)", stderr)]
    assert files, f"{name}: no file loads logged (chromium log format changed?)"
    missing = sorted({f for f in files if not Path(f).is_file()})
    assert not missing, f"{name}: failed loads {missing}"
    outside = sorted({f for f in files if not Path(f).resolve().is_relative_to(html_dir.resolve())})
    assert not outside, f"{name}: loads outside the site {outside}"
    errors = [line for line in stderr.splitlines() if ":CONSOLE" in line and "Uncaught" in line]
    assert not errors, f"{name}: JavaScript errors {errors}"


def _expected_outputs(nb_path: Path) -> tuple[int, int]:
    """Number of image outputs and of widget views (with saved state) the page must show."""
    nb = json.loads(nb_path.read_text())
    state = nb.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    models = state.get("state", {})
    images = widgets = 0
    for cell in nb["cells"]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] != "code" or tags & {"remove-output", "remove-cell"}:
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data and data[WIDGET_MIME].get("model_id") in models:
                widgets += 1
            elif any(m in data for m in IMAGE_MIMES) and not any(m in data for m in RICHER_MIMES):
                images += 1
    return images, widgets


def _shown_images(dom: str, page: Path) -> int:
    srcs = re.findall(r'<img\b[^>]*?\bsrc="([^"]+)"', dom)
    return sum(s.startswith("data:image/") or (page.parent / unquote(s.split("?")[0])).is_file() for s in srcs)


def _title(text: str) -> str:
    return html.unescape(re.search(r"<title>(.*?)</title>", text, re.S).group(1)).strip()


@pytest.mark.book
def test_book_builds_offline_and_renders(tmp_path):
    executed = Path(os.environ.get("SITSR_EXECUTED", ROOT / "notebooks" / "executed")).resolve()
    assert executed.is_dir(), f"{executed}: execute the notebooks first (make test does) or set SITSR_EXECUTED"
    assert Path(CHROMIUM).exists(), "chromium missing: apt-get update && apt-get install -y chromium"
    book = tmp_path / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns(
        "_build", "notebooks", "_generated", "performance.md", "*.tmp"))
    jb = Path(sys.executable).with_name("jupyter-book")
    make = ["make", "--no-print-directory", "-f", str(ROOT / "book" / "book.mk"), f"BOOK_SRC={book}",
            f"EXECUTED={executed}", f"BENCH_RESULTS={ROOT / 'benchmarks' / 'results'}", f"PY={sys.executable}",
            f"BOOK_TOOLS={ROOT / 'book' / 'tools' / 'booktools.py'}",
            f"JB={jb if jb.exists() else 'jupyter-book'}", "publish"]
    proc = subprocess.run(make, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    causes = [line for line in out.splitlines() if re.search(r"WARNING|ERROR|SphinxWarning|^error:", line)]
    assert proc.returncode == 0, "book build failed:\n" + "\n".join(causes[:20] or [out[-5000:]])

    site = book / "_build" / "html"
    assert booktools.non_relative_urls(site) == []
    assert (book / "_build" / "site" / ".nojekyll").is_file()
    with tarfile.open(book / "_build" / "sitsr-book.tar.gz") as tar:
        assert {"sitsr-book/index.html", "sitsr-book/.nojekyll"} <= set(tar.getnames())

    notebooks = sorted(executed.glob("*.ipynb"))
    shots = ROOT / "book" / "_build" / "screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)

    # The index redirects to the introduction: title, sidebar, equations typeset by the local MathJax, figure.
    dom, log, requests = _chromium((site / "index.html").as_uri(), tmp_path / "c-index", "--dump-dom")
    _check_loads("index", site, log, requests)
    intro = site / "intro.html"
    assert _title(dom) == _title(intro.read_text()) and "Conditional diffusion" in dom
    assert len(re.findall(r'<mjx-container[^>]*display="true"', dom)) >= 3, "display equations not typeset"
    assert "<mjx-merror" not in dom, "TeX error in the introduction"
    assert _shown_images(dom, intro) >= 1, "pipeline figure missing"
    for nb in notebooks:
        assert f'href="notebooks/{nb.stem}.html"' in dom, f"{nb.name} missing from the navigation"

    for page in [site / "notebooks" / f"{nb.stem}.html" for nb in notebooks] + [site / "performance.html",
                                                                                 site / "api.html"]:
        name = page.relative_to(site).as_posix()
        dom, log, requests = _chromium(page.as_uri(), tmp_path / f"c-{page.stem}", "--dump-dom")
        _check_loads(name, site, log, requests)
        static = page.read_text()
        assert _title(dom) == _title(static) and "<h1" in dom, f"{name} not rendered"
        if 'class="math' in static:
            assert "<mjx-container" in dom and "<mjx-merror" not in dom, f"{name}: math not typeset"
        if page.parent.name == "notebooks":
            images, widgets = _expected_outputs(executed / f"{page.stem}.ipynb")
            assert _shown_images(dom, page) >= images, f"{name}: {images} figures expected"
            if widgets:
                assert re.search(r'class="[^"]*\bjupyter-widgets\b', dom), f"{name}: widgets not rendered"
            # one parameters cell: papermill's injected one; the default one (tag remove-cell) is not rendered
            cells = re.findall(r'class="cell( [^"]*)?"', static)
            assert sum("tag_injected-parameters" in c for c in cells) == 1, f"{name}: injected parameters cell"
            assert not any(re.search(r"\btag_parameters\b", c) for c in cells), f"{name}: default parameters shown"
        if page.stem == "performance":
            assert "<table" in dom or "No benchmark results yet" in dom

    # Screenshots to look at: the introduction, and notebook 03 (else the first notebook).
    pages = {"index.png": (site / "index.html", "1280,1000")}
    if notebooks:
        target = next((nb for nb in notebooks if nb.stem.startswith("03_")), notebooks[0])
        pages[f"{target.stem}.png"] = (site / "notebooks" / f"{target.stem}.html", "1280,1800")
    for png, (page, size) in pages.items():
        _, log, requests = _chromium(page.as_uri(), tmp_path / f"s-{png}", f"--screenshot={shots / png}",
                                     f"--window-size={size}")
        _check_loads(png, site, log, requests)
        assert (shots / png).stat().st_size > 10_000
