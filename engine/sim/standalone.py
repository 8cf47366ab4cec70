"""`smartexec sim`: the local venue in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from engine.sim.clock import SimClock
from engine.sim.scenarios import ScenarioError, load_scenario
from engine.sim.venue import ALPACA_STREAM_CONNECTIONS, DEFAULT_START, Venue


def main(port: int, scenarios: list[str], speed: float, api_key: str, secret_key: str, *,
         heartbeat: float | None = 10.0) -> int:
    """Serve the venue on 127.0.0.1:`port` with `scenarios` loaded, the clock running at `speed`
    simulated seconds per real second (0 or less: manual, moved only by POST /admin/clock/advance);
    `heartbeat`: the trade_updates stream's ping interval (a silent client is dropped)."""
    try:
        loaded = [load_scenario(name) for name in scenarios]
    except (ScenarioError, OSError) as exc:
        print(f"smartexec sim: {exc}", file=sys.stderr)
        return 2
    clock = SimClock(start=loaded[0].start if loaded else DEFAULT_START, speed=speed if speed > 0 else None)
    venue = Venue(clock, api_key, secret_key, stream_connections_per_key=ALPACA_STREAM_CONNECTIONS,
                  stream_heartbeat=heartbeat if heartbeat and heartbeat > 0 else None)
    for scenario in loaded:
        venue.load_scenario(scenario)
    try:
        return asyncio.run(_serve(venue, port, loaded))
    except OSError as exc:
        print(f"smartexec sim: cannot serve on port {port}: {exc}", file=sys.stderr)
        return 1


async def _serve(venue: Venue, port: int, loaded: list) -> int:  # type: ignore[type-arg]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await venue.start(port)
    pace = "manual (POST /admin/clock/advance)" if venue.clock.manual else f"x{venue.clock.speed:g}"
    print(f"Local Alpaca-compatible venue, clock {venue.clock.now_et():%Y-%m-%d %H:%M:%S} ET, {pace}")
    print(f'  TradingClient(api_key="{venue.api_key}", secret_key="{venue.secret_key}", '
          f'url_override="{venue.rest_url}")')
    print(f'  TradingStream(api_key="{venue.api_key}", secret_key="{venue.secret_key}", '
          f'url_override="{venue.stream_url}")')
    print(f'  StockHistoricalDataClient(api_key="{venue.api_key}", secret_key="{venue.secret_key}", '
          f'url_override="{venue.data_url}")')
    print(f'  StockDataStream(api_key="{venue.api_key}", secret_key="{venue.secret_key}", '
          f'url_override="{venue.market_data_url()}")')
    for scenario in loaded:
        signal_text = ", ".join(f"{k}={v}" for k, v in scenario.signal.items())
        print(f"  scenario {scenario.name} on {scenario.symbol}: signal {signal_text}")
    print("Ctrl-C to stop.", flush=True)
    try:
        await stop.wait()
    finally:
        await venue.stop()
    return 0
