"""POST /api/signals (one) and /api/signals/batch (several, all or none): `smartexec submit` over HTTP.

The answers follow `submit`'s exit codes: 0 -> 202 (queued) or, with `wait`, 200 (picked up);
2 (bad input) -> 422; 3 (the engine refused it) -> 409 `refused`; 4 (the signal id is taken by
other content) -> 409 `conflict`; 5 (no engine picked it up in time) -> 504.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from engine.core.errors import EngineError, FieldError, InvalidSignal, SignalConflict, SignalRefused
from engine.ledger import Ledger
from engine.ledger.submission import PickedUp, Queued, decode, not_picked_up, picked_up, queue, validated
from engine.web.auth import require_write
from engine.web.config import MAX_WAIT, WebConfig
from engine.web.errors import ApiError, responses

log = logging.getLogger("smartexec.web")
router = APIRouter(dependencies=[Depends(require_write)], responses=responses(401, 403, 409, 413, 422, 504))
MAX_BATCH = 500
PICKUP_POLL = 0.1  # the inbox has no notification on SQLite: look as often as `submit --wait` does

_MONEY = {"type": ["string", "number"], "description": "a decimal; a string keeps it exact"}
SIGNAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["signal_id", "symbol", "side", "qty", "price"],
    "additionalProperties": False,
    "properties": {
        "signal_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
        "symbol": {"type": "string", "description": "ticker (ASCII letters, digits, '.')"},
        "side": {"type": "string", "enum": ["buy", "sell", "long", "short"]},
        "qty": {"type": ["string", "integer"], "description": "whole shares"},
        "price": _MONEY, "stop": _MONEY, "target": _MONEY,
        "created_at": {"type": "string", "format": "date-time", "description": "default: when it is received"},
        "expires_at": {"type": "string", "format": "date-time"},
        "trail_pct": _MONEY,
        "break_even": {"type": "boolean"},
        "account": {"type": "string"},
        "mode": {"type": "string", "enum": ["smart", "legacy"], "description": "overrides USE_SMART_EXECUTOR"},
    },
}
Wait = Annotated[float | None, Query(ge=0, le=MAX_WAIT, description="seconds to wait for a running engine to "
                                                                    "pick every signal up (default: do not wait)")]
ACCEPTED: dict[int | str, dict[str, Any]] = {
    200: {"description": "picked up by a running engine (with `wait`)"},
    202: {"description": "queued in the ledger's inbox"},
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _failure(exc: EngineError, queued: list[Queued]) -> ApiError:
    done = {"queued": [dataclasses.asdict(q) for q in queued]} if queued else {}
    if isinstance(exc, FieldError):
        return ApiError(422, "invalid", exc.reason, field=exc.field)
    if isinstance(exc, SignalConflict):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, SignalRefused):
        return ApiError(409, "refused", str(exc), extra=done)
    return ApiError(504, "not_picked_up", str(exc), extra=done)


async def _pickups(ledger: Ledger, queued: list[Queued], wait: float) -> list[PickedUp]:
    deadline = time.monotonic() + wait
    found: list[PickedUp] = []
    for entry in queued:
        while (taken := await run_in_threadpool(picked_up, ledger, entry.inbox_entry)) is None:
            if time.monotonic() >= deadline:
                raise not_picked_up(entry.inbox_entry, wait)
            await asyncio.sleep(PICKUP_POLL)
        found.append(taken)
    return found


async def _submit(request: Request, given: list[tuple[str | None, Any]], wait: float | None) -> JSONResponse:
    ledger: Ledger = request.app.state.ledger
    config: WebConfig = request.app.state.config
    queued: list[Queued] = []
    try:
        if wait is not None and wait > config.max_wait:
            raise InvalidSignal("wait", f"must be at most {config.max_wait:g} seconds on this server")
        rows = [validated(where, payload) for where, payload in given]
        queued = await run_in_threadpool(queue, ledger, rows)
        for entry in queued:
            log.info("queued signal %s as inbox entry %d", entry.signal_id, entry.inbox_entry)
        body: dict[str, Any] = {"queued": [dataclasses.asdict(q) for q in queued]}
        if not wait:
            return JSONResponse(body, status_code=202)
        body["picked_up"] = [dataclasses.asdict(p) for p in await _pickups(ledger, queued, wait)]
        return JSONResponse(body, status_code=200)
    except EngineError as exc:
        if isinstance(exc, (InvalidSignal, SignalConflict, SignalRefused)):
            log.warning("Smart executor rejected %s %s", getattr(exc, "signal_id", "-"), exc)
        raise _failure(exc, queued) from None


@router.post("/api/signals", status_code=202, responses=ACCEPTED, openapi_extra=_body(SIGNAL_SCHEMA),
             summary="Queue one signal for the running engine (`smartexec submit`)")
async def post_signal(request: Request, wait: Wait = None) -> JSONResponse:
    try:
        payload = decode(await request.body())
    except InvalidSignal as exc:
        raise _failure(exc, []) from None
    return await _submit(request, [(None, payload)], wait)


@router.post("/api/signals/batch", status_code=202, responses=ACCEPTED,
             openapi_extra=_body({"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": SIGNAL_SCHEMA}),
             summary="Queue several signals, all or none (`smartexec submit` with JSON lines)")
async def post_signals(request: Request, wait: Wait = None) -> JSONResponse:
    try:
        payload = decode(await request.body())
        if not isinstance(payload, list) or not payload:
            raise InvalidSignal("body", "must be a JSON array of one or more signals")
        if len(payload) > MAX_BATCH:
            raise InvalidSignal("body", f"at most {MAX_BATCH} signals a request, was {len(payload)}")
    except InvalidSignal as exc:
        raise _failure(exc, []) from None
    return await _submit(request, [(f"signals[{i}]", item) for i, item in enumerate(payload)], wait)
