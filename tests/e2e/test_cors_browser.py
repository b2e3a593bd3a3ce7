"""CORS as a browser applies it (issue 21, part 4): a page served from a second loopback
origin opens an EventSource on the daemon with ``?access_token=`` and publishes with fetch
(through a preflight), receives the events, and resumes with Last-Event-ID after the daemon
restarts (same journal file, same port); a page of an origin not listed in
``[api] cors_origins`` gets nothing, and stores nothing."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import trio
from selenium.webdriver.remote.webdriver import WebDriver

from tests.conftest import ADMIN, BASE_CONFIG, SUBSCRIBER
from tests.e2e.browser import in_browser, open_chromium, wait_for
from tests.e2e.test_daemon import daemon, write
from tests.http.sink import Reply, Sink

pytestmark = pytest.mark.slow

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>a page on another origin</title></head>
<body><script>
const params = new URLSearchParams(location.search);
const api = params.get("api");
window.received = [];
window.errors = 0;
window.opened = 0;
const source = new EventSource(
  `${api}/v1/devices/events/temp?access_token=${encodeURIComponent(params.get("stream"))}`);
window.source = source;
source.onopen = () => { window.opened += 1; };
source.onerror = () => { window.errors += 1; };
source.addEventListener("temp", (e) => {
  window.received.push([e.lastEventId, JSON.parse(e.data).data]);
});
window.publish = (data) => fetch(`${api}/v1/devices/events`, {
  method: "POST",
  headers: {"Authorization": `Bearer ${params.get("publish")}`,
            "Content-Type": "application/json"},
  body: JSON.stringify({name: "temp", data}),
}).then((answer) => answer.json(), (error) => ({refused: String(error)}));
</script></body></html>
"""
"""The page of the docs' example (docs/api.md), its tokens and the API's address in its URL."""

SQLITE = 'backend = "sqlite"\npath = "journal.db"'


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with open_chromium() as driver:
        yield driver


def config(tmp_path: Path, origin: str, port: int = 0) -> Path:
    text = BASE_CONFIG.replace('backend = "memory"', SQLITE).replace("port = 0", f"port = {port}")
    return write(tmp_path, text + f'\n[api]\ncors_origins = ["{origin}"]\n')


def open_page(driver: WebDriver, page: Sink, api: str) -> None:
    query = urlencode({"api": api, "stream": SUBSCRIBER, "publish": ADMIN})
    driver.get(f"{page.url}/page.html?{query}")


def page_value(driver: WebDriver, expression: str) -> object:
    return driver.execute_script(f"return {expression}")


def publish_from_page(driver: WebDriver, data: str) -> object:
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.publish(arguments[0]).then(done);",
        data,
    )


def wait_until_received(driver: WebDriver, expected: list[list[str]]) -> None:
    wait_for(driver, lambda d: page_value(d, "window.received") == expected, f"{expected}")
    assert page_value(driver, "window.received") == expected


def set_offline(driver: WebDriver, offline: bool) -> None:
    """Cut the page off the network (DevTools' network emulation), or reconnect it."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )


async def test_a_listed_origin_streams_and_resumes_after_a_restart(
    tmp_path: Path, browser: WebDriver, nursery: trio.Nursery
) -> None:
    page = Sink(Reply(200, PAGE, (("content-type", "text/html; charset=utf-8"),)))
    await nursery.start(page.serve)
    async with daemon(config(tmp_path, page.url)) as first:
        await in_browser(open_page, browser, page, first.url)
        await in_browser(wait_for, browser, lambda d: page_value(d, "window.opened"), "open")
        assert await in_browser(publish_from_page, browser, "21.5") == {"ok": True, "id": 1}
        await in_browser(wait_until_received, browser, [["1", "21.5"]])
        port = first.port
        # Offline, the page cannot reconnect before the event below is stored: it can get
        # that event only by resuming after the last one it received.
        await in_browser(set_offline, browser, True)
        assert await in_browser(publish_from_page, browser, "x") == {
            "refused": "TypeError: Failed to fetch"
        }
        first.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await first.process.wait() == 0
    try:
        async with (
            daemon(config(tmp_path, page.url, port)) as second,
            httpx.AsyncClient(base_url=second.url, timeout=5) as client,
        ):
            assert second.port == port
            published = await client.post(
                "/v1/devices/events",
                data={"name": "temp", "data": "22.5"},
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
            assert published.json() == {"ok": True, "id": 2}
            assert page_value(browser, "window.received") == [["1", "21.5"]]
            await in_browser(set_offline, browser, False)
            await in_browser(wait_until_received, browser, [["1", "21.5"], ["2", "22.5"]])
            assert page_value(browser, "window.opened") == 2
            assert page_value(browser, "window.errors") >= 1  # type: ignore[operator]
    finally:
        await in_browser(set_offline, browser, False)


async def test_an_origin_not_listed_gets_nothing(
    tmp_path: Path, browser: WebDriver, nursery: trio.Nursery
) -> None:
    page = Sink(Reply(200, PAGE, (("content-type", "text/html; charset=utf-8"),)))
    await nursery.start(page.serve)
    async with (
        daemon(config(tmp_path, "http://127.0.0.1:9")) as d,
        httpx.AsyncClient(base_url=d.url, timeout=5) as client,
    ):
        await in_browser(open_page, browser, page, d.url)
        # The stream's answer names no origin: the browser fails it for good (CLOSED).
        await in_browser(
            wait_for,
            browser,
            lambda b: page_value(b, "window.errors && window.source.readyState === 2"),
            "the EventSource to fail",
        )
        refused = await in_browser(publish_from_page, browser, "21.5")
        assert refused == {"refused": "TypeError: Failed to fetch"}
        assert (await client.get("/healthz")).json()["last_event_id"] == 0
        published = await client.post(
            "/v1/devices/events",
            data={"name": "temp", "data": "22.5"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert published.json() == {"ok": True, "id": 1}
        assert page_value(browser, "window.received") == []
        assert page_value(browser, "window.opened") == 0
