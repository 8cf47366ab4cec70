"""The anchor log: the chains' heads kept outside the database, one JSON line per anchor.

A hash chain without a secret cannot tell a rewrite with recomputed hashes, a cut tail or a wipe
from the real thing: whoever owns the database can redo every hash. A copy of the heads kept
elsewhere can. Each line of the log (README, "The anchor log") is the canonical JSON object (keys
sorted, no whitespace, ASCII)

    {"at": ISO UTC, "heads": {chain: [last_id, last_hash]}, "ledger": identity,
     "segments": {chain: {"from": id, "hashes": "..."}}, "sig": hex, "v": 1}

`segments` names, per chain, every row since the previous line (ids `from`..`last_id`) by the
first 12 hex digits of its row_hash, concatenated in id order (`-` * 12 for an id absent when it
was anchored), so that a check can name the first row that changed, not only that the head did.
`sig`, present when a key is configured, is HMAC-SHA256 over the line's canonical form without it.

Writers share a log by appending under an exclusive `flock`: each reads the last line to learn
where the previous anchor ended, so the segments of all writers chain without gaps or overlaps.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import make_url

from engine.core.errors import EngineError
from engine.ledger.chain import CHAINS, EMPTY, GENESIS, ChainHead, Problem, utc_text

VERSION = 1
PREFIX = 12  # hex digits of each row's hash: 48 bits, far beyond what forging one row by chance needs
ABSENT = "-" * PREFIX  # an id the chain did not hold when the line was written (a gap left by migration)
SUFFIX = ".anchors.jsonl"
_FIELDS = {"at", "heads", "ledger", "segments", "sig", "v"}
_HASH = re.compile(r"[0-9a-f]{64}\Z")
_PREFIXES = re.compile(r"(?:[0-9a-f]{12}|-{12})*\Z")
_BLOCK = 1 << 16


class AnchorError(EngineError):
    """No anchor was written, and why (never the key)."""


@dataclass(frozen=True)
class Segment:
    """One chain's part of a line: the rows `first`..`head.last_id` (none when nothing moved)."""

    first: int
    head: ChainHead
    prefixes: str

    @property
    def count(self) -> int:
        return len(self.prefixes) // PREFIX

    def prefix(self, row_id: int) -> str:
        at = (row_id - self.first) * PREFIX
        return self.prefixes[at:at + PREFIX]


@dataclass(frozen=True)
class Anchor:
    """One line of the log; `line` is its 1-based number in the file (0 before it is written)."""

    at: datetime
    ledger: str
    segments: Mapping[str, Segment]
    line: int = 0
    signed: bool = False

    @property
    def heads(self) -> dict[str, ChainHead]:
        return {chain: segment.head for chain, segment in self.segments.items()}

    def body(self) -> dict[str, Any]:
        """The line without its signature: what the signature covers."""
        return {
            "v": VERSION,
            "at": utc_text(self.at),
            "ledger": self.ledger,
            "heads": {chain: [s.head.last_id, s.head.last_hash] for chain, s in self.segments.items()},
            "segments": {chain: {"from": s.first, "hashes": s.prefixes} for chain, s in self.segments.items()},
        }


def canonical(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def signature(body: Mapping[str, Any], key: str) -> str:
    return hmac.new(key.encode("utf-8"), canonical(body), hashlib.sha256).hexdigest()


def line_of(anchor: Anchor, key: str | None) -> bytes:
    """The anchor as one line of the log, newline included."""
    body = anchor.body()
    if key:
        body["sig"] = signature(body, key)
    return canonical(body) + b"\n"


def default_path(url: str) -> Path:
    """Where the log goes when SMART_EXECUTOR_ANCHOR_LOG is not set: next to an SQLite file
    (`ledger.db.anchors.jsonl`), otherwise in the working directory, named after the database
    (`test@127.0.0.1.anchors.jsonl` for `postgresql+psycopg://u@127.0.0.1/test`, with the schema
    of a `search_path` option after the database name)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            return Path(database + SUFFIX)
        return Path("smartexec-memory" + SUFFIX)
    name = parsed.database or "ledger"
    # Ledgers that share a database in schemas of their own (options=-csearch_path=NAME) must not
    # share a log: the second would find the first's identity in it and refuse to continue it.
    options = parsed.query.get("options")
    schema = re.search(r"search_path\s*=\s*([A-Za-z0-9_]+)", options if isinstance(options, str) else "")
    if schema:
        name += f".{schema.group(1)}"
    name += f"@{parsed.host or 'localhost'}"
    if parsed.port:
        name += f"-{parsed.port}"
    return Path(re.sub(r"[^A-Za-z0-9._@-]", "_", name) + SUFFIX)


# --- reading -------------------------------------------------------------------------------------


class LineError(ValueError):
    """Why a line is not an anchor the log may hold."""


def parse_line(raw: bytes, number: int, key: str | None) -> Anchor:
    """One line (without its newline) as an Anchor; LineError says what is wrong with it.

    With a key, a line must carry the right signature; without one, a signature cannot be checked
    and is taken as it is (`Anchor.signed` tells which).
    """
    try:
        value = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LineError(f"is not a JSON object ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise LineError("is not a JSON object")
    if value.get("v") != VERSION:
        raise LineError(f"has format version {value.get('v')!r}, this engine reads {VERSION}")
    unknown = set(value) - _FIELDS
    if unknown or not {"at", "heads", "ledger", "segments"} <= set(value):
        raise LineError("does not have the fields of an anchor line (at, heads, ledger, segments, v)")
    sig = value.pop("sig", None)
    if key:
        if sig is None:
            raise LineError("is not signed, but SMART_EXECUTOR_ANCHOR_KEY is set")
        if not isinstance(sig, str) or not hmac.compare_digest(sig, signature(value, key)):
            raise LineError("has a signature that does not match: the line was edited, or signed with another key")
    elif sig is not None and not isinstance(sig, str):
        raise LineError("has a signature that is not text")
    at = _time(value["at"])
    ledger = value["ledger"]
    if not isinstance(ledger, str) or not ledger:
        raise LineError("names no ledger identity")
    heads, segments = value["heads"], value["segments"]
    if not isinstance(heads, dict) or not isinstance(segments, dict) or set(heads) != set(segments):
        raise LineError("does not give a head and a segment for each chain")
    if not set(heads) <= set(CHAINS):
        raise LineError(f"names a chain this ledger does not have ({', '.join(sorted(set(heads) - set(CHAINS)))})")
    parsed = {chain: _segment(chain, heads[chain], segments[chain]) for chain in CHAINS if chain in heads}
    return Anchor(at, ledger, parsed, line=number, signed=sig is not None)


def _time(raw: Any) -> datetime:
    try:
        at = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise LineError("has no ISO-8601 UTC time in `at`")
    return at.astimezone(timezone.utc)


def _segment(chain: str, head: Any, segment: Any) -> Segment:
    if (not isinstance(head, list) or len(head) != 2 or type(head[0]) is not int or head[0] < 0
            or not isinstance(head[1], str) or not _HASH.match(head[1])):
        raise LineError(f"has a {chain} head that is not [last_id, sha256]")
    if not isinstance(segment, dict) or set(segment) != {"from", "hashes"}:
        raise LineError(f"has a {chain} segment that is not {{from, hashes}}")
    first, prefixes = segment["from"], segment["hashes"]
    if type(first) is not int or first < 1 or not isinstance(prefixes, str) or not _PREFIXES.match(prefixes):
        raise LineError(f"has a {chain} segment whose `from` or `hashes` is malformed")
    result = Segment(first, ChainHead(head[0], head[1]), prefixes)
    if first + result.count - 1 != result.head.last_id:
        raise LineError(f"has a {chain} segment of {result.count} row(s) from {first} that does not end at "
                        f"its head {result.head.last_id}")
    if result.count and result.head.last_hash[:PREFIX] != prefixes[-PREFIX:]:
        raise LineError(f"has a {chain} head whose hash is not its segment's last")
    if result.head.last_id == 0 and result.head.last_hash != GENESIS:
        raise LineError(f"has an empty {chain} chain with a hash other than the genesis")
    return result


@dataclass
class LogReading:
    """Every line of a log: the anchors that could be read, and what is wrong with the others."""

    path: Path
    exists: bool = False
    lines: int = 0
    anchors: list[Anchor] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def log_problem(number: int, what: str) -> Problem:
    return Problem(None, None, None, f"anchor log line {number}: {what}")


def read_log(path: Path, key: str | None = None) -> LogReading:
    """Parse every line of the log at `path`; a missing file reads as `exists=False`.

    Problems: lines that are not anchors (torn, edited, unsigned or wrongly signed with a key),
    and consecutive lines of one ledger whose segments leave ids out or cover them twice (lines
    removed from, or added to, the log).
    """
    reading = LogReading(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return reading
    except OSError as exc:
        raise AnchorError(f"cannot read the anchor log {path}: {exc.strerror}") from None
    reading.exists = True
    raws = data.split(b"\n")
    torn = raws.pop()  # b"" when the file ends with its newline, as every whole write does
    previous: dict[str, Anchor] = {}
    for number, raw in enumerate(raws, start=1):
        try:
            anchor = parse_line(raw, number, key)
        except LineError as exc:
            reading.problems.append(log_problem(number, str(exc)))
            continue
        reading.anchors.append(anchor)
        before = previous.get(anchor.ledger)
        if before is not None:
            reading.problems.extend(_continuity(before, anchor))
        previous[anchor.ledger] = anchor
    reading.lines = len(raws)
    if torn:
        reading.lines += 1
        reading.problems.append(log_problem(reading.lines, "is incomplete (no newline at the end of the file): "
                                                           "a write was cut short, or the file was truncated"))
    return reading


def _continuity(before: Anchor, anchor: Anchor) -> Iterator[Problem]:
    for chain, segment in anchor.segments.items():
        ended = before.segments[chain].head.last_id if chain in before.segments else 0
        if segment.first > ended + 1:
            yield log_problem(anchor.line, f"its {chain} segment starts at {segment.first}, but line {before.line} "
                                           f"ended at {ended}: lines were removed from the log")
        elif segment.first <= ended:
            yield log_problem(anchor.line, f"its {chain} segment starts at {segment.first}, but line {before.line} "
                                           f"already covered up to {ended}: the line was not written after it")


# --- writing -------------------------------------------------------------------------------------


def write_anchor(engine: Engine, ledger_id: str, path: Path, *, key: str | None = None, force: bool = False,
                 now: datetime | None = None) -> Anchor | None:
    """Append one line anchoring every chain's rows since the log's last line (returned with
    `line` 0: counting the log's lines would mean reading all of it); None when nothing
    moved since it (unless `force`). Raises AnchorError, with nothing appended, when the chain no
    longer holds what the last line anchored, or the log cannot be continued."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise AnchorError(f"cannot open the anchor log {path}: {exc.strerror}") from None
    try:
        # Held until the line is on disk, so writers sharing the log read each other's last line.
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw, torn = _last_line(fd)
        previous = None if raw is None else _continued(raw, path, ledger_id, key)
        with engine.connect() as conn:
            segments = _segments(conn, previous)
        if previous is not None and not force and all(s.count == 0 for s in segments.values()):
            return None
        anchor = Anchor(now or datetime.now(timezone.utc), ledger_id, segments, signed=bool(key))
        # A torn line (a crash mid-write) is closed first, so the new line stays a line of its own.
        _write_all(fd, (b"\n" if torn else b"") + line_of(anchor, key), path)
        return anchor
    finally:
        os.close(fd)  # releases the lock


def _write_all(fd: int, data: bytes, path: Path) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        raise AnchorError(f"cannot write the anchor log {path}: {exc.strerror}") from None


def _last_line(fd: int) -> tuple[bytes | None, bool]:
    """The last whole line, and whether a torn line (no newline) follows it.

    Read backwards from the end: a log that grows by a line every half minute for years must not
    be read whole before each append.
    """
    size = os.fstat(fd).st_size
    if size == 0:
        return None, False
    torn = os.pread(fd, 1, size - 1) != b"\n"
    buffer, position = b"", size
    while position > 0:
        start = max(0, position - _BLOCK)
        buffer = os.pread(fd, position - start, start) + buffer
        position = start
        pieces = buffer.split(b"\n")
        # The last piece is the torn rest (b"" after a newline); the first may be cut by the block.
        whole = pieces[:-1] if position == 0 else pieces[1:-1]
        if whole:
            return whole[-1], torn
    return None, torn


def _continued(raw: bytes, path: Path, ledger_id: str, key: str | None) -> Anchor:
    try:
        previous = parse_line(raw, 0, key)
    except LineError as exc:
        raise AnchorError(f"the anchor log {path} cannot be continued: its last line {exc}; run "
                          "`smartexec ledger verify`, or start a new log") from None
    if previous.ledger != ledger_id:
        raise AnchorError(f"the anchor log {path} belongs to ledger {previous.ledger}, this is ledger {ledger_id} "
                          "(a recreated database?): run `smartexec ledger verify`, or start a new log")
    return previous


def _segments(conn: Connection, previous: Anchor | None) -> dict[str, Segment]:
    tables = set(inspect(conn).get_table_names())
    result = {}
    for chain, head_row in CHAINS.items():
        before = previous.segments[chain].head if previous is not None and chain in previous.segments else EMPTY
        head = _head(conn, chain, head_row, tables)
        if head.last_id < before.last_id:
            raise AnchorError(f"the {chain} chain ends at {head.last_id}, but the anchor log's last line recorded "
                              f"{before.last_id}: rows were removed; run `smartexec ledger verify`")
        prefixes = _prefixes(conn, chain, before, head) if head.last_id else ""
        result[chain] = Segment(before.last_id + 1, head, prefixes)
    return result


def _head(conn: Connection, chain: str, head_row: int, tables: set[str]) -> ChainHead:
    # A chain whose table is not there yet (a ledger migrated before it was added) is empty.
    if chain not in tables:
        return EMPTY
    row = conn.execute(text("SELECT last_id, last_hash FROM chain_head WHERE id = :id"), {"id": head_row}).first()
    if row is None and conn.execute(text(f"SELECT 1 FROM {chain} LIMIT 1")).first() is None:
        return EMPTY  # a head row written with the chain's first row, not by the migration, is fine too
    if row is None:
        raise AnchorError(f"the {chain} chain has no chain_head row (id {head_row}): run `smartexec ledger verify`")
    return ChainHead(row.last_id, row.last_hash)


def _prefixes(conn: Connection, chain: str, before: ChainHead, head: ChainHead) -> str:
    """The new rows' hash prefixes, after checking they still link to what the log last anchored."""
    # The chain's name comes from CHAINS, never from input: interpolating it is safe.
    rows = conn.execute(text(f"SELECT id, row_hash FROM {chain} WHERE id >= :low AND id <= :high ORDER BY id"),
                        {"low": max(before.last_id, 1), "high": head.last_id})
    parts: list[str] = []
    expected, last, linked = before.last_id + 1, before, before.last_id == 0
    for row_id, digest in rows:
        if row_id == before.last_id:
            if digest != before.last_hash:
                raise AnchorError(f"{chain} row {row_id} no longer has the hash the anchor log's last line recorded: "
                                  "the chain was rewritten; run `smartexec ledger verify`")
            linked = True
            continue
        parts.extend(ABSENT for _ in range(expected, row_id))
        parts.append(str(digest)[:PREFIX])
        expected, last = row_id + 1, ChainHead(row_id, str(digest))
    if not linked:
        raise AnchorError(f"{chain} row {before.last_id}, the anchor log's last line, is gone: "
                          "run `smartexec ledger verify`")
    if last != head:
        raise AnchorError(f"the {chain} chain_head ({head.last_id}) is not its last row ({last.last_id}): "
                          "run `smartexec ledger verify`")
    return "".join(parts)
