"""The web console (/console) in a real headless Chromium, against `hookwire run` as a
subprocess: log in with a token, watch events arrive live (and resume after a pause), see a
failing hook's errors with its target's answer, a delivery's attempts, replay a dead letter
and see it delivered, create, test and delete a hook, and an event whose data is markup
shown as text.

With ``HOOKWIRE_CONSOLE_SCREENSHOTS=1`` the tests save the screenshots of docs/console.md
into docs/console/; otherwise into their temporary folder (taken all the same).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
import trio
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.conftest import ADMIN, BASE_CONFIG
from tests.e2e.browser import WAIT, in_browser, open_chromium, text_of, wait_for
from tests.e2e.test_daemon import daemon, write
from tests.helpers import ROOT
from tests.http.sink import Received, Reply, Sink

pytestmark = pytest.mark.slow

MAINTENANCE = b"<p>maintenance window</p>"
XSS = "<img src=x onerror=alert(1)>"
AUTH = {"Authorization": f"Bearer {ADMIN}"}

T = TypeVar("T")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with open_chromium() as driver:
        yield driver


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/console/ when asked for, else the test's folder."""
    if os.environ.get("HOOKWIRE_CONSOLE_SCREENSHOTS"):
        return ROOT / "docs" / "console"
    return tmp_path


class Target:
    """A webhook target that is down (503 with a page of text) or up (200), as told."""

    def __init__(self) -> None:
        self.down = False

    def __call__(self, request: Received) -> Reply:
        if self.down:
            return Reply(503, MAINTENANCE, (("content-type", "text/html"),))
        return Reply(200, b"thanks", (("content-type", "text/plain"),))


def config(tmp_path: Path, sink: Sink) -> Path:
    """Two hooks to one target: orders tries again in an hour, invoices gives up at once."""
    hooks = f"""
[delivery]
allow_networks = ["127.0.0.0/8"]

[[hooks]]
name = "orders"
event = "orders/"
url = "{sink.url}/orders"
retry = ["1h"]

[[hooks]]
name = "invoices"
event = "invoices/"
url = "{sink.url}/invoices"
retry = []
"""
    journal = BASE_CONFIG.replace('backend = "memory"', 'backend = "sqlite"\npath = "journal.db"')
    return write(tmp_path, journal + hooks)


async def answer(client: httpx.AsyncClient, path: str, pick: Callable[[Any], T]) -> T:
    """What ``pick`` takes from the daemon's JSON answer to ``GET path``."""
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return pick(response.json())


async def poll(read: Callable[[], Awaitable[T]]) -> T:
    """``read()``'s first truthy value, asked every 50 ms for at most ``WAIT`` seconds."""
    with trio.fail_after(WAIT):
        # The daemon is another process: there is no event to wait on.
        while not (found := await read()):  # noqa: ASYNC110
            await trio.sleep(0.05)
    return found


# browser steps (blocking: run with in_browser)


def log_in(driver: WebDriver, url: str) -> None:
    driver.get(f"{url}/console")
    driver.find_element(By.ID, "token").send_keys(ADMIN)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_for(driver, lambda d: text_of(d, "#live-state").startswith("live"), "the live stream")


def event_rows(driver: WebDriver) -> list[list[str]]:
    """The live view's rows, newest first: id, time, event, device, data (as text)."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#events tbody tr')]"
        ".map((row) => [...row.cells].map((cell) => cell.textContent))"
    )
    assert isinstance(rows, list)
    return rows


def wait_for_event(driver: WebDriver, event_id: int) -> list[str]:
    def shown(d: WebDriver) -> list[str] | None:
        return next((row for row in event_rows(d) if row[0] == str(event_id)), None)

    return wait_for(driver, shown, f"event {event_id} in the live view")


def open_tab(driver: WebDriver, name: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#tabs [data-tab="{name}"]').click()


def click(driver: WebDriver, css: str) -> None:
    """Click what ``css`` finds, once it is there (and again if the page redrew it first)."""

    def clicked(d: WebDriver) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return True

    wait_for(driver, clicked, f"{css} to click")


def wait_for_text(driver: WebDriver, css: str, *parts: str) -> str:
    def shown(d: WebDriver) -> str | None:
        found = text_of(d, css)
        return found if all(part in found for part in parts) else None

    return wait_for(driver, shown, f"{parts} in {css}")


def screenshot(driver: WebDriver, path: Path, css: str | None = None) -> None:
    """The whole page (the window grown to its height, at most 2400 px), or the element
    ``css`` finds, as a PNG."""
    height = driver.execute_script(
        "return document.documentElement.scrollHeight + outerHeight - innerHeight"
    )
    assert isinstance(height, int)
    driver.set_window_size(1280, min(max(height, 600), 2400))
    try:
        if css is None:
            assert driver.save_screenshot(str(path))
        else:
            assert driver.find_element(By.CSS_SELECTOR, css).screenshot(str(path))
    finally:
        driver.set_window_size(1280, 900)


# tests


async def test_log_in_and_watch_events_live(
    tmp_path: Path, browser: WebDriver, nursery: trio.Nursery, shots: Path
) -> None:
    sink = Sink(Target())
    await nursery.start(sink.serve)
    async with (
        daemon(config(tmp_path, sink)) as d,
        httpx.AsyncClient(base_url=d.url, headers=AUTH, timeout=5) as client,
    ):
        await in_browser(log_in, browser, d.url)
        await client.post("/v1/devices/events", data={"name": "temp", "data": "21.5"})
        temp = await in_browser(wait_for_event, browser, 1)
        assert (temp[2], temp[3], temp[4]) == ("temp", "api", "21.5")

        # Data and names are text: the markup shows as its characters and runs nothing.
        await client.post("/v1/devices/events", data={"name": "xss/<b>", "data": XSS})
        xss = await in_browser(wait_for_event, browser, 2)
        assert (xss[2], xss[4]) == ("xss/<b>", XSS)
        assert browser.find_elements(By.TAG_NAME, "img") == []
        assert browser.find_elements(By.TAG_NAME, "b") == []
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert  # noqa: B018  (the property raises when there is none)

        # The token is in this tab's sessionStorage and in no URL the page asked for.
        urls = browser.execute_script(
            "return [location.href, ...performance.getEntriesByType('resource')"
            ".map((entry) => entry.name)]"
        )
        assert not any(ADMIN in url for url in urls), urls
        assert browser.execute_script("return sessionStorage.getItem('hookwire-token')") == ADMIN
        assert browser.find_element(By.ID, "token").get_attribute("value") == ""

        # Paused, the stream is closed; resumed, it asks for what came since (Last-Event-ID).
        await in_browser(click, browser, "#pause")
        await in_browser(wait_for_text, browser, "#live-state", "paused")
        await poll(lambda: answer(client, "/healthz", lambda a: a["subscribers"] == 0))
        await client.post("/v1/devices/events", data={"name": "temp", "data": "22"})
        await in_browser(click, browser, "#pause")
        missed = await in_browser(wait_for_event, browser, 3)
        assert (missed[2], missed[4]) == ("temp", "22")
        assert [row[0] for row in await in_browser(event_rows, browser)] == ["3", "2", "1"]
        await in_browser(screenshot, browser, shots / "live.png")


async def test_a_failing_hook_and_a_dead_letter_replayed(
    tmp_path: Path, browser: WebDriver, nursery: trio.Nursery, shots: Path
) -> None:
    target = Target()
    target.down = True
    sink = Sink(target)
    await nursery.start(sink.serve)
    async with (
        daemon(config(tmp_path, sink)) as d,
        httpx.AsyncClient(base_url=d.url, headers=AUTH, timeout=5) as client,
    ):
        await in_browser(log_in, browser, d.url)
        await client.post("/v1/devices/events", data={"name": "orders/new", "data": '{"id":7}'})
        await client.post("/v1/devices/events", data={"name": "invoices/new", "data": "42"})
        [letter] = await poll(
            lambda: answer(client, "/v1/dead-letters", itemgetter("dead_letters"))
        )
        await poll(
            lambda: answer(client, "/v1/deliveries?state=retrying", itemgetter("deliveries"))
        )

        # The hook's last failures: the request sent, the target's answer (as text), and
        # when the delivery is tried again.
        await in_browser(open_tab, browser, "hooks")
        await in_browser(click, browser, "#hook-list tbody tr")
        failure = await in_browser(
            wait_for_text, browser, "#failures", "status 503", MAINTENANCE.decode(), "next try"
        )
        assert f"POST {sink.url}/orders" in failure
        assert "error status 503 from 127.0.0.1" in failure
        listed = text_of(browser, "#hook-list tbody tr")
        assert "orders" in listed and "5xx" in listed
        assert "0 delivered and 1 failed" in text_of(browser, "#chart-caption")
        retrying = await in_browser(wait_for_text, browser, "#deliveries tbody", "retrying")
        assert "orders/new" in retrying
        await in_browser(screenshot, browser, shots / "hook-failures.png")

        # One delivery's attempts, from the hook's deliveries.
        await in_browser(click, browser, "#deliveries button.link")
        shown = await in_browser(wait_for_text, browser, "#delivery", "retrying", "next try")
        assert '{"id":7}' in shown and MAINTENANCE.decode() in shown
        await in_browser(screenshot, browser, shots / "delivery.png", "#delivery")

        # The dead letter, replayed once the target is back, is delivered.
        await in_browser(open_tab, browser, "dead")
        dead = await in_browser(wait_for_text, browser, "#dead-letters tbody", letter["id"])
        assert "invoices/new" in dead and "error status 503 from 127.0.0.1" in dead
        await in_browser(screenshot, browser, shots / "dead-letters.png")
        target.down = False
        await in_browser(click, browser, f'#dead-letters input[value="{letter["id"]}"]')
        await in_browser(click, browser, "#replay")
        await in_browser(wait_for_text, browser, "#replayed", letter["id"], "delivered")
        await in_browser(wait_for_text, browser, "#dead-state", "no dead letter")
    assert sorted(r.target for r in sink.requests) == ["/invoices", "/invoices", "/orders"]
    assert parse_qs(sink.requests[-1].body.decode())["data"] == ["42"]


async def test_create_test_and_delete_a_hook(
    tmp_path: Path, browser: WebDriver, nursery: trio.Nursery
) -> None:
    sink = Sink(Target())
    await nursery.start(sink.serve)
    document = orjson.dumps({"name": "made", "event": "made/", "url": f"{sink.url}/made"})
    async with (
        daemon(config(tmp_path, sink)) as d,
        httpx.AsyncClient(base_url=d.url, headers=AUTH, timeout=5) as client,
    ):
        await in_browser(log_in, browser, d.url)
        await in_browser(open_tab, browser, "hooks")
        await in_browser(click, browser, "#create summary")
        browser.find_element(By.ID, "create-doc").send_keys(document.decode())
        await in_browser(click, browser, "#create-form button")
        await in_browser(wait_for_text, browser, "#create-state", "created made")
        await in_browser(wait_for_text, browser, "#hook-title", "made")
        [made] = [h for h in (await client.get("/v1/integrations")).json() if h["name"] == "made"]

        await in_browser(click, browser, "#hook-test")
        answered = await in_browser(wait_for_text, browser, "#test-result", "Answered 200")
        assert f"POST {sink.url}/made" in answered and "thanks" in answered
        assert [r.target for r in sink.requests] == ["/made"]

        await in_browser(click, browser, "#hook-delete")
        await in_browser(wait_for_text, browser, "#hook-delete", "Really delete made?")
        await in_browser(click, browser, "#hook-delete")
        await in_browser(wait_for_text, browser, "#hooks-state", "deleted made")
        assert (await client.get(f"/v1/integrations/{made['id']}")).status_code == 404
        assert "made" not in text_of(browser, "#hook-list")
