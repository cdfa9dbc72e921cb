"""Notebook 02 in JupyterLab in a real browser, as a learner uses it (``make test-browser``).

An isolated JupyterLab (its settings, runtime and data folders in a temporary directory, on
127.0.0.1) serves a fresh copy of the notebook; headless Chromium, driven by Playwright, runs all
cells from the Run menu, moves the rank slider with the keyboard, and checks that the dashboard
trained the new rank: the trainable-parameter count printed under it is the one for the new r, and
its figure was redrawn. A screenshot of the dashboard is saved in ``build/browser/`` (and on failure,
of the whole page).

Facts this relies on, measured on these machines: ``../shared/notes`` in the development setup, and
the comments below.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = "02_lora_on_fruit.ipynb"
CHROMIUM = os.environ.get("LORA_NP_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
SHOTS = ROOT / "build" / "browser"
# Without the background-networking flags Chromium keeps trying closed network connections.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# d_in = 20 features, two hidden layers of 256, LoRA on fc1 (20 -> 256) and fc2 (256 -> 256).
LAYERS = ((20, 256), (256, 256))

playwright = pytest.importorskip("playwright.sync_api")


def trainable(r: int) -> int:
    """LoRA's trainable count at rank r on fc1 and fc2: r (d_in + d_out) per layer."""
    return sum(r * (d_in + d_out) for d_in, d_out in LAYERS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a fresh copy of the notebook; yields its base URL; stops it after."""
    tmp = tmp_path_factory.mktemp("lab")
    served = tmp / "notebooks"
    served.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, served)          # JupyterLab autosaves into what it serves
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)           # the kernel needs the inline backend, as a learner's does
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR",
                "JUPYTERLAB_SETTINGS_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
        env[var] = str(tmp / var.lower())
    settings = tmp / "jupyterlab_settings_dir"
    # windowingMode none keeps every cell in the page; autoStartDefaultKernel avoids a kernel dialog
    # that otherwise races with Run All now and then.
    overrides = (("notebook-extension/tracker", {"windowingMode": "none", "autoStartDefaultKernel": True}),
                 ("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False}))
    for plugin, values in overrides:
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port = free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
           "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={served}",
           "--ServerApp.port_retries=0", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    server = subprocess.Popen(cmd, env=env, stdout=open(tmp / "server.log", "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                get_json(f"{base}/api/status")
                break
            except OSError:
                assert server.poll() is None, (tmp / "server.log").read_text()
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s:\n" + (tmp / "server.log").read_text())
        yield base
    finally:
        server.send_signal(signal.SIGTERM)                      # its kernels stop with it
        for _ in range(40):
            if server.poll() is not None:
                break
            time.sleep(0.25)
        else:
            server.kill()


def kernel_idle(base: str) -> bool:
    sessions = [s for s in get_json(f"{base}/api/sessions") if s["path"].endswith(NOTEBOOK)]
    return bool(sessions) and sessions[0]["kernel"]["execution_state"] == "idle"


def wait_for(condition, timeout_s: float, what: str, page=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    if page is not None:
        page.screenshot(path=str(SHOTS / "failure.png"), full_page=True)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what} "
                "(screenshot: build/browser/failure.png)")


def test_moving_the_rank_slider_retrains_and_redraws(lab):
    assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: make test-browser installs it"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{lab}/lab/tree/{NOTEBOOK}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
            # The toolbar says idle before any kernel exists: ask the server instead.
            wait_for(lambda: kernel_idle(lab), 60, "the kernel to start", page)
            page.click('.lm-MenuBar-itemLabel:text-is("Run")')
            page.click('.lm-Menu-itemLabel:text-is("Run All Cells")')
            time.sleep(1.0)
            running = page.locator('.jp-InputPrompt:has-text("[*]")')
            wait_for(lambda: kernel_idle(lab) and running.count() == 0, 240, "Run All to finish", page)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                                  has_text="Traceback")
            assert errors.count() == 0, errors.first.inner_text()[-1500:]
            sliders = page.locator(".jp-OutputArea .widget-slider", has_text="LoRA rank r")
            assert sliders.count() == 1
            slider = sliders.first
            dashboard = slider.locator("xpath=ancestor::div[contains(@class, 'widget-vbox')][1]")
            readout = slider.locator(".widget-readout")
            assert readout.inner_text().strip() == "4"
            output = dashboard.locator(".widget-output")
            assert f"trainable parameters {trainable(4):,}" in output.inner_text()
            image_before = output.locator("img").first.get_attribute("src")
            slider.scroll_into_view_if_needed()
            start = time.monotonic()
            slider.locator(".noUi-handle").focus()
            page.keyboard.press("ArrowRight")                   # 4 -> 8
            wait_for(lambda: readout.inner_text().strip() == "8", 10, "the slider to read 8", page)
            wait_for(lambda: f"trainable parameters {trainable(8):,}" in output.inner_text(), 30,
                     "the dashboard to print r = 8's trainable count", page)
            seconds = time.monotonic() - start
            wait_for(lambda: output.locator("img").count() > 0
                     and output.locator("img").first.get_attribute("src") != image_before, 30,
                     "the figure to be redrawn", page)
            print(f"r = 4 -> 8: trained and redrawn in {seconds:.2f} s")
            dashboard.screenshot(path=str(SHOTS / "rank_dashboard.png"))
            assert f"r = 8: trainable parameters {trainable(8):,}" in output.inner_text()
        except Exception:
            page.screenshot(path=str(SHOTS / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
