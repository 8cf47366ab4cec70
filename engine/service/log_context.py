"""Which account a log line is about: a worker serving several accounts runs each one's engine in
its own task, whose context carries the account's name onto every line it logs."""

from __future__ import annotations

import logging
from contextvars import ContextVar

ACCOUNT: ContextVar[str | None] = ContextVar("smartexec_account", default=None)
FORMAT = "%(asctime)s %(levelname)s %(name)s%(account)s: %(message)s"


class AccountTag(logging.Filter):
    """Sets `record.account` to ` [name]` inside an account's task, else to ''."""

    def filter(self, record: logging.LogRecord) -> bool:
        account = ACCOUNT.get()
        record.account = f" [{account}]" if account else ""
        return True


def tag_accounts(handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        if not any(isinstance(f, AccountTag) for f in handler.filters):
            handler.addFilter(AccountTag())
