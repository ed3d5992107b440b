"""The explorer as a user meets it: ``make lab``'s JupyterLab with a live kernel, in headless Chromium.

JupyterLab (the Makefile's ``lab`` command line, on a free local port with a token) serves a copy of
``notebooks/00_explorer.ipynb`` whose parameters point at a tiny dataset and fake ensemble files; Playwright
drives Debian's ``chromium`` (``executable_path``, no browser download) to run all cells, switch the view
to one member, move the member slider and pick another date. Each change must redraw the map (its PNG
changes), and no error may appear (error outputs, widget errors, uncaught JavaScript exceptions). A
screenshot is kept at ``build/test_lab/explorer.png``. Needs ``playwright`` (PyPI) and ``chromium`` (Debian).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook
from test_widgets import write_outputs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_explorer.ipynb"
SCREENSHOTS = ROOT / "build" / "test_lab"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Seconds allowed for JupyterLab to start, for all cells to run, and for one redraw.
START_S, RUN_S, REDRAW_S = 90, 240, 90


def lab_command() -> list[str]:
    """The ``make lab`` recipe (``jupyter lab --notebook-dir=notebooks`` [--allow-root]) as argv."""
    recipe = re.search(r"^lab:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), flags=re.M)
    assert recipe and "jupyter lab --notebook-dir=notebooks" in recipe[1], "make lab's command line changed"
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab"]
    return cmd + (["--allow-root"] if os.geteuid() == 0 else [])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tiny_dataset, tmp_path):
    """A running JupyterLab on a notebook folder holding the parameterised explorer; yields (url, token)."""
    outputs = write_outputs(tmp_path / "outputs", tiny_dataset)
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = parameterize_notebook(load_notebook_node(str(NOTEBOOK)),
                               {"outputs": str(outputs), "dataset": str(tiny_dataset)})
    nbformat.write(nb, folder / NOTEBOOK.name)
    settings = tmp_path / "lab-settings" / "@jupyterlab"
    # every cell kept in the page (no windowing: the checks read outputs out of view), no news prompt
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg",
               JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"))
    cmd = lab_command() + [f"--notebook-dir={folder}", "--no-browser", "--ServerApp.ip=127.0.0.1",
                           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                           f"--IdentityProvider.token={token}",
                           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url="]
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def map_png(page) -> str:
    """The ``src`` of the explorer's map image (the first image of its output areas)."""
    return page.locator(".jp-Notebook .widget-output img").first.get_attribute("src") or ""


def wait_for_new_map(page, before: str, what: str) -> str:
    deadline = time.monotonic() + REDRAW_S
    while time.monotonic() < deadline:
        now = map_png(page)
        if now and now != before:
            return now
        page.wait_for_timeout(250)
    pytest.fail(f"the map image did not change after {what}")


def errors_shown(page) -> list[str]:
    """Error outputs, tracebacks on stderr and widget errors visible in the notebook."""
    texts = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                         ".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").all_text_contents()
    found = [t[:500] for t in texts if re.search(r"Traceback|Error|Exception", t)]
    body = page.locator(".jp-Notebook").text_content()
    found += [m for m in ("Error displaying widget", "Failed to load model class") if m in body]
    return found


def test_explorer_in_jupyterlab(lab, tmp_path):
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError:  # optional heavy test dependency (the `test` extra), imported where needed
        pytest.fail("playwright is not installed: pip install playwright (the browser is Debian's chromium)")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium")
    url, token = lab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    js_errors: list[str] = []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1100})
        page = context.new_page()
        page.on("pageerror", lambda exc: js_errors.append(str(exc)))
        try:
            page.goto(f"{url}/lab/tree/{NOTEBOOK.name}?token={token}")
            page.locator(".jp-NotebookPanel").first.wait_for(timeout=START_S * 1000)
            # JupyterLab may ask which kernel to start (preselected: the notebook's); a user clicks Select.
            select = page.locator(".jp-Dialog").get_by_role("button", name="Select")
            try:
                select.wait_for(timeout=20_000)
                select.click()
            except PlaywrightTimeout:
                pass
            page.locator("#jp-main-statusbar .jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle")).first.wait_for(
                timeout=START_S * 1000)

            news = page.locator(".jp-toast-container").get_by_role("button", name="No")
            if news.count():
                news.first.click()  # "notified about official Jupyter news?": no
            page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
            deadline = time.monotonic() + RUN_S
            prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt")  # "[n]:" once run, "[*]:" running
            images = page.locator(".jp-Notebook .widget-output img")
            while not (all(re.search(r"\[\d+\]", t) for t in prompts.all_text_contents()) and images.count()):
                assert not errors_shown(page), f"error while running the notebook: {errors_shown(page)}"
                assert time.monotonic() < deadline, f"cells still running after {RUN_S} s"
                page.wait_for_timeout(500)
            assert "2 dates with an ensemble" in page.locator(".jp-Notebook").text_content()
            page.screenshot(path=str(SCREENSHOTS / "explorer-mean.png"))
            first = map_png(page)
            assert first.startswith("data:image/png")

            view = page.locator(".widget-dropdown", has=page.locator("label", has_text=re.compile(r"^view$")))
            view.locator("select").select_option(label="member")
            shown = wait_for_new_map(page, first, "choosing the member view")

            member = page.locator(".widget-slider", has=page.locator("label", has_text=re.compile(r"^member$")))
            member.locator(".noUi-handle").first.focus()
            member.locator(".noUi-handle").first.press("ArrowRight")
            shown = wait_for_new_map(page, shown, "moving the member slider")
            assert member.locator(".widget-readout").inner_text().strip() == "1"

            date = page.locator(".widget-dropdown", has=page.locator("label", has_text=re.compile(r"^date$")))
            date.locator("select").select_option(index=1)
            wait_for_new_map(page, shown, "picking the second date")

            page.locator(".widget-output img").first.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "explorer.png"))
            assert errors_shown(page) == []
            assert js_errors == []
        except Exception:
            (tmp_path / "page.html").write_text(page.content())
            page.screenshot(path=str(SCREENSHOTS / "explorer-failure.png"))
            raise
        finally:
            context.close()
