"""The fleet suite (issue 14): workers and accounts as processes on one PostgreSQL ledger
(fleet_rig.py). Its helpers assert: show their values when they fail."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("fleet_rig")
