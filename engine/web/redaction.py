"""The server's tokens never reach a log line.

The access log prints the request line only (no header), and no route logs a header; this filter
is the guard behind that, masking a token wherever it would appear in a record, the arguments of a
library's DEBUG line included. (engine.service.redaction does the same for API keys, but the web
side may not import the service.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

MASK = "***"


class TokenFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def _masked(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = self._masked(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_text is None:
            record.exc_text = self._masked(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install(secrets: Iterable[str]) -> None:
    """Mask `secrets` on every handler of the root logger, where uvicorn's lines go too."""
    token_filter = TokenFilter(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(token_filter)
