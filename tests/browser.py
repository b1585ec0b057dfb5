"""Headless Chromium for the dashboard tests: Debian's ``chromium`` package driven by Playwright.

The package is installed here when it is missing (``apt-get``, as root or through ``sudo -n``):
a test that needs a browser fails with the reason when it cannot get one, it is never skipped.
Chromium starts headless with no sandbox, no GPU and its background networking off (this
machine's network is closed, and the dashboard must not need one anyway).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _found() -> str | None:
    return next((c for c in CANDIDATES if os.access(c, os.X_OK)), None)


def chromium_executable() -> str:
    """The Chromium binary, installing Debian's package first when it is missing."""
    found = _found()
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if not shutil.which("apt-get"):
        pytest.fail("headless Chromium is needed and there is no apt-get to install it: install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:  # an old package index: refresh it once
        subprocess.run([*sudo, "apt-get", "update"], capture_output=True, text=True, env=env, timeout=600)
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    found = _found()
    if not found:
        pytest.fail(f"could not install Debian's chromium (exit {proc.returncode}): {proc.stderr[-500:]}")
    return found


@dataclass
class PageCheck:
    """What a page did in the browser."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)      # every URL the page asked for
    charts: list[dict] = field(default_factory=list)       # alt, natural and rendered size of each img.chart
    text: str = ""
    title: str = ""
    pwned: object = None                                   # window.pwned: set only if a script ran


def open_page(path: Path, screenshot: Path) -> PageCheck:
    """Open ``path`` from the file system, wait for it to load, and report what happened."""
    from playwright.sync_api import sync_playwright

    check = PageCheck()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_executable(), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: check.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: check.page_errors.append(str(e)))
            page.on("request", lambda r: check.requests.append(r.url))
            page.goto(path.resolve().as_uri(), wait_until="load")
            check.charts = page.eval_on_selector_all(
                "img.chart", "els => els.map(e => ({alt: e.alt, natural: e.naturalWidth * e.naturalHeight,"
                " width: e.getBoundingClientRect().width, height: e.getBoundingClientRect().height}))")
            check.text = page.inner_text("body")
            check.title = page.title()
            check.pwned = page.evaluate("() => window.pwned === undefined ? null : String(window.pwned)")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return check


@dataclass
class AppView:
    """Where a single-page app landed and what it shows."""

    url: str
    text: str


def open_app(url: str, wait_for_text: str, screenshot: Path, timeout_s: float = 180) -> AppView:
    """Open ``url`` (a served single-page app, such as the MLflow UI), wait until ``wait_for_text``
    is on the page (it renders after its API calls), and report the final address and the text."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_executable(), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="load")
            page.get_by_text(wait_for_text).first.wait_for(timeout=timeout_s * 1000)
            view = AppView(page.url, page.inner_text("body"))
            page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    return view
