"""No route that changes anything works without the write token; the read token, when set, guards
the reads; tokens never reach a log line or an answer; bodies over the limit are refused (413)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sample_ledger import Sample
from starlette.routing import Route
from web_client import AUTH, READ_TOKEN, TOKEN, TestClient, client

from engine.cli.main import main
from engine.web import page
from engine.web.app import create_app
from engine.web.config import MAX_BODY, WebConfig
from engine.web.redaction import TokenFilter

SIGNAL = {"signal_id": "auth-1", "symbol": "AAPL", "side": "buy", "qty": 1, "price": "10.00"}
BODIES = {"/api/signals": json.dumps(SIGNAL), "/api/signals/batch": json.dumps([SIGNAL])}
WRONG = {
    "no header": {},
    "another token": {"Authorization": "Bearer not-the-token-0123456789"},
    "the token and more": {"Authorization": f"Bearer {TOKEN}x"},
    "a prefix of it": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "the read token": {"Authorization": f"Bearer {READ_TOKEN}"},
    "another scheme": {"Authorization": f"Basic {TOKEN}"},
    "no scheme": {"Authorization": TOKEN},
}


def test_the_mutating_routes_are_the_two_signal_posts() -> None:
    """A new route that changes anything must be added to BODIES, so the tests below cover it."""
    spec = create_app(WebConfig("sqlite:///unused.db", token=TOKEN)).openapi()
    assert sorted((method, path) for path, operations in spec["paths"].items() for method in operations
                  if method != "get") == [("post", path) for path in sorted(BODIES)]
    # The page's routes stay out of the spec: they only ever read.
    assert {method for route in page.router.routes if isinstance(route, Route) for method in route.methods or ()} \
        == {"GET"}


@pytest.fixture
def guarded(sample: Sample) -> Iterator[TestClient]:
    with client(WebConfig(sample.url, token=TOKEN, read_token=READ_TOKEN)) as test_client:
        yield test_client


@pytest.mark.parametrize("path", sorted(BODIES))
@pytest.mark.parametrize("case", sorted(WRONG))
def test_every_mutating_route_refuses_without_the_write_token(
        guarded: TestClient, sample: Sample, path: str, case: str) -> None:
    answer = guarded.post(path, content=BODIES[path], headers=WRONG[case])
    assert (answer.status_code, answer.headers["www-authenticate"], answer.json()) == (401, "Bearer", {
        "error": "unauthorized", "reason": "a valid bearer token is required (Authorization: Bearer …)"})
    assert sample.ledger.pending_signals() == []


def test_a_read_only_server_refuses_every_post_even_with_a_token(sample: Sample) -> None:
    with client(WebConfig(sample.url)) as read_only:
        for path, body in BODIES.items():
            answer = read_only.post(path, content=body, headers=AUTH)
            assert (answer.status_code, answer.json()["error"]) == (403, "read_only")
        assert read_only.get("/api/lifecycles").json()["count"] == 9
    assert sample.ledger.pending_signals() == []


def test_with_a_read_token_the_reads_need_it_or_the_write_token(guarded: TestClient) -> None:
    assert guarded.get("/api/lifecycles").status_code == 401
    assert guarded.get("/api/lifecycles", headers=WRONG["another token"]).status_code == 401
    assert guarded.get("/report").status_code == 401
    assert guarded.get("/api/lifecycles", headers=WRONG["the read token"]).json()["count"] == 9
    assert guarded.get("/api/lifecycles", headers=AUTH).json()["count"] == 9
    assert guarded.get("/").status_code == 200  # the page holds no data: it asks for the token


def test_no_token_reaches_a_log_line_or_an_answer(guarded: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [guarded.post(path, content=body, headers=headers)
               for path, body in BODIES.items() for headers in (AUTH, *WRONG.values())]
    answers.append(guarded.post("/api/signals", content=json.dumps({**SIGNAL, "qty": 0}), headers=AUTH))
    answers += [guarded.get("/api/lifecycles", headers=h) for h in (AUTH, WRONG["the read token"])]
    assert [a.status_code for a in answers[:2]] == [202, 401]
    assert "queued signal auth-1 as inbox entry 1" in caplog.text
    for secret in (TOKEN, READ_TOKEN, "not-the-token-0123456789"):
        assert secret not in caplog.text
        assert all(secret not in a.text for a in answers)


def test_the_log_filter_masks_a_token_wherever_a_record_carries_it() -> None:
    record = logging.LogRecord("uvicorn.error", logging.DEBUG, __file__, 1, "header %s: %r", ("authorization",
                               f"Bearer {TOKEN}"), None)
    assert TokenFilter([TOKEN]).filter(record)
    assert record.getMessage() == "header authorization: 'Bearer ***'"


def test_serve_refuses_to_start_without_a_token_unless_read_only(
        sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("SMART_EXECUTOR_API_TOKEN", "SMART_EXECUTOR_API_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", "--database-url", sample.url]) == 2
    assert capsys.readouterr().err == (
        "smartexec: SMART_EXECUTOR_API_TOKEN: is required to accept signals (or --token-file PATH); "
        "--read-only serves the reads alone\n")
    monkeypatch.setenv("SMART_EXECUTOR_API_TOKEN", "short-secret")
    assert main(["serve", "--database-url", sample.url]) == 2
    assert capsys.readouterr().err == (
        "smartexec: SMART_EXECUTOR_API_TOKEN: must be at least 16 characters without spaces\n")
    missing = tmp_path / "no-such-token"
    assert main(["serve", "--token-file", str(missing), "--database-url", sample.url]) == 2
    assert capsys.readouterr().err == f"smartexec: {missing}: cannot read the token file (No such file or directory)\n"
    nowhere = tmp_path / "no-ledger.db"
    assert main(["serve", "--read-only", "--database-url", f"sqlite:///{nowhere}"]) == 2
    assert capsys.readouterr().err == (
        f"smartexec: no ledger at {nowhere} (give --database-url or SMART_EXECUTOR_DATABASE_URL)\n")


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(api: TestClient, sample: Sample) -> None:
    """The limit counts the bytes received: a chunked upload (no Content-Length) is cut off too."""
    too_large = {"error": "too_large", "field": "body", "reason": f"is over the limit of {MAX_BODY} bytes"}
    declared = api.post("/api/signals", content=b" " * (MAX_BODY + 1), headers=AUTH)
    assert (declared.status_code, declared.json()) == (413, too_large)

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 1024 + 1):
            yield b" " * 1024

    streamed = api.post("/api/signals/batch", content=chunks(), headers=AUTH)
    assert "content-length" not in streamed.request.headers
    assert (streamed.status_code, streamed.json()) == (413, too_large)
    at_the_limit = api.post("/api/signals", content=json.dumps(SIGNAL).ljust(MAX_BODY), headers=AUTH)
    assert at_the_limit.status_code == 202
    assert [e.payload["signal_id"] for e in sample.ledger.pending_signals()] == ["auth-1"]
