"""Crash points: named step boundaries where the engine can be made to die abruptly, for tests.

Set SMART_EXECUTOR_CRASH_AT to a point's name (optionally `name:N` to die on its N-th passing) and
the process exits with status 137 at that point, without cleanup, as a kill -9 would leave it.
Set SMART_EXECUTOR_CRASH_TRACE to a file and every point passed is appended to it, one name per
line: a crash-free run's trace tells which points lie on its path.
"""

from __future__ import annotations

import os
import sys

from engine.core.domain import Leg
from engine.core.lifecycle import Trigger

VARIABLE = "SMART_EXECUTOR_CRASH_AT"
TRACE_VARIABLE = "SMART_EXECUTOR_CRASH_TRACE"
POINTS = (
    "after_intent",  # entry intent committed, broker not yet called
    "after_entry_submit",  # broker accepted the entry, result not yet committed
    "before_fill_commit",  # an entry fill reported, its transition not yet committed
    "after_timeout",  # CANCEL_REQUESTED committed, cancel not yet sent
    "after_cancel_submit",  # cancel sent to the broker, its outcome not yet committed
    "after_validated",  # VALIDATED committed, exit order not yet sent
    "after_exits_submit",  # exits accepted by the broker, EXITS_PLACED not yet committed
    "after_exit_partial",  # REPROTECTING committed (an exit leg filled in part), old pair not yet cancelled
    "after_exits_resized",  # VALIDATED committed with the new pair for the rest intended, not yet sent
    "before_exit_fill_commit",  # an exit leg filled, CLOSED not yet committed
    "after_rejected",  # REJECTED committed, flatten order not yet sent
    "after_flatten_submit",  # flatten accepted by the broker, not yet committed
    "after_emulation_armed",  # EMULATING committed, quotes not yet subscribed
    "after_emulated_trigger",  # EMULATED_EXIT committed (a level crossed), exit order not yet sent
    "after_emulated_exit_submit",  # the emulated exit accepted by the broker, not yet committed
    "after_exit_repriced",  # the next emulated exit intended, not yet sent
    "after_handed_over",  # VALIDATED committed at the open (pair intended), not yet sent
    "after_handed_back",  # REPROTECTING committed at the close, the pair not yet cancelled
    "after_stop_moved",  # STOP_MOVED committed, the broker's stop leg not yet replaced
    "after_stop_move_intent",  # the new stop leg's id recorded, the replace not yet sent
    "after_entry_repriced",  # ENTRY_REPRICED committed (replacement intended), replace not yet sent
    "after_entry_replace",  # the broker made the replacement, its answer not yet committed
)
# Points only on paths that a setting off by default opens (re-pricing): the crash matrix's scenarios
# never pass them; their crash tests live with the feature (tests/crash/test_crash_reprice.py).
OPTIONAL_POINTS = ("after_entry_repriced", "after_entry_replace")
_passes: dict[str, int] = {}


def crash_point(name: str | None) -> None:
    """Pass the point `name` (None: no point lies here)."""
    if name is None:
        return
    trace = os.environ.get(TRACE_VARIABLE)
    if trace:
        with open(trace, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")
    wanted = os.environ.get(VARIABLE)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(nth or 1):
        sys.stderr.write(f"smartexec: crash point {name} reached, exiting abruptly\n")
        sys.stderr.flush()
        os._exit(137)


# The points that lie between a fact and its commit, between a commit and the broker call it
# implies, and between the broker's acceptance of an order and the commit of its answer.
BEFORE_COMMIT = {Trigger.FILL: "before_fill_commit", Trigger.PARTIAL_FILL: "before_fill_commit",
                 Trigger.EXIT_FILLED: "before_exit_fill_commit"}
AFTER_COMMIT = {Trigger.TIMEOUT: "after_timeout", Trigger.GUARDS_PASSED: "after_validated",
                Trigger.GUARDS_FAILED: "after_rejected", Trigger.EXITS_REJECTED: "after_rejected",
                Trigger.EXIT_PARTIAL: "after_exit_partial", Trigger.EXITS_RESIZED: "after_exits_resized",
                Trigger.EMULATION_ARMED: "after_emulation_armed", Trigger.EMULATED_TRIGGER: "after_emulated_trigger",
                Trigger.EXIT_REPRICED: "after_exit_repriced", Trigger.HANDED_OVER: "after_handed_over",
                Trigger.HANDED_BACK: "after_handed_back", Trigger.STOP_MOVED: "after_stop_moved",
                Trigger.ENTRY_REPRICED: "after_entry_repriced"}
AFTER_SUBMIT = {Leg.ENTRY: "after_entry_submit", Leg.TAKE_PROFIT: "after_exits_submit",
                Leg.FLATTEN: "after_flatten_submit", Leg.EXIT: "after_emulated_exit_submit"}
