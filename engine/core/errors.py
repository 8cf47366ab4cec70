"""Engine errors, grouped by what the caller should do next."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


# --- the caller's input is wrong: fix it and try again; nothing was recorded or sent ------------


class FieldError(EngineError, ValueError):
    """A named field has a bad value."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ConfigError(FieldError):
    """An environment variable or option has a bad value; the engine refuses to start."""


class InvalidSignal(FieldError):
    """A signal failed validation; it was not recorded and nothing was sent to the broker."""


class SignalConflict(EngineError):
    """A signal id already recorded with different content: the ledger is never rewritten."""

    def __init__(self, signal_id: str, differences: list[str]) -> None:
        super().__init__(
            f"signal_id {signal_id!r} is already recorded with different content ({', '.join(differences)})"
        )
        self.signal_id = signal_id
        self.differences = differences


class SignalRefused(EngineError):
    """A valid signal the engine would not trade (too old, market closed, a risk limit, …)."""


class NotPickedUp(EngineError):
    """No running engine took a queued signal within the time the caller waited."""


# --- the state machine refused: a programming or wiring error, never a broker condition -------


class IllegalTransition(EngineError):
    """A trigger that no edge of the lifecycle table allows from the current state."""

    def __init__(self, state: str, trigger: str) -> None:
        super().__init__(f"{state} -> {trigger}: no such edge in the lifecycle table")
        self.state = state
        self.trigger = trigger


# --- the ledger: retry after reloading, or wait for the database to come back -------------------


class StaleLifecycle(EngineError):
    """The optimistic version check failed: another writer moved this lifecycle first."""

    def __init__(self, lifecycle_id: int, expected_version: int) -> None:
        super().__init__(f"lifecycle {lifecycle_id} is no longer at version {expected_version}")
        self.lifecycle_id = lifecycle_id
        self.expected_version = expected_version


class LedgerUnavailable(EngineError):
    """The database could not be written; no broker call may follow."""


class ReconcileFailed(EngineError):
    """A takeover's reconciliation could not finish: the account is not served (fail closed)."""


class StreamUnavailable(EngineError):
    """The broker's trade_updates stream could not be opened: an account is not served without it."""


class Deposed(EngineError):
    """This worker's lease on an account was taken over (or ran out): the write was not made and
    the broker call not sent. The worker stops serving the account; its new owner resumes it."""

    def __init__(self, account: str, why: str) -> None:
        super().__init__(f"account {account}: {why}")
        self.account = account
