"""`smartexec run`'s choice of Alpaca account and endpoint, read from the environment."""

from __future__ import annotations

import pytest

from engine.broker.alpaca_target import BrokerTarget, broker_target
from engine.core.errors import ConfigError

KEYS = {"APCA_API_KEY_ID": "key-7f3a", "APCA_API_SECRET_KEY": "secret-91bc"}


def test_paper_unless_live_is_asked_for() -> None:
    assert broker_target(None, False, KEYS) == BrokerTarget("key-7f3a", "secret-91bc", True, None, None)
    assert broker_target(None, True, KEYS).paper is False
    assert broker_target(None, False, {**KEYS, "APCA_API_BASE_URL": "https://api.alpaca.markets/"}).paper is False
    assert broker_target(None, False, {**KEYS, "APCA_API_BASE_URL": "https://paper-api.alpaca.markets"}).paper


def test_a_local_venue_needs_no_keys_and_gets_its_stream_url() -> None:
    target = broker_target("http://127.0.0.1:8765/", False, {})
    assert target == BrokerTarget("sim-key", "sim-secret", True, "http://127.0.0.1:8765", "ws://127.0.0.1:8765/stream")
    with pytest.raises(ConfigError, match=r"--venue: expected http://HOST:PORT, was '127.0.0.1:8765'"):
        broker_target("127.0.0.1:8765", False, {})


@pytest.mark.parametrize(("env", "missing"), [({}, "APCA_API_KEY_ID"),
                                              ({"APCA_API_KEY_ID": "k"}, "APCA_API_SECRET_KEY")])
def test_keys_are_required_for_alpaca(env: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigError, match=f"{missing}: is required unless --venue names a local venue"):
        broker_target(None, False, env)


def test_the_keys_never_show() -> None:
    target = broker_target(None, False, KEYS)
    assert (repr(target), str(target)) == ("BrokerTarget(paper)", "BrokerTarget(paper)")
    assert repr(broker_target(None, True, KEYS)) == "BrokerTarget(live)"
    assert "secret-91bc" not in repr(target.broker()) and "key-7f3a" not in repr(target.broker())
