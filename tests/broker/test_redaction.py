"""The redacting log filter, on records with arguments, `extra` fields, exceptions and
tracebacks; the websockets frame filter; and the keys in the adapter's objects and errors."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from alpaca.common.exceptions import APIError

from engine.broker.alpaca import AlpacaBroker, translate
from engine.broker.alpaca_target import broker_target
from engine.broker.port import BrokerUnauthorized
from engine.broker.redaction import (
    MASK,
    WITHHELD,
    RedactingFilter,
    Secrets,
    install_redaction,
    quiet_wire_frames,
    redact,
    register_secret,
)

KEY_ID = "PKU5RDZXQ8WJM3VTYH7C"
SECRET = "hT6wQz3KxV8nRp2LmY9jGc4BfW7sDq5ZxNa1Ev0P"


def pieces(value: str, size: int = 4) -> list[str]:
    return [value[i:i + size] for i in range(len(value) - size + 1)]


def assert_clean(text: str, *keys: str) -> None:
    """No 4 characters of a key in `text`; checked before any assertion that would show `text`."""
    __tracebackhide__ = True  # the traceback would show the text
    leaked = [p for value in keys or (KEY_ID, SECRET) for p in pieces(value) if p in text]
    if leaked:
        pytest.fail(f"{len(leaked)} pieces of a key in the text", pytrace=False)


@pytest.fixture
def secrets() -> Secrets:
    registry = Secrets()
    registry.register(KEY_ID, SECRET)
    return registry


@pytest.fixture
def logged(secrets: Secrets) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose one handler (a stream, with a formatter showing an `extra` field) masks."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_every_piece_of_four_characters_or_more_is_masked(secrets: Secrets) -> None:
    assert secrets.redact(f"key {KEY_ID} secret {SECRET}.") == f"key {MASK} secret {MASK}."
    # The tail websockets showed of the auth frame, a piece in the middle, one across a boundary.
    assert secrets.redact(f'"...{SECRET[-20:]}"}}') == f'"...{MASK}"}}'
    assert secrets.redact(f"x{SECRET[10:14]}y") == f"x{MASK}y"
    assert secrets.redact(f"{KEY_ID[-3:]}{SECRET[:3]}") == f"{KEY_ID[-3:]}{SECRET[:3]}"  # 3 + 3: no piece of 4
    assert secrets.redact("nothing secret here") == "nothing secret here"
    assert not secrets.leaks(secrets.redact(f"{SECRET[5:9]}{KEY_ID[2:7]}{SECRET}"))
    assert repr(secrets) == "Secrets(2 registered)"


def test_a_mask_that_would_show_a_piece_withholds_the_text() -> None:
    registry = Secrets()
    registry.register("ted]xyz")  # the mask, "[redacted]", ends in a piece of it
    assert registry.redact("a ted]xy b") == WITHHELD
    registry.register(WITHHELD)
    assert registry.redact("a ted]xy b") == ""


def test_the_message_and_its_arguments_are_masked(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.debug("> TEXT %r [%d bytes]", f'{{"action": "authenticate", "data": {{"key_id": "{KEY_ID}", '
                 f'"secret_key": "{SECRET}"}}}}', 134)
    logger.info("headers %s", {"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET})
    logger.info(f"tail ...{SECRET[-20:]}")
    logger.warning("bad format %d", f"{SECRET}")  # logging itself would print the raw args
    text = stream.getvalue()
    assert_clean(text)
    assert "DEBUG test.redaction: > TEXT " in text and "[134 bytes]" in text
    assert text.count(MASK) >= 6


def test_extra_fields_are_masked(secrets: Secrets) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "request", None, None)
    record.token = SECRET
    record.headers = {"key": KEY_ID}
    RedactingFilter(secrets).filter(record)
    formatted = logging.Formatter("%(message)s %(token)s %(headers)s").format(record)
    assert_clean(formatted)
    assert formatted == f"request {MASK} {{'key': '{MASK}'}}"


def test_exceptions_and_tracebacks_are_masked(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged

    def authenticate() -> None:
        raise ValueError(f"refused key {KEY_ID}")

    try:
        try:
            authenticate()
        except ValueError as exc:
            raise RuntimeError(f"stream failed with secret ...{SECRET[8:]}") from exc
    except RuntimeError:
        logger.exception("error during websocket communication: %s", SECRET[:12])
    logger.error("with the stack", stack_info=True, extra={"where": SECRET})
    text = stream.getvalue()
    assert_clean(text)
    assert "Traceback (most recent call last):" in text
    assert "in authenticate" in text and f"ValueError: refused key {MASK}" in text
    assert "The above exception was the direct cause" in text
    assert f"RuntimeError: stream failed with secret ...{MASK}" in text
    assert "Stack (most recent call last):" in text


def test_a_record_holds_no_raw_value_after_the_filter(secrets: Secrets) -> None:
    try:
        raise ValueError(SECRET)
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "key %s", (KEY_ID,), sys.exc_info())
    RedactingFilter(secrets).filter(record)
    assert_clean(repr(vars(record)))
    assert (record.msg, record.args, record.exc_info) == (f"key {MASK}", None, None)
    assert record.exc_text is not None and record.exc_text.endswith(f"ValueError: {MASK}")


def test_websockets_logs_no_frames(secrets: Secrets) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    client = logging.getLogger("websockets.client")
    level, client.level = client.level, logging.DEBUG
    client.addHandler(handler)
    try:
        quiet_wire_frames()
        quiet_wire_frames()  # once is enough
        client.debug("= connection is %s", "OPEN")
        client.debug("> %s", f"TEXT '{{\"key_id\": \"...{SECRET[-20:]}\"}}' [134 bytes]")
        client.debug("< %s", "BINARY '{\"stream\":\"authorization\"}' [81 bytes]")
        client.debug("> %s: %s", "Host", "127.0.0.1:8765")
    finally:
        client.removeHandler(handler)
        client.setLevel(level)
    assert stream.getvalue() == "= connection is OPEN\n> Host: 127.0.0.1:8765\n"
    assert sum(type(f).__name__ == "_DropFrames" for f in client.filters) == 1


def test_install_puts_the_filter_on_the_root_handlers_once() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    try:
        installed = install_redaction()
        assert install_redaction() is installed
        assert handler.filters.count(installed) == 1
        assert logging.lastResort is not None and installed in logging.lastResort.filters
    finally:
        root.removeHandler(handler)


def test_the_adapter_registers_its_keys_and_its_errors_carry_none() -> None:
    # No 4 characters in common with the keys other tests register (the registry masks pieces).
    key_id, secret = "PKB2NDTX7QWZ5RJY8VMF", "cL4xZp8RuW2nVm6KpY3jHd9BgF5sTw7QzJa0Xu1M"
    unregistered = redact(f"{key_id} {secret}") == f"{key_id} {secret}"
    assert unregistered
    broker = AlpacaBroker(key_id, secret, rest_url="http://127.0.0.1:9")
    for text in (redact(f"{key_id} {secret}"), repr(broker)):
        assert_clean(text, key_id, secret)
    assert redact(f"{key_id} {secret}") == f"{MASK} {MASK}"

    target_keys = "PKZ9MWQ4XTRB7VJN2HYD", "wX5qZn8KtR3vLm7YpJ2cGd6BhF4sQz9NxVe1Tk0A"
    target = broker_target(None, False, dict(zip(("APCA_API_KEY_ID", "APCA_API_SECRET_KEY"), target_keys)))
    for text in (redact(" ".join(target_keys)), repr(target), str(target)):
        assert_clean(text, *target_keys)

    # A venue that echoes the key in its refusal: the engine's error shows none of it.
    body = f'{{"code": 40110000, "message": "key {key_id} is not authorized"}}'
    error = translate(APIError(body, _HttpError(401)))
    assert isinstance(error, BrokerUnauthorized)
    assert_clean(str(error), key_id, secret)
    assert str(error) == f"Alpaca refused the API keys (key {MASK} is not authorized)"


def test_registering_nothing_changes_nothing() -> None:
    registry = Secrets()
    registry.register(None, "")
    assert not registry and registry.redact("text") == "text"
    register_secret()  # no values: the process-wide registry is unchanged


class _Response:
    def __init__(self, status: int) -> None:
        self.status_code = status


class _HttpError:
    def __init__(self, status: int) -> None:
        self.response = _Response(status)
        self.request = None
