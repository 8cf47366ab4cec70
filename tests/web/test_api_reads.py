"""The auditor's reads over HTTP: the same rows `smartexec ledger …` and `smartexec report` show,
as JSON with decimals as strings, errors naming the parameter."""

from __future__ import annotations

import re

from sample_ledger import Sample
from web_client import TestClient

from engine.core.lifecycle import State


def ids(rows: list[dict[str, object]], key: str = "id") -> list[object]:
    return [row[key] for row in rows]


def test_lifecycles_filter_as_ledger_list_does(api: TestClient, sample: Sample) -> None:
    """Prevents the page's filters from selecting other rows than `ledger list` with the same flags."""
    every = api.get("/api/lifecycles").json()
    assert every["count"] == 9 and ids(every["lifecycles"]) == list(range(1, 10))
    by_state = api.get("/api/lifecycles", params={"state": "closed,flattened"}).json()
    assert ids(by_state["lifecycles"], "signal_id") == ["sig-A", "sig-B", "sig-E", "sig-F", "sig-G"]
    repeated = api.get("/api/lifecycles", params=[("state", "FAILED"), ("state", "canceled")]).json()
    assert ids(repeated["lifecycles"], "signal_id") == ["sig-C", "sig-D", "sig-J"]
    crwd = api.get("/api/lifecycles", params={"symbol": "crwd"}).json()
    assert ids(crwd["lifecycles"], "signal_id") == ["sig-A", "sig-E"]
    day2 = api.get("/api/lifecycles", params={"since": "2026-11-25", "until": "2026-11-25"}).json()
    assert ids(day2["lifecycles"], "signal_id") == ["sig-E", "sig-F", "sig-G", "sig-H"]
    legacy = api.get("/api/lifecycles", params={"mode": "legacy", "limit": 1}).json()
    assert ids(legacy["lifecycles"], "signal_id") == ["sig-E"]


def test_a_lifecycle_row_carries_exact_decimals_as_strings(api: TestClient, sample: Sample) -> None:
    row = api.get("/api/lifecycles", params={"signal_id": "sig-A"}).json()["lifecycles"][0]
    assert {k: row[k] for k in ("qty", "filled_avg_price", "slippage", "realized_pnl", "r_multiple", "created_at")} \
        == {"qty": "10", "filled_avg_price": "535.00", "slippage": "0.000337", "realized_pnl": "110.60",
            "r_multiple": "2.0000", "created_at": "2026-11-24T14:30:00+00:00"}


def test_one_lifecycle_is_told_whole_by_id_or_by_signal_id(api: TestClient, sample: Sample) -> None:
    story = api.get("/api/lifecycles/sig-E").json()
    assert api.get(f"/api/lifecycles/{sample.ids['E']}").json() == story
    assert story["lifecycle"]["state"] == "FLATTENED"
    assert [(t["trigger"], t["to_state"]) for t in story["transitions"]] == [
        ("created", "PENDING"), ("submitted", "LIMIT_SUBMITTED"), ("fill", "FILLED"),
        ("guards_failed", "REJECTED"), ("flattened", "FLATTENED")]
    assert [(f["qty"], f["price"]) for f in story["fills"]] == [("5", "535.90"), ("5", "536.10"), ("10", "535.50")]
    assert [o["leg"] for o in story["orders"]] == ["entry", "flatten"]
    transitions = api.get("/api/lifecycles/sig-E/transitions").json()["transitions"]
    assert transitions == story["transitions"]


def test_an_unknown_lifecycle_is_a_404_naming_it(api: TestClient, sample: Sample) -> None:
    for key in ("no-such-signal", "0", "9" * 30):  # the last: no id is that large, it can only be a signal id
        answer = api.get(f"/api/lifecycles/{key}")
        assert (answer.status_code, answer.json()) == (404, {
            "error": "not_found", "field": "key", "reason": f"no lifecycle with id or signal id {key!r}"})


def test_a_key_that_is_no_id_and_no_signal_id_is_422(api: TestClient, sample: Sample) -> None:
    """Prevents '٣' (an Arabic-Indic three, which str.isdigit() accepts) from being read as lifecycle 3,
    and '²' from failing the server."""
    for key in ("٣", "²", "a" * 65):
        answer = api.get(f"/api/lifecycles/{key}/transitions")
        assert (answer.status_code, answer.json()) == (422, {
            "error": "invalid", "field": "key", "reason": "String should match pattern '^[A-Za-z0-9._:-]{1,64}$'"})


def test_bad_parameters_are_422_naming_the_parameter_and_the_reason(api: TestClient, sample: Sample) -> None:
    cases = {
        "since=yesterday": ("since", "expected an ISO date or date-time such as 2026-11-24 or 2026-11-24T15:30Z, "
                                     "was 'yesterday'"),
        "state=OPENISH": ("state", f"unknown state 'OPENISH' (the states are {', '.join(s.value for s in State)})"),
        "limit=0": ("limit", "Input should be greater than or equal to 1"),
        "mode=fast": ("mode", "Input should be 'smart' or 'legacy'"),
    }
    for query, (field, reason) in cases.items():
        answer = api.get(f"/api/lifecycles?{query}")
        assert (answer.status_code, answer.json()) == (422, {"error": "invalid", "field": field, "reason": reason})


def test_transitions_in_chain_order_of_the_selected_lifecycles(api: TestClient, sample: Sample) -> None:
    rows = api.get("/api/transitions", params={"symbol": "CRWD"}).json()["transitions"]
    expected = [(1, seq) for seq in range(1, 7)] + [(5, seq) for seq in range(1, 6)]  # A, then E
    assert [(r["lifecycle_id"], r["seq"]) for r in rows] == expected
    assert all(re.fullmatch("[0-9a-f]{64}", r["row_hash"]) for r in rows)
    later = api.get("/api/transitions", params={"after": rows[5]["id"], "limit": 2}).json()["transitions"]
    assert [r["id"] for r in later] == [rows[5]["id"] + 1, rows[5]["id"] + 2]


def test_trades_positions_and_refusals(api: TestClient, sample: Sample) -> None:
    trades = api.get("/api/trades", params={"symbol": "CRWD"}).json()
    assert [(t["signal_id"], t["qty"], t["entry"], t["exit"], t["pnl"]) for t in trades["trades"]] == [
        ("sig-A", "10", "535.00", "546.06", "110.60"), ("sig-E", "10", "536.00", "535.50", "-5.00")]
    positions = api.get("/api/positions").json()
    assert [(p["signal_id"], p["side"], p["qty"], p["entry"], p["stop"], p["target"])
            for p in positions["positions"]] == [("sig-H", "short", "10", "169.83", "172.00", "165.00")]
    refusals = api.get("/api/refusals").json()
    assert refusals["count"] == 2
    assert [(r["signal_id"], r["stage"]) for r in refusals["refusals"]] == [("sig-D", "engine"), ("sig-J", "engine")]


def test_verify_passes_then_names_the_first_tampered_row(api: TestClient, sample: Sample) -> None:
    verdict = api.get("/api/verify").json()
    assert (verdict["ok"], verdict["problems"], verdict["counts"]["transitions"]) == (True, [], 42)
    head = verdict["head"]
    anchored = api.get("/api/verify", params={"anchor": f"{head['last_id']}:{head['last_hash']}"}).json()
    assert anchored["ok"] is True
    with sample.ledger.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER transitions_no_update")  # as a tamperer with the file does first
        conn.exec_driver_sql("UPDATE transitions SET trigger = 'edited' WHERE id = 3")
    tampered = api.get("/api/verify").json()
    assert tampered["ok"] is False
    assert tampered["problems"][0]["transition_id"] == 3
    for anchor in ("12:abc", f"²:{head['last_hash']}", f"{'9' * 19}:{head['last_hash']}"):
        bad = api.get("/api/verify", params={"anchor": anchor})
        assert (bad.status_code, bad.json()) == (422, {"error": "invalid", "field": "anchor", "reason": (
            f"expected TRANSITION_ID:SHA256 (64 hex digits), was {anchor!r}")})


def test_the_report_as_numbers_and_as_the_self_contained_page(api: TestClient, sample: Sample) -> None:
    numbers = api.get("/api/report", params={"since": "2026-11-24", "until": "2026-11-24"}).json()
    assert numbers["modes"]["all"]["signals"] == 4
    page = api.get("/report")
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "<h2>Smart vs legacy</h2>" in page.text and "data:image/png;base64," in page.text
    assert not re.search(r"(src|href)=\"https?:", page.text)
