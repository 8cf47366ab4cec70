"""The API keys never show, whole or in part: `smartexec -v run` (DEBUG logging, every library's
lines included) trades a signal through its exits against a local venue, and refuses a wrong key;
neither its complete output nor any table of the ledger holds 4 characters of a key in a row."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from harness import SMARTEXEC, product_environment, signal_of, sqlite_url

from engine.core.lifecycle import State
from engine.ledger import Ledger
from engine.sim import Venue
from engine.sim.testing import wait_until

# Shaped like Alpaca's (a 20-character key id, a 40-character secret) and made of pieces that no
# log line, id or time could hold by chance, so that any 4 characters of one in a row are a leak.
KEY_ID = "PKQ7ZJXW3VYHB9GTKM2D"
SECRET = "zR8qWv3XjK9pLm2TnY6bHc4FgD7sJw5QxVa1Ek0U"
WRONG_KEY_ID = "PKW4HZQJ8XNRV2YTBG6M"
WRONG_SECRET = "Jq2zXw9KvR4mTn7YpL3cHb8FgZ5sWd6QxVj1Nk0E"
PIECE = 4


def pieces(value: str) -> list[str]:
    return [value[i:i + PIECE] for i in range(len(value) - PIECE + 1)]


def assert_no_piece_of(secrets: dict[str, str], text: str, where: str) -> None:
    """No `PIECE`-character window of any secret occurs in `text`. A failure names the secret, the
    line and its start up to the leak, never a piece of the secret (the frame is hidden from the
    traceback, which would show the arguments)."""
    __tracebackhide__ = True
    found = []
    for name, value in secrets.items():
        hits = sorted(at for piece in pieces(value) for at in _positions(text, piece))
        if hits:
            line_start = text.rfind("\n", 0, hits[0]) + 1
            shown = text[line_start:max(line_start, hits[0] - PIECE + 1)][:160]
            found.append(f"{name}: {len(hits)} pieces, the first in line {text.count(chr(10), 0, hits[0]) + 1} "
                         f"after {shown!r}")
    if found:
        pytest.fail(f"{where} holds parts of a secret:\n" + "\n".join(found), pytrace=False)


def _positions(text: str, piece: str) -> Iterator[int]:
    at = text.find(piece)
    while at >= 0:
        yield at
        at = text.find(piece, at + 1)


def ledger_dump(url: str, path: Path, out: Path) -> str:
    """Every row of every table (SQL), and `smartexec ledger export --table all`."""
    with sqlite3.connect(path) as conn:
        dump = "\n".join(conn.iterdump())
    exported = subprocess.run([*SMARTEXEC, "-v", "ledger", "export", "--table", "all", "--out", str(out),
                               "--database-url", url], env=environment(KEY_ID, SECRET), capture_output=True,
                              text=True, timeout=60, check=False)
    assert exported.returncode == 0, exported.stderr
    files = sorted(out.iterdir())
    assert {"lifecycles.csv", "transitions.csv", "orders.csv", "fills.csv"} <= {f.name for f in files}
    return "\n".join([dump, exported.stdout, exported.stderr, *(f.read_text() for f in files)])


def environment(key_id: str, secret: str) -> dict[str, str]:
    return {**product_environment(), "APCA_API_KEY_ID": key_id, "APCA_API_SECRET_KEY": secret,
            "PYTHONUNBUFFERED": "1"}


@contextmanager
def engine(venue: Venue, url: str, key_id: str, secret: str, output: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`smartexec -v run` against `venue`, its stdout and stderr both written to `output`; killed
    on leaving the block if it is still running."""
    with output.open("wb") as sink:
        run = subprocess.Popen([*SMARTEXEC, "-v", "run", "--venue", venue.rest_url, "--database-url", url],
                               env=environment(key_id, secret), stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(15)


def in_state(ledger: Ledger, signal_id: str, state: State) -> Callable[[], bool]:
    return lambda: (lc := ledger.find_by_signal(signal_id)) is not None and lc.state is state


@pytest.fixture
def venue() -> Iterator[Venue]:
    with Venue.running_in_thread(scenarios=("target_hit",), api_key=KEY_ID, secret_key=SECRET,
                                 rate_limit_per_min=None) as venue:
        yield venue


def test_the_keys_never_show_in_a_verbose_run_through_the_exits(venue: Venue, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    sig = signal_of("target_hit")
    output = tmp_path / "run.log"
    ledger = Ledger(url)
    try:
        with engine(venue, url, KEY_ID, SECRET, output) as run:
            wait_until(lambda: "waiting for signals" in output.read_text() or run.poll() is not None, timeout=60,
                       what="`smartexec run` to start")
            assert run.poll() is None, "`smartexec run` exited early"
            submitted = subprocess.run(
                [*SMARTEXEC, "-v", "submit", "--signal-id", sig.signal_id, "--symbol", sig.symbol, "--side",
                 sig.side.value, "--qty", str(sig.qty), "--price", str(sig.price), "--stop", str(sig.stop),
                 "--wait", "20", "--database-url", url],
                env=environment(KEY_ID, SECRET), capture_output=True, text=True, timeout=60, check=False)
            assert submitted.returncode == 0, "`smartexec submit` failed"
            wait_until(in_state(ledger, sig.signal_id, State.EXITS_PLACED), timeout=30, what="the exits")
            venue.advance(6)  # the bid reaches the target
            wait_until(in_state(ledger, sig.signal_id, State.CLOSED), timeout=30, what="the take-profit fill")
            run.send_signal(signal.SIGTERM)
            assert run.wait(30) == 0
    finally:
        ledger.close()
    text = output.read_text()

    keys = {"APCA_API_KEY_ID": KEY_ID, "APCA_API_SECRET_KEY": SECRET}
    assert_no_piece_of(keys, text, "`smartexec -v run`'s output")
    assert_no_piece_of(keys, submitted.stdout + submitted.stderr, "`smartexec -v submit`'s output")
    assert_no_piece_of(keys, ledger_dump(url, tmp_path / "ledger.db", tmp_path / "export"), "the ledger")
    # The run really logged the libraries' DEBUG lines, the stream's among them, and traded.
    for logger in ("DEBUG websockets.client", "DEBUG urllib3.connectionpool", "INFO alpaca.trading.stream"):
        assert logger in text
    assert "-> CLOSED" in text


def test_a_wrong_key_is_refused_without_showing_it(venue: Venue, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    output = tmp_path / "run.log"
    with engine(venue, url, WRONG_KEY_ID, WRONG_SECRET, output) as run:
        returncode = run.wait(60)
    text = output.read_text()

    keys = {"APCA_API_KEY_ID": WRONG_KEY_ID, "APCA_API_SECRET_KEY": WRONG_SECRET,
            "the venue's key id": KEY_ID, "the venue's secret": SECRET}
    assert_no_piece_of(keys, text, "`smartexec -v run`'s output")
    assert_no_piece_of(keys, ledger_dump(url, tmp_path / "ledger.db", tmp_path / "export"), "the ledger")
    assert returncode == 2
    assert "smartexec: Alpaca refused the API keys (request is not authorized)" in text
