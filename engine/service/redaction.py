"""Secrets never reach a log line: the command line and Python API users install the filter from
here (the broker adapter, which holds the keys, registers them in `engine.broker.redaction`).

    logging.basicConfig(...)            # configure logging first
    install_redaction()                 # then mask the registered keys on every handler
"""

from engine.broker.redaction import (
    MASK,
    RedactingFilter,
    install_redaction,
    quiet_wire_frames,
    redact,
    register_secret,
)

__all__ = ["MASK", "RedactingFilter", "install_redaction", "quiet_wire_frames", "redact", "register_secret"]
