"""Where `smartexec` logs: stderr always, and for the engine's commands (`run`, `demo`, `submit`) a
rotating file, by default logs/smartexec.log under the working directory.

    SMART_EXECUTOR_LOG_DIR=/var/log/smartexec   # the file's folder (default: ./logs)
    --log-file PATH                             # the file itself (wins over the folder)
    --log-level DEBUG|INFO|WARNING|ERROR        # both outputs (default INFO; -v is DEBUG)
    --log-format text|json                      # the file's lines: as on stderr, or one JSON object each

Every handler carries the account tag (engine.service.log_context) and the secret redaction
(engine.service.redaction): a key is masked in the file exactly as on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from logging.handlers import RotatingFileHandler
from pathlib import Path

from engine.core.errors import ConfigError
from engine.service.log_context import FORMAT, tag_accounts
from engine.service.redaction import install_redaction, quiet_wire_frames

LOG_DIR_ENV = "SMART_EXECUTOR_LOG_DIR"
DEFAULT_DIR = "logs"
FILE_NAME = "smartexec.log"
# 20 MB a file and 5 old ones kept: a busy day of INFO lines fits, and the folder never passes 120 MB.
# Size, not time: several processes (run, submit) append to one file, and a timed rollover of one of
# them would rename the file under the others as readily as a size one; size rolls less often.
MAX_BYTES = 20 * 1024 * 1024
BACKUPS = 5
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FILE_HANDLER = "smartexec-file"  # the handlers' names: a second main() in one process reuses or replaces them
STDERR_HANDLER = "smartexec-stderr"


class JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, account, message, and the
    traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "account": getattr(record, "account", "").strip(" []") or None,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # the redaction filter has rendered (and masked) it already
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


class _QuietReconnects(logging.Filter):
    """alpaca-py's trade stream logs a full traceback on every failed (re)connect, one a second
    while a venue is down; the line itself already names the error ("[Errno 111] Connect call
    failed"), so the traceback of a network error is dropped and the line kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], OSError):
            record.exc_info, record.exc_text = None, None
        return True


def add_options(p: argparse.ArgumentParser) -> None:
    """The log file's options, on the commands that write one."""
    p.add_argument("--log-file", dest="log_file", metavar="PATH",
                   help=f"the log file (default: $SMART_EXECUTOR_LOG_DIR/{FILE_NAME}, else {DEFAULT_DIR}/{FILE_NAME})")
    p.add_argument("--log-level", dest="log_level", type=str.upper, choices=LEVELS, metavar="LEVEL",
                   help="DEBUG, INFO (default), WARNING or ERROR; on stderr and in the file")
    p.add_argument("--log-format", dest="log_format", choices=["text", "json"], default="text",
                   help="the file's lines: text as on stderr (default), or JSON lines")


def file_path(log_file: str | None, env: Mapping[str, str] | None = None) -> Path:
    if log_file:
        return Path(log_file)
    folder = (os.environ if env is None else env).get(LOG_DIR_ENV, "").strip()
    return Path(folder or DEFAULT_DIR) / FILE_NAME


def configure(args: argparse.Namespace) -> None:
    """Stderr for every command; the file too for a command that has the file's options. `demo`
    keeps stderr to warnings (its tables are the output) while its file gets every INFO line."""
    level = logging.DEBUG if args.verbose else getattr(logging, getattr(args, "log_level", None) or "INFO")
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:  # as logging.basicConfig: a host (pytest, an embedding program) keeps its own
        stderr = logging.StreamHandler()
        stderr.set_name(STDERR_HANDLER)
        stderr.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(stderr)
    quiet = args.command == "demo" and not args.verbose and getattr(args, "log_level", None) is None
    for handler in root.handlers:
        if handler.get_name() == STDERR_HANDLER:
            handler.setLevel(logging.WARNING if quiet else logging.NOTSET)
    close_file()
    if hasattr(args, "log_format"):
        root.addHandler(_file_handler(file_path(args.log_file), args.log_format))
    tag_accounts(root.handlers)
    # The state machine library logs two INFO lines per state change; the engine logs one itself.
    logging.getLogger("transitions").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    stream_log = logging.getLogger("alpaca.trading.stream")
    if not any(isinstance(f, _QuietReconnects) for f in stream_log.filters):
        stream_log.addFilter(_QuietReconnects())
    # API keys never reach a log line, the libraries' DEBUG lines included; websockets logs no
    # frames (the stream's auth frame among them).
    install_redaction()
    quiet_wire_frames()


def close_file() -> None:
    """Detach and close the log file (main() does on return: a caller's process logs on without it)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == FILE_HANDLER]:
        root.removeHandler(handler)
        handler.close()


def _file_handler(path: Path, form: str) -> logging.Handler:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--log-file", f"cannot write {path}: {exc.strerror or exc}") from None
    handler.set_name(FILE_HANDLER)
    handler.setFormatter(JsonLines() if form == "json" else logging.Formatter(FORMAT))
    return handler
