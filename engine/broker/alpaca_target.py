"""Which Alpaca account and endpoint `smartexec run` trades against, from the environment.

Kept beside the adapter so Alpaca's environment variables are read in `engine.broker` only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.broker.alpaca import AlpacaBroker
from engine.broker.market_data import AlpacaMarketData
from engine.broker.redaction import register_secret
from engine.core.errors import ConfigError

LIVE_URL = "https://api.alpaca.markets"


@dataclass(frozen=True)
class BrokerTarget:
    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    paper: bool
    rest_url: str | None
    stream_url: str | None

    def __repr__(self) -> str:  # the keys never reach a log line or a traceback
        where = self.rest_url or ("paper" if self.paper else "live")
        return f"BrokerTarget({where})"

    def __post_init__(self) -> None:
        register_secret(self.api_key, self.secret_key)  # masked in every log line from now on

    def broker(self) -> AlpacaBroker:
        return AlpacaBroker(self.api_key, self.secret_key, paper=self.paper, rest_url=self.rest_url,
                            stream_url=self.stream_url)

    def market_data(self, feed: str = "iex") -> AlpacaMarketData:
        """Alpaca's market data with the same keys, on `feed` (iex: free, 30 symbols per stream;
        sip: paid, no symbol limit): the local venue serves it on its one port (`rest_url`, quotes
        stream at /v2/<feed>), Alpaca on its data hosts (the adapter's defaults)."""
        if self.rest_url is None:
            return AlpacaMarketData(self.api_key, self.secret_key, feed=feed)
        stream = "ws" + self.rest_url[len("http"):] + f"/v2/{feed}"
        return AlpacaMarketData(self.api_key, self.secret_key, feed=feed, data_url=self.rest_url, stream_url=stream)


def broker_target(venue: str | None, live: bool, env: Mapping[str, str] | None = None) -> BrokerTarget:
    """Keys from APCA_API_KEY_ID / APCA_API_SECRET_KEY (the local venue accepts its defaults);
    paper unless --live or APCA_API_BASE_URL names the live endpoint; `venue` = a local venue URL."""
    source = os.environ if env is None else env
    if venue:
        base = venue.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ConfigError("--venue", f"expected http://HOST:PORT, was {venue!r}")
        stream = "ws" + base[len("http"):] + "/stream"
        return BrokerTarget(source.get("APCA_API_KEY_ID", "sim-key"), source.get("APCA_API_SECRET_KEY", "sim-secret"),
                            True, base, stream)
    key, secret = source.get("APCA_API_KEY_ID"), source.get("APCA_API_SECRET_KEY")
    if not key:
        raise ConfigError("APCA_API_KEY_ID", "is required unless --venue names a local venue")
    if not secret:
        raise ConfigError("APCA_API_SECRET_KEY", "is required unless --venue names a local venue")
    live = live or source.get("APCA_API_BASE_URL", "").rstrip("/") == LIVE_URL
    return BrokerTarget(key, secret, not live, None, None)
