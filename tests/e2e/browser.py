"""A real headless Chromium for the browser tests, driven by selenium.

The browser and its driver are Debian's (packages ``chromium`` and ``chromium-driver``, which
.ci/run installs when missing), never downloaded: the driver's path is given to selenium, so
Selenium Manager does not run. Without them the tests skip, naming the packages; under CI
(``CI`` set, as .ci/run has it) they fail instead, as the Redis and node tests do.

Selenium blocks, and the tests' webhook targets are trio servers in the test's own thread, so
each browser step runs in a worker thread (``in_browser``) and every wait in it is bounded.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
IN_CI = bool(os.environ.get("CI"))

WAIT = 10.0
"""Seconds one browser wait may take: a page, an event, a delivery are there within ~1 s."""

T = TypeVar("T")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if CHROMIUM.is_file() and CHROMEDRIVER.is_file():
        return None
    return (
        f"Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}): install Debian's packages "
        "with `apt-get install chromium chromium-driver` (.ci/run does)"
    )


@contextmanager
def open_chromium() -> Iterator[WebDriver]:
    """A headless Chromium for the tests' module; skips (fails under CI) without one."""
    why = missing()
    if why is not None:
        if IN_CI:
            pytest.fail(f"{why}; under CI it must be there")
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="hookwire-chromium-")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI and containers: Chromium's sandbox needs user namespaces
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


async def in_browser(step: Callable[..., T], *args: Any) -> T:
    """Run a blocking browser step in a worker thread, so the test's trio servers answer."""
    return await trio.to_thread.run_sync(functools.partial(step, *args))


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T], what: str) -> T:
    """``condition``'s first truthy value, polled every 50 ms for at most ``WAIT`` seconds."""
    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(
        condition, f"waited {WAIT} s for {what}"
    )


def text_of(driver: WebDriver, css: str) -> str:
    """The text an element shows (hidden parts excluded), '' while it is not there; read in
    one step in the page, so a part the page redraws meanwhile is never half read."""
    found = driver.execute_script(
        "const node = document.querySelector(arguments[0]); return node ? node.innerText : ''",
        css,
    )
    assert isinstance(found, str)
    return found
