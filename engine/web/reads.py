"""The auditor's reads as JSON: the same queries `smartexec ledger …` and `smartexec report` run.

Every route only reads, each request in one snapshot (audit.read_engine); decimals are strings,
times ISO-8601 UTC.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError

from engine import audit
from engine.audit.blotter import trades
from engine.audit.positions import open_positions
from engine.audit.refusals import refused_signals
from engine.audit.render import as_html
from engine.audit.report import Report, build_report
from engine.core.lifecycle import State
from engine.ledger.anchors import read_log
from engine.ledger.chain import ChainHead
from engine.ledger.codec import DuplicateKey, plain
from engine.ledger.schema import lifecycles, transitions_table
from engine.web.auth import require_read
from engine.web.config import WebConfig
from engine.web.errors import ApiError, responses

router = APIRouter(dependencies=[Depends(require_read)], responses=responses(401, 422))
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"

States = Annotated[list[str] | None, Query(description="final or current state (repeatable, or comma-separated)")]
Symbol = Annotated[str | None, Query(max_length=16)]
Mode = Annotated[Literal["smart", "legacy"] | None, Query()]
Since = Annotated[str | None, Query(description="created at or after (ISO date or date-time, UTC unless a zone "
                                                "is given)")]
Until = Annotated[str | None, Query(description="created before (a bare date includes that whole day)")]
SignalId = Annotated[str | None, Query(max_length=64)]
Limit = Annotated[int | None, Query(ge=1, le=100_000)]
# A lifecycle id or a signal id (ASCII only: str.isdigit() would take '²' for a number).
Key = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="a lifecycle id or a signal id")]
MAX_ID = 2**63 - 1  # the largest id a BIGINT (and SQLite's INTEGER) holds
ANCHOR = re.compile(r"([0-9]{1,18}):([0-9A-Fa-f]{64})")


@contextmanager
def reading(request: Request) -> Iterator[Connection]:
    try:
        with request.app.state.reads.connect() as conn:
            yield conn
    except DBAPIError:
        raise ApiError(503, "unavailable", "cannot read the ledger; is it migrated? `smartexec db upgrade`") from None
    except DuplicateKey as exc:
        raise ApiError(500, "untrusted", f"a stored payload cannot be trusted ({exc}); run `smartexec ledger verify`"
                       ) from None


def _when(name: str, raw: str | None, *, end_of_day: bool = False) -> datetime | None:
    if raw is None:
        return None
    try:
        return audit.parse_when(raw, end_of_day=end_of_day)
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc), field=name) from None


def _filter(state: list[str] | None, symbol: str | None, mode: str | None, since: str | None, until: str | None,
            signal_id: str | None) -> audit.LifecycleFilter:
    states = [s.strip().upper() for raw in state or [] for s in raw.split(",") if s.strip()]
    unknown = [s for s in states if s not in State.__members__]
    if unknown:
        raise ApiError(422, "invalid", f"unknown state {unknown[0]!r} (the states are {', '.join(State.__members__)})",
                       field="state")
    return audit.LifecycleFilter(states=states, symbol=symbol, mode=mode, since=_when("since", since),
                                 until=_when("until", until, end_of_day=True), signal_id=signal_id)


def _rows(items: list[Any]) -> list[Any]:
    return [plain(dataclasses.asdict(item)) for item in items]


@router.get("/api/lifecycles", summary="Lifecycles, filtered (as `smartexec ledger list`)")
def get_lifecycles(request: Request, state: States = None, symbol: Symbol = None, mode: Mode = None,
                   since: Since = None, until: Until = None, signal_id: SignalId = None,
                   limit: Limit = None) -> dict[str, Any]:
    which = _filter(state, symbol, mode, since, until, signal_id)
    with reading(request) as conn:
        rows = audit.list_lifecycles(conn, which, limit)
    return {"count": len(rows), "lifecycles": plain(rows)}


def _lifecycle_key(conn: Connection, key: str) -> str | None:
    """`key` as audit.lifecycle_story may be given it: a number it can hold as a lifecycle id (it
    tries the id, then the signal id), else the id of the lifecycle with that signal id."""
    if key.isdigit() and int(key) <= MAX_ID:
        return key
    found = conn.execute(select(lifecycles.c.id).where(lifecycles.c.signal_id == key)).scalar()
    return None if found is None else str(found)


def _story(request: Request, key: str) -> audit.Story:
    with reading(request) as conn:
        resolved = _lifecycle_key(conn, key)
        story = None if resolved is None else audit.lifecycle_story(conn, resolved)
    if story is None:
        raise ApiError(404, "not_found", f"no lifecycle with id or signal id {key!r}", field="key")
    return story


@router.get("/api/lifecycles/{key}", responses=responses(404),
            summary="One lifecycle's story: its row, transitions, orders and fills (as `smartexec ledger show`)")
def get_lifecycle(request: Request, key: Key) -> dict[str, Any]:
    return _story(request, key).as_json()


@router.get("/api/lifecycles/{key}/transitions", responses=responses(404), summary="One lifecycle's transitions")
def get_lifecycle_transitions(request: Request, key: Key) -> dict[str, Any]:
    return {"transitions": plain(_story(request, key).transitions)}


@router.get("/api/transitions", summary="Transitions in chain order, of the lifecycles the filters select")
def get_transitions(request: Request, state: States = None, symbol: Symbol = None, mode: Mode = None,
                    since: Since = None, until: Until = None, signal_id: SignalId = None,
                    after: Annotated[int | None, Query(ge=0, le=2**62, description="only rows after this id")] = None,
                    limit: Limit = None) -> dict[str, Any]:
    which = _filter(state, symbol, mode, since, until, signal_id)
    t = transitions_table.c
    query = select(transitions_table).where(t.lifecycle_id.in_(which.apply(select(lifecycles.c.id)))).order_by(t.id)
    if after is not None:
        query = query.where(t.id > after)
    if limit is not None:
        query = query.limit(limit)
    with reading(request) as conn:
        rows = [dict(row) for row in conn.execute(query).mappings()]
    return {"count": len(rows), "transitions": plain(rows)}


@router.get("/api/trades", summary="The blotter: one trade per filled lifecycle")
def get_trades(request: Request, state: States = None, symbol: Symbol = None, mode: Mode = None,
               since: Since = None, until: Until = None, signal_id: SignalId = None) -> dict[str, Any]:
    which = _filter(state, symbol, mode, since, until, signal_id)
    with reading(request) as conn:
        rows = _rows(trades(conn, which))
    return {"count": len(rows), "trades": rows}


@router.get("/api/positions", summary="Open positions, with their protection")
def get_positions(request: Request) -> dict[str, Any]:
    with reading(request) as conn:
        rows = _rows(open_positions(conn))
    return {"count": len(rows), "positions": rows}


@router.get("/api/refusals", summary="Signals the engine refused at intake")
def get_refusals(request: Request, since: Since = None) -> dict[str, Any]:
    when = _when("since", since)
    with reading(request) as conn:
        rows = _rows(refused_signals(conn, since=when))
    return {"count": len(rows), "refusals": rows}


def _anchor(raw: str) -> ChainHead:
    given = ANCHOR.fullmatch(raw.strip())
    if given is None:
        raise ApiError(422, "invalid", f"expected TRANSITION_ID:SHA256 (64 hex digits), was {raw!r}", field="anchor")
    return ChainHead(int(given[1]), given[2].lower())


@router.get("/api/verify", summary="`smartexec ledger verify`: the hash chains, every replay, the anchor log")
def get_verify(request: Request, anchor: Annotated[list[str] | None, Query(
        description="a head printed by an earlier verify, ID:SHA256 (repeatable)")] = None) -> dict[str, Any]:
    config: WebConfig = request.app.state.config
    heads = [_anchor(raw) for raw in anchor or []]
    # The log before the snapshot, as `ledger verify` reads it: a line appended meanwhile anchors rows
    # the snapshot holds.
    log = None if config.anchor_log is None else read_log(config.anchor_log, config.anchor_key)
    with reading(request) as conn:
        result = audit.verify(conn, heads)
        counts = audit.row_counts(conn)
        check = None if log is None else audit.check_anchor_log(conn, log)
    problems = (check.problems if check is not None else []) + result.problems
    newest = None if check is None else check.newest
    return {
        "ok": not problems, "counts": counts,
        "head": None if result.head is None else dataclasses.asdict(result.head),
        "anchor_log": {"checked": False} if check is None else {
            "checked": True, "exists": check.exists, "lines": check.lines, "lines_checked": check.checked,
            "newest": None if newest is None else {"line": newest.line, "at": newest.at.isoformat(),
                                                   "signed": newest.signed}},
        "problems": [dataclasses.asdict(p) | {"message": str(p)} for p in problems],
    }


def _report(request: Request, since: str | None, until: str | None) -> Report:
    start, end = _when("since", since), _when("until", until, end_of_day=True)
    with reading(request) as conn:
        rows = audit.outcome_rows(conn, start, end)
    return build_report(rows, since=start, until=end)


@router.get("/api/report", summary="The monitoring report's numbers (as `smartexec report --json`)")
def get_report(request: Request, since: Since = None, until: Until = None) -> Any:
    return plain(dataclasses.asdict(_report(request, since, until)))


@router.get("/report", response_class=HTMLResponse, summary="The monitoring report as a page (`report --out`)")
def get_report_page(request: Request, since: Since = None, until: Until = None) -> HTMLResponse:
    page = as_html(_report(request, since, until), generated_at=datetime.now(timezone.utc))
    return HTMLResponse(page, headers={"Content-Security-Policy": REPORT_CSP})
