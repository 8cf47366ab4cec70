"""The auditors' page in a real browser (Debian's chromium, driven by Playwright) against a real
`smartexec serve`: it loads, filters, tells a lifecycle's story and shows the report, with no
console error and no request to any host but the server's; the server's log holds no token."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from harness import SMARTEXEC, product_environment, sqlite_url
from sample_ledger import Sample
from web_client import AUTH, TOKEN

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    if os.environ.get("CI") == "true":  # CI installs it (.ci/run): there, a missing browser is a failure
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y -q chromium`", pytrace=False)
    pytest.skip(f"{CHROMIUM} is not installed (`apt-get install chromium`)", allow_module_level=True)

from playwright.sync_api import ConsoleMessage, Page, Route, expect, sync_playwright  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """`smartexec serve` in a process of its own; its output collected line by line."""

    def __init__(self, url: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [*SMARTEXEC, "serve", "--port", str(self.port), "--database-url", url, "--no-anchor-log"],
            env={**product_environment(), "SMART_EXECUTOR_API_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            self._new.put(line)
        self._new.put(None)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        while (line := self._new.get(timeout=timeout)) is not None:
            if text in line:
                return
        raise AssertionError(f"`smartexec serve` ended before printing {text!r}:\n{''.join(self.lines)}")

    def stop(self) -> str:
        self.process.terminate()
        self.process.wait(15)
        self._reader.join(15)
        return "".join(self.lines)


@pytest.fixture(scope="module")
def served(sample_file: tuple[Path, Sample], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module (starting one takes seconds), on a copy of the sample ledger."""
    folder = tmp_path_factory.mktemp("served")
    shutil.copyfile(sample_file[0], folder / "ledger.db")
    running = Server(sqlite_url(folder))
    try:
        running.wait_for("Uvicorn running on")
        yield running
    finally:
        running.stop()


def rows(page: Page, column: int) -> list[str]:
    return page.locator(f"#lifecycle-table tbody tr td:nth-child({column})").all_inner_texts()


def test_the_page_lists_filters_tells_a_story_and_shows_the_report(served: Server) -> None:
    hosts: list[str] = []
    problems: list[str] = []

    def only_this_machine(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        hosts.append(host)
        if host == "127.0.0.1":
            route.continue_()
        else:
            route.abort()

    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page()
            page.route("**/*", only_this_machine)
            page.on("console", console)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.goto(served.base + "/")

            expect(page.locator("#count")).to_have_text("9 lifecycle(s)")
            assert rows(page, 2) == [f"sig-{letter}" for letter in "ABCDEFGHJ"]

            page.select_option("#state", "CLOSED")
            page.click("#apply")
            expect(page.locator("#count")).to_have_text("3 lifecycle(s)")
            assert rows(page, 2) == ["sig-A", "sig-B", "sig-F"]

            page.select_option("#state", "")
            page.fill("#symbol", "crwd")
            page.fill("#since", "2026-11-25")
            page.fill("#until", "2026-11-25")
            page.click("#apply")
            expect(page.locator("#count")).to_have_text("1 lifecycle(s)")
            assert rows(page, 2) == ["sig-E"]

            page.click("a[data-lifecycle='5']")
            expect(page.locator("#story-title")).to_have_text("Lifecycle 5 - signal sig-E (FLATTENED)")
            transitions = page.locator("#story-transitions tbody tr td:nth-child(5)").all_inner_texts()
            assert transitions == ["PENDING", "LIMIT_SUBMITTED", "FILLED", "REJECTED", "FLATTENED"]
            assert page.locator("#story-fills tbody tr td:nth-child(6)").all_inner_texts() == [
                "535.90", "536.10", "535.50"]
            assert page.locator("#story-orders tbody tr td:nth-child(3)").all_inner_texts() == ["entry", "flatten"]

            page.click("#tab-report")
            report = page.frame_locator("#report-frame")
            expect(report.locator("h2").first).to_have_text("Week-1 checklist")
            expect(page.locator("#error")).to_have_text("")
        finally:
            browser.close()

    assert problems == []
    assert hosts and set(hosts) == {"127.0.0.1"}


def test_the_served_process_takes_a_signal_and_logs_no_token(served: Server) -> None:
    signal = '{"signal_id": "served-1", "symbol": "AAPL", "side": "buy", "qty": 1, "price": "10.00"}'
    with httpx.Client(base_url=served.base) as http:
        assert http.post("/api/signals", content=signal, headers=AUTH).json() == {
            "queued": [{"signal_id": "served-1", "inbox_entry": 1}]}
        wrong = {"Authorization": "Bearer wrong-token-0123456789"}
        assert http.post("/api/signals", content=signal, headers=wrong).status_code == 401
    served.wait_for('"POST /api/signals HTTP/1.1" 401')
    output = "".join(served.lines)
    assert "queued signal served-1 as inbox entry 1" in output and '"POST /api/signals HTTP/1.1" 202' in output
    assert TOKEN not in output and "wrong-token-0123456789" not in output
