"""The ASGI app: `create_app(WebConfig)`; `serve()` runs it under uvicorn (`smartexec serve`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from engine import audit
from engine.ledger import Ledger
from engine.ledger.database import redacted
from engine.web import errors, page, redaction, signals
from engine.web import reads as read_routes
from engine.web.config import WebConfig
from engine.web.limits import BodyLimit

log = logging.getLogger("smartexec.web")
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False,
                                 "auto_configure": False}


def create_app(config: WebConfig) -> FastAPI:
    """The API and the page on the ledger at `config.database_url`. A read-only config (no token)
    opens no writer: the reads run on audit.read_engine's snapshots, which never lock the engine out."""
    reader = audit.read_engine(config.database_url)
    ledger = Ledger(config.database_url) if config.token else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        reader.dispose()
        if ledger is not None:
            ledger.close()

    app = FastAPI(title="Smart Order Executor", version="1", lifespan=lifespan,
                  description="Signals in through the ledger's inbox (bearer token); the auditor's reads out. "
                              "Decimals are strings, times ISO-8601 UTC. See README, \"HTTP interface\".",
                  docs_url=None, redoc_url=None,  # the docs pages load scripts from a CDN
                  # No OpenTelemetry: request data (error messages among it) stays in this process, and
                  # no environment variable (FASTAPI_OTEL_AUTO_CONFIGURE) can add an exporter.
                  telemetry=NO_TELEMETRY)
    app.state.config, app.state.reads, app.state.ledger = config, reader, ledger
    errors.install(app)
    app.include_router(signals.router)
    app.include_router(read_routes.router)
    app.include_router(page.router)
    app.add_middleware(BodyLimit, max_body=config.max_body)
    return app


def serve(config: WebConfig, host: str, port: int) -> None:
    import uvicorn

    redaction.install(config.secrets)
    writes = "read-only" if config.token is None else "signals need the token"
    reads = "reads need a token" if config.read_token else "reads open"
    log.info("serving ledger %s on http://%s:%d (%s; %s)", redacted(config.database_url), host, port, writes, reads)
    # log_config=None: uvicorn's lines go through the root handlers, so the token filter and the
    # engine's format apply to them too; its access line holds the request line, no header.
    uvicorn.run(create_app(config), host=host, port=port, log_config=None, server_header=False)
