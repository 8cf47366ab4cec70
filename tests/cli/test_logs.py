"""Issue 15: the log files. `smartexec run`, `demo` and `submit` log to logs/smartexec.log under
the working directory (or --log-file, or $SMART_EXECUTOR_LOG_DIR), as text or JSON lines, through
a rotating handler that masks secrets and tags each line with its account; and the README's
monitoring commands find what they look for, typed exactly as the README shows them.

`run` is played in its own process against the local venue (the demo takes 15 s: too slow here;
its progress lines are checked in tests/service/test_service_cli.py); the file's options are
checked with `submit` refusing a signal, in-process.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path

import pytest
from harness import API_KEY, API_SECRET, SMARTEXEC, product_environment, resting_venue, sqlite_url

from engine.cli import main
from engine.cli.logs import BACKUPS, FILE_HANDLER, MAX_BYTES
from engine.sim import Venue
from engine.sim.testing import wait_until

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) (\S+?)( \[\w+\])?: (.*)$")
BAD_QTY = ["submit", "--signal-id", "bad-qty-1", "--symbol", "AAPL", "--side", "buy", "--qty", "0",
           "--price", "100"]
RESTING = ["submit", "--signal-id", "rest-1", "--symbol", "AAPL", "--side", "buy", "--qty", "10", "--price", "100.00",
           "--stop", "99.00"]
LOG = Path("logs") / "smartexec.log"  # under the working directory
QTY_REASON = "qty: must be greater than zero, was '0'"
STALE = r"signal is \d+(\.\d+)?s old \(older than SMART_EXECUTOR_SIGNAL_MAX_AGE 30s\)"


def environment(**extra: str) -> dict[str, str]:
    return {**product_environment(), "APCA_API_KEY_ID": API_KEY, "APCA_API_SECRET_KEY": API_SECRET,
            "PYTHONUNBUFFERED": "1", **extra}


def shell(command: str, folder: Path) -> str:
    """A README command line, run by the shell in `folder`: what it printed."""
    done = subprocess.run(["sh", "-c", command], cwd=folder, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, (command, done.stderr)
    return done.stdout


class Engine:
    """`smartexec run` in `folder` against `venue` until `stop()`; its stderr collected."""

    def __init__(self, venue: Venue, folder: Path) -> None:
        self.process = subprocess.Popen([*SMARTEXEC, "run", "--venue", venue.rest_url, "--database-url",
                                         sqlite_url(folder)], cwd=folder, env=environment(),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        stream = self.process.stderr
        assert stream is not None
        self._reader = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._reader.start()
        wait_until(lambda: any(" serving account default " in line for line in self.lines)
                   or self.process.poll() is not None, timeout=60, what="`smartexec run` to serve")
        assert self.process.poll() is None, "".join(self.lines)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(30) == 0
        self._reader.join(15)


@pytest.fixture
def venue() -> Iterator[Venue]:
    with resting_venue() as venue:  # a buy at 100.05 rests under the 100.12 ask: its lifecycle stays open
        yield venue


def first_line(terminal: int, timeout: float = 20.0) -> str:
    """The first line a program in the pseudo-terminal `terminal` printed."""
    seen = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in seen:
        ready, _, _ = select.select([terminal], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"nothing printed within {timeout:g}s: {seen!r}"
        seen += os.read(terminal, 4096)
    return seen.split(b"\n", 1)[0].decode().rstrip("\r")


def test_run_and_submit_log_under_the_working_directory_where_the_readme_commands_find_it(
        venue: Venue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # `submit` runs in this process, in the folder `run` runs in
    monkeypatch.delenv("SMART_EXECUTOR_LOG_DIR", raising=False)
    url = sqlite_url(tmp_path)
    engine = Engine(venue, tmp_path)
    # In a terminal, as an operator types it: grep writes each line as it finds it only to a tty.
    terminal, side = pty.openpty()
    follow = subprocess.Popen(["sh", "-c", 'tail -f logs/*.log | grep "Smart executor"'], cwd=tmp_path,
                              stdin=subprocess.DEVNULL, stdout=side, stderr=side, start_new_session=True)
    os.close(side)
    try:
        assert main([*RESTING, "--wait", "20", "--database-url", url]) == 0
        assert main(["submit", "--signal-id", "old-1", "--symbol", "AAPL", "--side", "buy", "--qty", "10",
                     "--price", "100.00", "--stop", "99.00", "--created-at", "2020-01-01T00:00:00Z", "--wait", "20",
                     "--database-url", url]) == 3
        followed = first_line(terminal)
    finally:
        os.killpg(follow.pid, signal.SIGTERM)
        follow.wait(10)
        os.close(terminal)
        engine.stop()
    first_run = len(LOG.read_text().splitlines())
    Engine(venue, tmp_path).stop()  # a restart: rest-1 is still open

    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["smartexec.log"]
    initialized = shell('grep "Smart Order Executor initialized" logs/*.log', tmp_path).splitlines()
    assert len(initialized) == 2  # one per start
    assert LINE.match(initialized[0]).groups()[:3] == ("INFO", "smartexec", " [default]")  # type: ignore[union-attr]
    assert initialized[0].split(": ", 1)[1].startswith("Smart Order Executor initialized (mode=smart, ")
    rejected = [LINE.match(line).groups()[3]  # type: ignore[union-attr]
                for line in shell('grep "Smart executor rejected" logs/*.log', tmp_path).splitlines()]
    # The engine refuses the stale signal; submit, waiting for it, says so in its own line.
    assert len(rejected) == 2, rejected
    assert re.fullmatch(rf"Smart executor rejected old-1 {STALE}", rejected[0]), rejected[0]
    assert re.fullmatch(rf"Smart executor rejected old-1 inbox entry 2: lifecycle 2 old-1 is FAILED: {STALE}",
                        rejected[1]), rejected[1]
    assert LINE.match(followed) is not None and "Smart executor rejected old-1 " in followed, followed
    assert any("Smart Order Executor initialized" in line for line in engine.lines)  # stderr as before
    text = LOG.read_text()
    assert API_KEY not in text and API_SECRET not in text and API_SECRET[:8] not in text

    # The restart's counts agree: the stream connects before the resume has loaded rest-1.
    restart = [LINE.match(line).groups()[3] for line in text.splitlines()[first_run:]  # type: ignore[union-attr]
               if "reconcil" in line or "resuming" in line]
    assert restart == ["trade_updates stream connected; the resume reconciles the lifecycles left open",
                       "resuming 1 open lifecycles"]


# --- the file's options, with `submit` refusing a signal in-process ------------------------------------


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SMART_EXECUTOR_LOG_DIR", raising=False)
    monkeypatch.setenv("SMART_EXECUTOR_DATABASE_URL", sqlite_url(tmp_path))
    return tmp_path


def test_submit_logs_its_refusal_to_logs_smartexec_log_by_default(folder: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(BAD_QTY) == 2
    assert capsys.readouterr().err.endswith(f"smartexec: {QTY_REASON}\n")
    lines = (folder / "logs" / "smartexec.log").read_text().splitlines()
    assert [LINE.match(line).groups() for line in lines] == [  # type: ignore[union-attr]
        ("WARNING", "smartexec", None, f"Smart executor rejected bad-qty-1 {QTY_REASON}")]


def test_an_invalid_signal_id_is_not_repeated_in_the_log(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forged = "x\n2026-01-01 00:00:00,000 WARNING smartexec: Smart executor rejected forged"
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"signal_id": forged, "symbol": "AAPL", "side": "buy",
                                                             "qty": 1, "price": "100"}) + "\n"))
    assert main(["submit"]) == 2
    [line] = (folder / "logs" / "smartexec.log").read_text().splitlines()
    assert LINE.match(line).groups()[3] == (  # type: ignore[union-attr]
        "Smart executor rejected - signal_id: must be 1-64 characters of letters, digits, '.', '_', ':' or '-' "
        "(stdin line 1)")


def test_the_log_dir_from_the_environment_and_log_file_which_wins(folder: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMART_EXECUTOR_LOG_DIR", str(folder / "var"))
    assert main(BAD_QTY) == 2
    assert main([*BAD_QTY, "--log-file", str(folder / "mine.log")]) == 2

    assert (folder / "var" / "smartexec.log").read_text().count("Smart executor rejected bad-qty-1") == 1
    assert (folder / "mine.log").read_text().count("Smart executor rejected bad-qty-1") == 1
    assert not (folder / "logs").exists()


def test_json_lines_with_the_secrets_masked(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Zq7Xw2Rv9Lm4Tn8K"  # registered by main() as the anchor key: masked in every record
    monkeypatch.setenv("SMART_EXECUTOR_ANCHOR_KEY", secret)
    assert main(["submit", "--signal-id", f"id-{secret}", "--symbol", "AAPL", "--side", "buy", "--qty", "0",
                 "--price", "100", "--log-format", "json"]) == 2

    [line] = (folder / "logs" / "smartexec.log").read_text().splitlines()
    record = json.loads(line)
    assert set(record) == {"time", "level", "logger", "account", "message"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", record["time"])
    assert (record["level"], record["logger"], record["account"]) == ("WARNING", "smartexec", None)
    assert record["message"] == f"Smart executor rejected id-[redacted] {QTY_REASON}"
    assert secret[:4] not in line


def test_log_level_filters_the_file_and_the_handler_rotates(folder: Path) -> None:
    assert main([*BAD_QTY, "--log-level", "error"]) == 2
    assert (folder / "logs" / "smartexec.log").read_text() == ""  # the refusal is a WARNING

    from engine.cli.logs import configure
    from engine.cli.main import build_parser

    configure(build_parser().parse_args(["submit", "--log-file", str(folder / "r.log")]))
    try:
        [handler] = [h for h in logging.getLogger().handlers if h.get_name() == FILE_HANDLER]
        assert isinstance(handler, RotatingFileHandler)
        assert (handler.maxBytes, handler.backupCount, handler.baseFilename) == (MAX_BYTES, BACKUPS,
                                                                                 str(folder / "r.log"))
    finally:
        from engine.cli.logs import close_file

        close_file()
    assert [h for h in logging.getLogger().handlers if h.get_name() == FILE_HANDLER] == []


def test_an_unwritable_log_file_is_a_clear_error(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "taken").mkdir()
    assert main([*BAD_QTY, "--log-file", str(folder / "taken")]) == 2
    assert capsys.readouterr().err == f"smartexec: --log-file: cannot write {folder / 'taken'}: Is a directory\n"


def test_a_failed_stream_connect_is_one_line_without_its_traceback(folder: Path) -> None:
    from engine.cli.logs import close_file, configure
    from engine.cli.main import build_parser

    configure(build_parser().parse_args(["run", "--log-file", str(folder / "run.log")]))
    stream = logging.getLogger("alpaca.trading.stream")
    try:
        try:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")
        except OSError:
            stream.exception("error during websocket communication: %s", "[Errno 111] Connect call failed")
        try:
            raise ValueError("not a network error")
        except ValueError:
            stream.exception("unexpected")
    finally:
        close_file()
    lines = (folder / "run.log").read_text().splitlines()
    assert [LINE.match(line).groups()[3] for line in lines[:2]] == [  # type: ignore[union-attr]
        "error during websocket communication: [Errno 111] Connect call failed", "unexpected"]
    # Only the other error keeps its traceback.
    assert (lines[2], lines[-1]) == ("Traceback (most recent call last):", "ValueError: not a network error")
    assert "ConnectionRefusedError" not in "\n".join(lines)
