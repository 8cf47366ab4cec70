"""`smartexec sim` runs the venue in the foreground, prints the URLs for alpaca-py, and stops on SIGINT."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import MarketOrderRequest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]


def test_standalone_serves_until_sigint() -> None:
    code = "import sys; from engine.sim.standalone import main; sys.exit(main(0, ['crwd_gap'], 1.0, 'k', 's'))"
    with subprocess.Popen([sys.executable, "-u", "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}) as proc:
        _drive(proc)


def _drive(proc: subprocess.Popen[str]) -> None:
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        text = "".join(lines)
        rest = re.search(r'url_override="(http://127\.0\.0\.1:\d+)"', text)
        stream = re.search(r'url_override="(ws://127\.0\.0\.1:\d+/stream)"', text)
        assert rest and stream, text
        assert "scenario crwd_gap on CRWD" in text
        client = TradingClient("k", "s", url_override=rest.group(1))
        assert client.get_clock().is_open
        order = client.submit_order(MarketOrderRequest(symbol="CRWD", qty=10, side=OrderSide.BUY,
                                                       time_in_force=TimeInForce.DAY))
        assert client.get_order_by_id(order.id).status == OrderStatus.FILLED
        _one_stream_per_key(stream.group(1))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _one_stream_per_key(url: str) -> None:
    """The standalone venue keeps Alpaca's limit: a second stream for the key gets HTTP 429."""
    with connect(url) as first:
        first.send(json.dumps({"action": "authenticate", "data": {"key_id": "k", "secret_key": "s"}}))
        assert json.loads(first.recv(5))["data"]["status"] == "authorized"
        with pytest.raises(InvalidStatus) as refused:
            connect(url).close()
        assert refused.value.response.status_code == 429


def test_standalone_refuses_an_unknown_scenario() -> None:
    from engine.sim.standalone import main

    assert main(0, ["no_such_scenario"], 1.0, "k", "s") == 2
