"""Secrets never reach a log line: a registry of the API keys in use and a logging filter that
masks them, whole or in part, in every record that passes a handler.

The Alpaca adapter (`AlpacaBroker`) and `BrokerTarget` register the keys they are given; anything
else can call `register_secret`. `install_redaction()` puts `RedactingFilter` on the handlers of
the root logger (and of every logger that does not propagate, and `logging.lastResort`), so the
engine's own lines and those of every library (websockets, urllib3, requests, alpaca-py, asyncio,
aiohttp) are masked: the message with its arguments, `extra` fields, the exception text with its
traceback, and the stack. Masked means every run of characters covered by a substring of a secret
at least `MIN_PART` characters long becomes `MASK`; a message never shows any 4 characters of a key
in a row.

`quiet_wire_frames()` keeps the websockets protocol loggers from logging frame payloads at all
(their `> TEXT '{"action": "authenticate", …}'` debug lines carry the stream's auth frame); the
redaction holds even without it.

Kept in `engine.broker`, the lowest layer that holds keys; the service re-exports it
(`engine.service.redaction`) for the command line and Python API users.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

MIN_PART = 4  # the shortest piece of a secret that is masked wherever it appears
MASK = "[redacted]"
WITHHELD = "[withheld: the text held a secret]"
# Loggers of the websockets library whose DEBUG lines show frames ("> %s" / "< %s" with a Frame).
WIRE_LOGGERS = ("websockets.client", "websockets.server", "websockets.protocol")
FRAME_FORMATS = frozenset({"> %s", "< %s"})

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class Secrets:
    """The values to mask; registered values stay registered for the life of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def register(self, *values: str | None) -> None:
        new = {v for v in values if v} - self._values
        if not new:
            return
        with self._lock:
            self._values = self._values | new
            pieces: set[str] = set()
            for value in self._values:
                if len(value) < MIN_PART:
                    pieces.add(value)
                else:
                    pieces.update(value[i:i + MIN_PART] for i in range(len(value) - MIN_PART + 1))
            # A lookahead finds every (overlapping) position where a piece starts.
            alternatives = "|".join(re.escape(p) for p in sorted(pieces, key=lambda p: (-len(p), p)))
            self._pattern = re.compile(f"(?=({alternatives}))")

    def __bool__(self) -> bool:
        return bool(self._values)

    def __repr__(self) -> str:  # never the values
        return f"Secrets({len(self._values)} registered)"

    def leaks(self, text: str) -> bool:
        """Whether `text` holds a registered secret or a piece of one."""
        pattern = self._pattern
        return pattern is not None and pattern.search(text) is not None

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        spans: list[list[int]] = []
        for match in pattern.finditer(text):
            start, end = match.start(), match.start() + len(match.group(1))
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        if not spans:
            return text
        parts, position = [], 0
        for start, end in spans:
            parts += [text[position:start], MASK]
            position = end
        parts.append(text[position:])
        masked = "".join(parts)
        if pattern.search(masked) is None:
            return masked
        # The mask itself completed a piece of a secret (a key holding "act]"?): say nothing.
        return WITHHELD if pattern.search(WITHHELD) is None else ""


SECRETS = Secrets()


def register_secret(*values: str | None) -> None:
    """Mask `values` (API keys, tokens) in every record a `RedactingFilter` sees from now on."""
    SECRETS.register(*values)


def redact(text: str) -> str:
    """`text` with every registered secret, and every piece of one of 4+ characters, masked."""
    return SECRETS.redact(text)


class RedactingFilter(logging.Filter):
    """Masks the registered secrets in a record, in place, and lets it through.

    The message is formatted with its arguments first (`record.args` becomes empty), the exception
    and stack are rendered to text (`exc_text`, `stack_info`) and `exc_info` dropped, so no handler
    or formatter downstream can reach the unmasked values. Put it on handlers: a filter on a
    logger does not see the records its children propagate.
    """

    def __init__(self, secrets: Secrets = SECRETS) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging would print msg and args raw
            message = f"{record.msg!s} (arguments: {record.args!r})"
        record.msg, record.args = secrets.redact(message), None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = secrets.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = secrets.redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name in ("msg", "exc_text", "stack_info"):
                continue
            if isinstance(value, str):
                setattr(record, name, secrets.redact(value))
            elif name not in _STANDARD and not isinstance(value, int | float | bool | type(None)):
                setattr(record, name, secrets.redact(str(value)))
        return True


class _DropFrames(logging.Filter):
    """Drops the websockets protocol's frame lines ("> TEXT '…' [n bytes]"); keeps the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg in FRAME_FORMATS)


def _handlers() -> Iterable[logging.Handler]:
    yield from logging.getLogger().handlers
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            yield from logger.handlers
    if logging.lastResort is not None:
        yield logging.lastResort


def install_redaction(handlers: Iterable[logging.Handler] | None = None) -> RedactingFilter:
    """Add the one `RedactingFilter` to `handlers` (default: the root logger's, every other
    configured logger's and `logging.lastResort`), once each. Call it after configuring logging;
    a handler added later needs `handler.addFilter(install_redaction([handler]))` or a call again."""
    for handler in _handlers() if handlers is None else handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    return _FILTER


def quiet_wire_frames() -> None:
    """Keep websockets from logging frame payloads (the stream's auth frame among them) at DEBUG;
    its connection-state and handshake lines stay."""
    for name in WIRE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropFrames) for f in logger.filters):
            logger.addFilter(_DropFrames())


_FILTER = RedactingFilter()
