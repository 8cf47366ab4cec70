"""The auditor's side: read-only queries, lifecycle stories, CSV export, `verify` and the report.

May import `engine.core` and `engine.ledger` (the schema, the chain, the codec). Never the broker
or the service: an auditor's reads never touch a venue.
"""

from engine.audit.anchors import AnchorCheck, check_anchor_log
from engine.audit.queries import (
    EXPORTABLE,
    TABLES,
    VIEWS,
    LifecycleFilter,
    Story,
    export_csv,
    lifecycle_story,
    list_lifecycles,
    outcome_rows,
    parse_when,
    read_engine,
    row_counts,
)
from engine.audit.verification import Verification, verify

__all__ = [
    "EXPORTABLE", "TABLES", "VIEWS", "AnchorCheck", "LifecycleFilter", "Story", "Verification", "check_anchor_log",
    "export_csv", "lifecycle_story", "list_lifecycles", "outcome_rows", "parse_when", "plain", "read_engine",
    "row_counts", "verify",
]
