"""POST /api/signals and /api/signals/batch: `smartexec submit` over HTTP, with its checks, its
inbox rows and its outcomes (exit 0/2/3/4/5 -> 202 or 200 / 422 / 409 refused / 409 conflict / 504)."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import Rig, a_signal, migrated_ledger, resting_venue, sqlite_url, until
from sample_ledger import Sample
from web_client import AUTH, TOKEN, TestClient

from engine.cli.main import main
from engine.core.domain import SIGNAL_FIELDS
from engine.ledger import Ledger
from engine.service.runner import consume_inbox
from engine.web.app import create_app
from engine.web.config import WebConfig

GOOD = {"signal_id": "web-1", "symbol": "aapl", "side": "buy", "qty": 30, "price": "100.10", "stop": "99.00",
        "created_at": "2026-11-26T15:00:00+00:00"}
# GOOD as a bot may write it: the price a JSON number, which must be kept as its text, 100.10.
LINE = json.dumps(GOOD).replace('"100.10"', "100.10")


def post(api: TestClient, body: str | bytes, path: str = "/api/signals", **params: Any) -> httpx.Response:
    return api.post(path, content=body, params=params, headers={**AUTH, "Content-Type": "application/json"})


def inbox(ledger: Ledger) -> list[Any]:
    return [entry.payload for entry in ledger.pending_signals()]


def test_the_spec_describes_every_signal_field() -> None:
    spec = create_app(WebConfig("sqlite:///unused.db", token=TOKEN)).openapi()
    body = spec["paths"]["/api/signals"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {*SIGNAL_FIELDS, "mode"}


def test_a_signal_is_queued_as_submit_queues_the_same_json_line(
        api: TestClient, sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prevents the HTTP intake from drifting from the command line's: the same line makes the same
    inbox row (numbers kept as their exact text, not floats)."""
    answer = post(api, LINE)
    assert (answer.status_code, answer.json()) == (202, {"queued": [{"signal_id": "web-1", "inbox_entry": 1}]})
    (tmp_path / "cli").mkdir()
    with migrated_ledger(sqlite_url(tmp_path / "cli")) as other:
        monkeypatch.setattr("sys.stdin", io.StringIO(LINE + "\n"))
        assert main(["submit", "--database-url", other.url]) == 0
        assert inbox(sample.ledger) == inbox(other) == [GOOD]


def test_a_signal_without_created_at_is_stamped_when_received(api: TestClient, sample: Sample) -> None:
    unstamped = {k: v for k, v in GOOD.items() if k != "created_at"}
    assert post(api, json.dumps(unstamped)).status_code == 202
    [queued] = inbox(sample.ledger)
    entry = sample.ledger.inbox_entry(1)
    assert set(queued) == {*unstamped, "created_at"}
    assert abs((entry["received_at"] - datetime.fromisoformat(queued["created_at"])).total_seconds()) < 5


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"qty": 0}, "qty", "must be greater than zero, was 0"),
    ({"stop": "101"}, "stop", "must be below the price 100.10 for a buy, was 101"),
    ({"side": "hold"}, "side", "must be buy or sell, was 'hold'"),
    ({"colour": "red"}, "colour", "is not a signal field (the fields are signal_id, symbol, side, qty, price, stop, "
                                  "target, created_at, expires_at, trail_pct, break_even, account)"),
    ({"mode": "fast"}, "mode", "must be smart or legacy, was 'fast'"),
])
def test_a_bad_field_is_422_naming_it_as_submit_does_and_queues_nothing(
        api: TestClient, sample: Sample, change: dict[str, Any], field: str, reason: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    line = json.dumps({**GOOD, **change})
    answer = post(api, line)
    assert (answer.status_code, answer.json()) == (422, {"error": "invalid", "field": field, "reason": reason})
    monkeypatch.setattr("sys.stdin", io.StringIO(line + "\n"))
    assert main(["submit", "--database-url", sample.url]) == 2
    assert capsys.readouterr().err.endswith(f"smartexec: {field}: {reason} (stdin line 1)\n")
    assert inbox(sample.ledger) == []


@pytest.mark.parametrize(("body", "reason"), [
    (b"{", "not JSON (Expecting property name enclosed in double quotes)"),
    (b'{"qty": NaN}', "not a signal (NaN is not a number a signal may carry)"),
    (b'{"signal_id": "a", "signal_id": "b"}', "not a signal (the key 'signal_id' appears twice in one object)"),
    (b"\xff\xfe", "not UTF-8 text"),
])
def test_a_body_that_is_not_one_json_signal_is_422(api: TestClient, sample: Sample, body: bytes, reason: str) -> None:
    answer = post(api, body)
    assert (answer.status_code, answer.json()) == (422, {"error": "invalid", "field": "body", "reason": reason})


def test_the_single_route_takes_one_object(api: TestClient, sample: Sample) -> None:
    answer = post(api, json.dumps([GOOD]))
    assert (answer.status_code, answer.json()) == (422, {
        "error": "invalid", "field": "signal", "reason": "must be a JSON object of fields, was list"})


def test_a_batch_is_queued_in_order_or_not_at_all(api: TestClient, sample: Sample) -> None:
    batch = [{**GOOD, "signal_id": f"web-{n}"} for n in range(1, 4)]
    bad = [batch[0], {**batch[1], "qty": "-3"}, batch[2]]
    answer = post(api, json.dumps(bad), "/api/signals/batch")
    assert (answer.status_code, answer.json()) == (422, {
        "error": "invalid", "field": "qty", "reason": "must be greater than zero, was '-3' (signals[1])"})
    conflicting = [batch[0], {**GOOD, "signal_id": "sig-A"}]  # sig-A is recorded as 10 CRWD
    answer = post(api, json.dumps(conflicting), "/api/signals/batch")
    assert (answer.status_code, answer.json()["error"]) == (409, "conflict")
    assert inbox(sample.ledger) == []

    answer = post(api, json.dumps(batch), "/api/signals/batch")
    assert (answer.status_code, answer.json()) == (202, {"queued": [
        {"signal_id": f"web-{n}", "inbox_entry": n} for n in range(1, 4)]})
    assert [p["signal_id"] for p in inbox(sample.ledger)] == ["web-1", "web-2", "web-3"]
    for body, reason in (("{}", "must be a JSON array of one or more signals"),
                         ("[]", "must be a JSON array of one or more signals"),
                         (json.dumps([{}] * 501), "at most 500 signals a request, was 501")):
        answer = post(api, body, "/api/signals/batch")
        assert (answer.status_code, answer.json()) == (422, {"error": "invalid", "field": "body", "reason": reason})


def test_a_signal_id_taken_by_other_content_is_409_and_the_same_content_is_queued_again(
        api: TestClient, sample: Sample) -> None:
    """The ledger is never rewritten; a repeat of a recorded signal is harmless (the engine keeps its
    one lifecycle), so it is queued as `submit` queues it."""
    recorded = {"signal_id": "sig-A", "symbol": "CRWD", "side": "buy", "qty": 10, "price": "534.82",
                "stop": "529.47"}
    answer = post(api, json.dumps({**recorded, "qty": 11}))
    assert (answer.status_code, answer.json()) == (409, {
        "error": "conflict", "reason": "signal_id 'sig-A' is already recorded with different content (qty)"})
    assert inbox(sample.ledger) == []
    assert post(api, json.dumps(recorded)).status_code == 202
    assert post(api, json.dumps(recorded)).json() == {"queued": [{"signal_id": "sig-A", "inbox_entry": 2}]}


def test_waiting_with_no_engine_running_is_504_and_the_signal_stays_queued(api: TestClient, sample: Sample) -> None:
    answer = post(api, json.dumps(GOOD), wait=0.2)
    assert (answer.status_code, answer.json()) == (504, {
        "error": "not_picked_up", "reason": "no running `smartexec run` picked up inbox entry 1 within 0.2s",
        "queued": [{"signal_id": "web-1", "inbox_entry": 1}]})
    assert [p["signal_id"] for p in inbox(sample.ledger)] == ["web-1"]
    too_long = post(api, json.dumps(GOOD), wait=31)
    assert (too_long.status_code, too_long.json()["field"]) == (422, "wait")


def test_a_running_engine_picks_a_signal_up_200_or_refuses_it_409(tmp_path: Path) -> None:
    """The whole way: HTTP -> inbox -> the real engine (consume_inbox) on the local venue -> the answer."""
    with resting_venue() as venue, migrated_ledger(sqlite_url(tmp_path)) as ledger:
        rig = Rig(venue, ledger)
        now = venue.clock.now()
        fresh = {**a_signal("web-fresh").as_facts(), "created_at": now.isoformat()}
        stale = {**a_signal("web-stale").as_facts(), "created_at": (now - timedelta(hours=1)).isoformat()}
        app = create_app(WebConfig(ledger.url, token=TOKEN))

        async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
            async with rig.running() as executor, httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=AUTH) as http:
                consumer = asyncio.create_task(consume_inbox(executor, interval=0.05))
                try:
                    taken = await http.post("/api/signals", params={"wait": 20}, content=json.dumps(fresh))
                    refused = await http.post("/api/signals", params={"wait": 20}, content=json.dumps(stale))
                    ledger.post_signal({**fresh, "signal_id": "raw-bad", "qty": 0})
                    await until(lambda: ledger.pending_signals() == [], "the inbox to be served")
                    refusals = await http.get("/api/refusals")
                finally:
                    consumer.cancel()
            return taken, refused, refusals

        taken, refused, refusals = asyncio.run(scenario())
    lc = ledger.find_by_signal("web-fresh")
    assert lc is not None
    assert (taken.status_code, taken.json()) == (200, {
        "queued": [{"signal_id": "web-fresh", "inbox_entry": 1}],
        "picked_up": [{"inbox_entry": 1, "lifecycle_id": lc.id, "signal_id": "web-fresh", "state": "LIMIT_SUBMITTED"}]})
    body = refused.json()
    assert (refused.status_code, body["error"], body["queued"]) == (
        409, "refused", [{"signal_id": "web-stale", "inbox_entry": 2}])
    assert body["reason"] == ("inbox entry 2: lifecycle 2 web-stale is FAILED: signal is 3600.0s old (older than "
                              "SMART_EXECUTOR_SIGNAL_MAX_AGE 30s)")
    # The stale signal's FAILED lifecycle, and a row no HTTP client can post (it went straight into
    # the inbox), refused by the engine at intake.
    assert [(r["signal_id"], r["stage"], r["reason"]) for r in refusals.json()["refusals"]] == [
        ("web-stale", "engine", "signal is 3600.0s old (older than SMART_EXECUTOR_SIGNAL_MAX_AGE 30s)"),
        ("raw-bad", "inbox", "qty: must be greater than zero, was 0")]
