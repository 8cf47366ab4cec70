"""Brokers: the venue-neutral port (orders, events, finality, legs, the trading session), the
Alpaca adapter over alpaca-py, the client-side rate limiter and an in-memory fake broker.

May import `engine.core`. Never the ledger, the service, the audit side or the command line.
Alpaca's environment variables are read in `engine.broker.alpaca_target` only, and its status
words are mapped in `engine.broker.alpaca`; the fake speaks them too, through that map.
"""
