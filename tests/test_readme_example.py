"""The README's Python example ("Running the engine") runs as written: the code block is taken from
README.md and run in a process of its own against `smartexec sim --scenario crwd_gap`, on a
fresh SQLite ledger, with only the environment the README names (the venue's URL, a short fill
timeout so that the test need not wait a minute)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import SMARTEXEC, product_environment, sqlite_url

from engine.ledger import Ledger
from engine.ledger import database as db

ROOT = Path(__file__).resolve().parents[1]
FILL_TIMEOUT = "2"  # seconds; the README's wording is 60, the product default


def readme_example() -> str:
    """The ```python block that opens with `import asyncio` in the section "Running the engine"."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Running the engine\n"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    runnable = [block for block in blocks if block.startswith("import asyncio\n")]
    assert len(runnable) == 1, f"expected one runnable example in 'Running the engine', found {len(runnable)}"
    return runnable[0]


@pytest.fixture(scope="module")
def venue() -> Iterator[str]:
    """`smartexec sim --port 0 --scenario crwd_gap`, as an operator starts it; its REST URL."""
    proc = subprocess.Popen([*SMARTEXEC, "sim", "--port", "0", "--scenario", "crwd_gap"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=product_environment())
    try:
        assert proc.stdout is not None
        printed = []
        for line in proc.stdout:
            printed.append(line)
            if line.startswith("Ctrl-C"):
                break
        found = re.search(r'TradingClient\(.*url_override="(http://127\.0\.0\.1:\d+)"', "".join(printed))
        assert found, "".join(printed)
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


def run_example(tmp_path: Path, venue: str, database_url: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "example.py"
    script.write_text(readme_example(), encoding="utf-8")
    env = {**product_environment(), "VENUE_URL": venue, "SMART_EXECUTOR_DATABASE_URL": database_url,
           "SMART_EXECUTOR_FILL_TIMEOUT": FILL_TIMEOUT, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_readme_example_misses_the_crwd_trade_on_a_fresh_ledger(tmp_path: Path, venue: str) -> None:
    url = sqlite_url(tmp_path)
    assert not (tmp_path / "ledger.db").exists()

    done = run_example(tmp_path, venue, url)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "lifecycle 1 crwd-1 CANCELED\n"
    ledger = Ledger(url)  # the ledger the example created: the schema at head, the story of the miss
    try:
        lc = ledger.get(1)
        assert lc is not None
        assert (lc.signal_id, lc.symbol, lc.qty, str(lc.limit_price), lc.filled_qty) == \
            ("crwd-1", "CRWD", 10, "535.09", 0)
        assert [(t.trigger, t.to_state) for t in ledger.history(1)] == [
            ("created", "PENDING"), ("submitted", "LIMIT_SUBMITTED"), ("timeout", "CANCEL_REQUESTED"),
            ("canceled", "CANCELED")]
    finally:
        ledger.close()


def test_the_readme_example_refuses_a_ledger_behind_the_engine_naming_the_command(tmp_path: Path,
                                                                                  venue: str) -> None:
    url = sqlite_url(tmp_path)
    db.upgrade(url, "0010")  # a ledger an older engine left

    done = run_example(tmp_path, venue, url)

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        f"engine.ledger.database.LedgerNotMigrated: the ledger {url} is at revision 0010, this engine needs "
        f"{db.head_revision()}: "
        f"run `smartexec db upgrade --database-url {url}` (after a backup)")


def test_import_engine_loads_no_layer_until_a_name_is_used() -> None:
    code = ("import sys, engine; print(sorted(m for m in sys.modules if m.startswith(('engine', 'alpaca', "
            "'sqlalchemy')))); engine.Signal; print('engine.core.domain' in sys.modules, 'alpaca' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert shown.stdout == "['engine']\nTrue False\n"
