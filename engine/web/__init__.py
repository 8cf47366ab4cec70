"""The HTTP interface (`smartexec serve`): signals in through the ledger's inbox, the auditor's reads
out as JSON, and a read-only page for people. `engine.web.app.create_app` builds it.

May import `engine.core`, `engine.ledger` and `engine.audit`; never the broker, the venue or the
service: like `smartexec submit`, it only writes the inbox (through the same checks,
`engine.ledger.submission`), and a running `smartexec run` trades.
"""
