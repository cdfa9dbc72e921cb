"""Notebooks in JupyterLab in a real browser, as a learner uses them (``make test-browser``).

An isolated JupyterLab (its settings, runtime and data folders in a temporary directory, on
127.0.0.1) serves fresh copies of the notebooks; headless Chromium, driven by Playwright, runs all
cells from the Run menu and moves a control: 02's rank slider with the keyboard (the dashboard must
train the new rank: the trainable-parameter count printed under it is the one for the new r, and its
figure is redrawn), 05's rank of one weight, and 04's adapter dropdown. Screenshots of the dashboards
are saved in ``build/browser/`` (and on failure, of the whole page).

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
NOTEBOOKS = ("02_lora_on_fruit.ipynb", "05_parameter_budget.ipynb", "04_adapters_in_practice.ipynb")
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
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, served)          # JupyterLab autosaves into what it serves
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


def kernel_idle(base: str, notebook: str) -> bool:
    sessions = [s for s in get_json(f"{base}/api/sessions") if s["path"].endswith(notebook)]
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


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: make test-browser installs it"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def run_all(browser, lab: str, notebook: str):
    """A page with ``notebook`` open and every cell run, without a traceback."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab}/lab/tree/{notebook}?reset")           # ?reset: not the last test's open tabs
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", timeout=60_000)
    # The toolbar says idle before any kernel exists: ask the server instead.
    wait_for(lambda: kernel_idle(lab, notebook), 60, "the kernel to start", page)
    page.click('.lm-MenuBar-itemLabel:text-is("Run")')
    page.click('.lm-Menu-itemLabel:text-is("Run All Cells")')
    time.sleep(1.0)
    running = page.locator('.jp-InputPrompt:has-text("[*]")')
    wait_for(lambda: kernel_idle(lab, notebook) and running.count() == 0, 240, "Run All to finish", page)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                          has_text="Traceback")
    assert errors.count() == 0, errors.first.inner_text()[-1500:]
    return page


def dashboard_output(control):
    """The Output area of the dashboard (a VBox) that holds ``control``."""
    box = control.locator("xpath=ancestor::div[contains(@class, 'widget-vbox')][1]")
    return box.locator(".widget-output")


def figure_src(output) -> str | None:
    images = output.locator("img")
    return images.first.get_attribute("src") if images.count() else None


def check_redraw(page, output, before_src, expected_text: str, shot: str) -> float:
    """Wait until ``output`` shows ``expected_text`` and a new figure; save a screenshot; return seconds."""
    start = time.monotonic()
    wait_for(lambda: expected_text in output.inner_text(), 30, f"the dashboard to print {expected_text!r}",
             page)
    seconds = time.monotonic() - start
    wait_for(lambda: figure_src(output) not in (None, before_src), 30, "the figure to be redrawn", page)
    output.locator("xpath=..").screenshot(path=str(SHOTS / shot))
    return seconds


def press_right(page, slider) -> None:
    slider.scroll_into_view_if_needed()
    slider.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")


def test_moving_the_rank_slider_retrains_and_redraws(lab, browser):
    page = run_all(browser, lab, "02_lora_on_fruit.ipynb")
    try:
        slider = page.locator(".jp-OutputArea .widget-slider", has_text="LoRA rank r")
        assert slider.count() == 1
        readout = slider.locator(".widget-readout")
        assert readout.inner_text().strip() == "4"
        output = dashboard_output(slider)
        assert f"trainable parameters {trainable(4):,}" in output.inner_text()
        before = figure_src(output)
        start = time.monotonic()
        press_right(page, slider)                                # 4 -> 8
        wait_for(lambda: readout.inner_text().strip() == "8", 10, "the slider to read 8", page)
        check_redraw(page, output, before, f"r = 8: trainable parameters {trainable(8):,}",
                     "rank_dashboard.png")
        print(f"\n02: r = 4 -> 8 trained and redrawn in {time.monotonic() - start:.2f} s")
    except Exception:
        page.screenshot(path=str(SHOTS / "failure_02.png"), full_page=True)
        raise
    finally:
        page.close()


def test_the_parameter_budget_slider_recounts(lab, browser):
    page = run_all(browser, lab, "05_parameter_budget.ipynb")
    try:
        slider = page.locator(".jp-OutputArea .widget-slider", has_text="rank r (one W)")
        assert slider.count() == 1
        output = dashboard_output(slider)
        assert "LoRA at r = 8 trains r·(d_in + d_out) = 4,096" in output.inner_text()   # 8 · (256 + 256)
        before = figure_src(output)
        press_right(page, slider)                                # 8 -> 9
        check_redraw(page, output, before, "LoRA at r = 9 trains r·(d_in + d_out) = 4,608",
                     "budget_dashboard.png")
    except Exception:
        page.screenshot(path=str(SHOTS / "failure_05.png"), full_page=True)
        raise
    finally:
        page.close()


def test_the_adapter_dropdown_switches_adapters(lab, browser):
    page = run_all(browser, lab, "04_adapters_in_practice.ipynb")
    try:
        dropdown = page.locator(".jp-OutputArea .widget-dropdown", has_text="adapter")
        assert dropdown.count() == 1
        output = dashboard_output(dropdown)
        assert "adapter 'harvest_a' at strength 1.00" in output.inner_text()
        before = figure_src(output)
        dropdown.locator("select").focus()
        dropdown.locator("select").select_option("harvest_b")
        check_redraw(page, output, before, "adapter 'harvest_b' at strength 1.00:",
                     "adapter_dashboard.png")
    except Exception:
        page.screenshot(path=str(SHOTS / "failure_04.png"), full_page=True)
        raise
    finally:
        page.close()
