"""The pure core: what a signal is, how prices and guards work, the lifecycle table, replay and
the decisions the service carries out.

No I/O lives here and nothing here imports the ledger, the broker, the service, the audit side,
the command line, the venue or any database, HTTP or websocket library: every function takes the
lifecycle, the facts, the settings and the time as arguments. That is what lets the decisions be
tested without a venue and replayed from the ledger.
"""
