"""The Jupyter Book: generated pages, offline build, and rendering in headless chromium.

The browser test (marker ``book``) builds a temporary copy of ``book/`` with ``book/book.mk`` from the
executed notebooks in ``$SITSR_EXECUTED`` (default ``notebooks/executed``; ``make test`` executes the
notebooks with smoke parameters first), then opens the index and every page in headless chromium
without network access and checks what a reader would see. Screenshots go to
``book/_build/screenshots/``. Needs Debian's chromium: ``apt-get install -y chromium``.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from sitsr_core import booktools
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


def test_toc_lists_only_present_notebooks_in_order(tmp_path):
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
    assert out["toc"] == ["intro", "notebooks/01_dataset_constitution", "notebooks/03_ensemble_spread_reliability",
                          "performance", "api"]
    assert sorted(p.name for p in (book / "notebooks").iterdir()) == ["01_dataset_constitution.ipynb",
                                                                     "03_ensemble_spread_reliability.ipynb"]
    # the absent notebook 02 loses its link, the present 03 and the web link keep theirs
    copied = json.loads((book / "notebooks" / "01_dataset_constitution.ipynb").read_text())
    assert copied["cells"][0]["source"] == ("Next: training, [spread](03_ensemble_spread_reliability.ipynb#top), "
                                            "[w](https://x/a.ipynb)")
    toc = (book / "_toc.yml").read_text()
    assert toc.index("01_dataset") < toc.index("03_ensemble") < toc.index("performance") < toc.index("file: api")
    assert "No benchmark results yet" in (book / "performance.md").read_text()
    assert "sitsr_core.booktools" in out["modules"] and "sitsr_core.errors" in out["modules"]
    assert ".. automodule:: sitsr_core.errors" in (book / "api.md").read_text()


def test_toc_without_notebooks_has_no_empty_part(tmp_path):
    book = _book_skeleton(tmp_path)
    (tmp_path / "executed").mkdir()
    assert booktools.prepare(book, tmp_path / "executed", tmp_path)["toc"] == ["intro", "performance", "api"]
    assert "Notebooks" not in (book / "_toc.yml").read_text()


def test_prepare_rejects_missing_folders(tmp_path):
    book = _book_skeleton(tmp_path)
    with pytest.raises(SitsrInputError, match="executed notebooks"):
        booktools.prepare(book, tmp_path / "missing", tmp_path)
    with pytest.raises(SitsrInputError, match="_config.yml"):
        booktools.prepare(tmp_path / "missing", tmp_path, tmp_path)


def test_performance_page_table_and_chart(tmp_path):
    book = _book_skeleton(tmp_path)
    results = tmp_path / "results"
    results.mkdir()
    (results / "sampling.json").write_text(json.dumps(
        [{"name": "ddim|20", "device": "cpu", "timing": {"median_s": 1.23456, "runs": 5}},
         {"name": "ddim|50", "device": "cpu", "timing": {"median_s": 3.0, "runs": 5}, "tags": ["x"]}]))
    (results / "train.json").write_text(json.dumps({"steps_per_s": 2.5, "ok": True}))
    assert booktools.write_performance_page(book, results) == 3
    page = (book / "performance.md").read_text()
    assert "| name | device | timing.median_s | timing.runs | steps_per_s | ok |" in page
    assert "| ddim\\|20 | cpu | 1.235 | 5 |  |  |" in page
    assert "| train |  |  |  | 2.5 | True |" in page
    assert "_generated/performance.png" in page and (book / "_generated" / "performance.png").stat().st_size > 0
    (results / "bad.json").write_text("[1, 2]")
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
        "_build", "notebooks", "_generated", "_toc.yml", "api.md", "performance.md", "*.tmp"))
    jb = Path(sys.executable).with_name("jupyter-book")
    make = ["make", "--no-print-directory", "-f", str(ROOT / "book" / "book.mk"), f"BOOK_SRC={book}",
            f"EXECUTED={executed}", f"BENCH_RESULTS={ROOT / 'benchmarks' / 'results'}", f"PY={sys.executable}",
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
