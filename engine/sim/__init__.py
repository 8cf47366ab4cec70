"""A local Alpaca-compatible venue for the demo and the end-to-end tests.

The unmodified alpaca-py `TradingClient` and `TradingStream` trade against it over loopback:
REST under `/v2`, the trade_updates websocket at `/stream`, test controls under `/admin`. Prices
follow scenario quote paths on a simulated clock; faults can be injected on every channel.

Imports nothing else of the engine (an import-linter contract): it is a stand-in for Alpaca, and
must agree with Alpaca's published contract, not with the engine's idea of it.

    venue = Venue(clock=SimClock(start=..., speed=None), api_key="sim-key", secret_key="sim-secret")
    venue.load_scenario("crwd_gap")
    await venue.start(port=0)      # venue.rest_url, venue.stream_url
"""

from engine.sim.clock import SimClock
from engine.sim.faults import Faults
from engine.sim.scenarios import QuotePoint, Scenario, ScenarioError, list_scenarios, load_scenario
from engine.sim.submissions import Submission
from engine.sim.venue import DEFAULT_START, Venue

__all__ = [
    "DEFAULT_START",
    "Faults",
    "QuotePoint",
    "Scenario",
    "ScenarioError",
    "SimClock",
    "Submission",
    "Venue",
    "list_scenarios",
    "load_scenario",
]
