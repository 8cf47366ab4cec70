"""`smartexec` as an operator runs it, in a process of its own."""

from __future__ import annotations

import os
import sys

SMARTEXEC = [sys.executable, "-m", "engine.cli"]


def product_environment() -> dict[str, str]:
    """This process's environment without any engine or Alpaca setting: the product defaults,
    whatever the caller's shell exports."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SMART_EXECUTOR_", "USE_SMART_", "APCA_"))}
