"""Every error as one JSON shape: `{"error": kind, "field": name, "reason": why}` (field only where
one is to blame), so a client tells a bad field from a refusal without reading prose."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "reason"],
    "properties": {
        "error": {"type": "string", "description": "invalid, unauthorized, read_only, conflict, refused, "
                                                   "not_picked_up, not_found, too_large"},
        "field": {"type": "string", "description": "the field (or parameter) at fault"},
        "reason": {"type": "string"},
        "queued": {"type": "array", "items": {"type": "object"},
                   "description": "refused / not_picked_up: the inbox entries that were queued"},
    },
}


class ApiError(Exception):
    def __init__(self, status: int, error: str, reason: str, *, field: str | None = None,
                 extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason, self.field = status, error, reason, field
        self.extra, self.headers = extra or {}, headers

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.error, **({"field": self.field} if self.field else {}),
                                "reason": self.reason, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    return {code: {"description": _DESCRIPTIONS[code], "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            for code in codes}


_DESCRIPTIONS = {
    401: "no valid bearer token", 403: "the server is read-only", 404: "no such lifecycle",
    409: "a signal id taken by other content, or a signal the engine refused", 413: "the body is too large",
    422: "a bad field or parameter", 504: "queued, but no running engine picked it up in time",
}


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
    return ApiError(422, "invalid", str(first.get("msg", "is not valid")), field=field).response()


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
    return ApiError(exc.status_code, kind, str(exc.detail), headers=dict(exc.headers or {})).response()


def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return exc.response()


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
