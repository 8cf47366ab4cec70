"""`smartexec serve`: the HTTP interface (engine/web) on this machine's loopback by default."""

from __future__ import annotations

import argparse
from pathlib import Path

from sqlalchemy.engine import make_url

from engine.core.config import Settings
from engine.core.errors import ConfigError, EngineError
from engine.ledger import database as db
from engine.ledger.anchors import default_path


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from engine.web.app import serve
    from engine.web.config import READ_TOKEN_ENV, READ_TOKEN_FILE_ENV, TOKEN_ENV, TOKEN_FILE_ENV, WebConfig, load_token

    url = args.database_url or settings.database_url
    token = None if args.read_only else load_token(TOKEN_ENV, TOKEN_FILE_ENV, args.token_file)
    if token is None and not args.read_only:
        raise ConfigError(TOKEN_ENV, "is required to accept signals (or --token-file PATH); "
                                     "--read-only serves the reads alone")
    read_token = load_token(READ_TOKEN_ENV, READ_TOKEN_FILE_ENV, args.read_token_file)
    if read_token is not None and read_token == token:
        raise ConfigError(READ_TOKEN_ENV, "must differ from the write token")
    if token is not None:
        db.upgrade(url)  # as `submit` does: the inbox must exist before a signal is posted
    else:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
            raise EngineError(f"no ledger at {parsed.database} (give --database-url or SMART_EXECUTOR_DATABASE_URL)")
    anchor_log = None if args.no_anchor_log else Path(args.anchor_log or settings.anchor_log or default_path(url))
    serve(WebConfig(url, token=token, read_token=read_token, anchor_log=anchor_log, anchor_key=settings.anchor_key),
          args.host, args.port)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="the HTTP interface: post signals (bearer token), read the ledger, "
                                     "a read-only page for auditors")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1", help="the address to bind (default: loopback only)")
    p.add_argument("--database-url", help="overrides SMART_EXECUTOR_DATABASE_URL")
    p.add_argument("--token-file", metavar="PATH",
                   help="the write token's file (default: SMART_EXECUTOR_API_TOKEN_FILE, or SMART_EXECUTOR_API_TOKEN)")
    p.add_argument("--read-only", action="store_true", help="serve the reads only: no token, nothing can be posted")
    p.add_argument("--read-token-file", metavar="PATH",
                   help="the reads then need this token or the write token (default: "
                        "SMART_EXECUTOR_API_READ_TOKEN_FILE, or SMART_EXECUTOR_API_READ_TOKEN; without one the "
                        "reads are open)")
    log = p.add_mutually_exclusive_group()
    log.add_argument("--anchor-log", metavar="PATH", help="the anchor log /api/verify checks "
                                                          "(default: SMART_EXECUTOR_ANCHOR_LOG, or next to the ledger)")
    log.add_argument("--no-anchor-log", action="store_true", help="/api/verify checks no anchor log")
    p.set_defaults(handler=cmd_serve)
