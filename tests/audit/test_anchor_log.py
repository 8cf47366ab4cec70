"""The anchor log: what the chain alone cannot catch (a cut tail, a forged append, a full rewrite with
recomputed hashes, a wipe), caught by comparing the chains with the heads kept outside the database.

The tamper tests play someone who owns the database (they drop the append-only triggers and keep
every hash and the projection consistent, so that `verify` without the log passes) but not the
anchor log. They run on SQLite and PostgreSQL through the real commands in a subprocess.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from harness import verified
from sample_ledger import DAY2, Sample
from sqlalchemy import Connection, Engine, create_engine, delete, insert, select, text, update
from test_verify import rewrite_fill_price, unguard

from engine.audit import check_anchor_log
from engine.core.config import Settings
from engine.core.domain import Mode, Signal
from engine.ledger import Ledger
from engine.ledger import database as db
from engine.ledger.anchors import (
    ABSENT,
    Anchor,
    AnchorError,
    LineError,
    Segment,
    default_path,
    line_of,
    parse_line,
    read_log,
    write_anchor,
)
from engine.ledger.chain import GENESIS, ChainHead, row_hash
from engine.ledger.schema import chain_head, fills, lifecycles, orders, records, transitions_table
from engine.service.anchoring import Anchoring

KEY = "Zq7Xw9Pk2Lm4Vb8Nj3Rt6Hy"  # shares no 4 characters with the words it is checked against
BASE = 42  # the sample ledger's transitions, anchored by line 1
TOTAL = BASE + 3  # lifecycle K's three rows, anchored by line 2


# --- the commands ------------------------------------------------------------------------------


def cli(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMART_EXECUTOR_ANCHOR")}
    if key is not None:
        env["SMART_EXECUTOR_ANCHOR_KEY"] = key
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, check=False,
                          timeout=120, env=env)


def anchor_cli(url: str, log: Path, *extra: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    result = cli("ledger", "anchor", "--database-url", url, "--anchor-log", str(log), *extra, key=key)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def verify_cli(url: str, log: Path, *extra: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    return cli("ledger", "verify", "--database-url", url, "--anchor-log", str(log), *extra, key=key)


def first_bad_row(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ledger verify: FAILED"), result.stdout
    return lines[1].strip()


def stamp(log: Path, line: int) -> str:
    """How verify names the time a line was written."""
    at = json.loads(log.read_text().splitlines()[line - 1])["at"]
    return datetime.fromisoformat(at).strftime("%Y-%m-%d %H:%M:%SZ")


# --- the anchored sample -----------------------------------------------------------------------


@dataclass
class Anchored:
    sample: Sample
    log: Path
    k: int  # lifecycle K: opened (row 43), submitted (44), timed out (45) after line 1
    k_opened: dict[str, Any]  # K's lifecycles row as of row 43

    @property
    def url(self) -> str:
        return self.sample.url


def add_k(ledger: Ledger) -> tuple[int, dict[str, Any]]:
    signal = Signal.parse({"signal_id": "sig-K", "symbol": "CRWD", "side": "buy", "qty": 1, "price": "534.82",
                           "stop": "529.47"})
    lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=DAY2)
    with ledger.engine.connect() as conn:
        opened = dict(conn.execute(select(lifecycles).where(lifecycles.c.id == lc.id)).mappings().one())
    lc, _ = ledger.record(lc, "submitted", {}, at=DAY2 + timedelta(seconds=1), source="engine")
    ledger.record(lc, "timeout", {}, at=DAY2 + timedelta(seconds=61), source="timer")
    return lc.id, opened


def anchor_sample(sample: Sample, log: Path, key: str | None = None) -> Anchored:
    anchor_cli(sample.url, log, key=key)
    k, opened = add_k(sample.ledger)
    anchor_cli(sample.url, log, key=key)
    assert len(log.read_text().splitlines()) == 2
    return Anchored(sample, log, k, opened)


@pytest.fixture
def anchored(sample: Sample, tmp_path: Path) -> Anchored:
    return anchor_sample(sample, tmp_path / "anchors.jsonl")


def rows_from(conn: Connection, first: int) -> list[dict[str, Any]]:
    query = select(transitions_table).where(transitions_table.c.id >= first).order_by(transitions_table.c.id)
    return [dict(r) for r in conn.execute(query).mappings()]


def row(conn: Connection, row_id: int) -> dict[str, Any]:
    return dict(conn.execute(select(transitions_table).where(transitions_table.c.id == row_id)).mappings().one())


# --- what the chain alone cannot catch ----------------------------------------------------------


def test_an_untouched_ledger_verifies_with_its_log_and_prints_the_newest_anchor(anchored: Anchored) -> None:
    result = verify_cli(anchored.url, anchored.log)
    assert result.returncode == 0, result.stdout + result.stderr
    with anchored.sample.ledger.engine.connect() as conn:
        head = row(conn, TOTAL)["row_hash"]
        records = conn.execute(select(chain_head.c.last_id, chain_head.c.last_hash).where(chain_head.c.id == 2)).one()
    text = " ".join(result.stdout.split())  # the log's path may wrap the line
    assert f"anchor log 2 line(s) checked in {anchored.log}: every anchored row is in the chain unchanged" in text
    assert (f"              newest: line 2 at {stamp(anchored.log, 2)}\n"
            f"              transitions  {TOTAL}:{head}\n"
            f"              records      {records.last_id}:{records.last_hash}\n") in result.stdout
    report = json.loads(verify_cli(anchored.url, anchored.log, "--json").stdout)
    assert report["ok"] is True and report["problems"] == []
    assert report["anchor_log"]["lines_checked"] == 2
    assert report["anchor_log"]["newest"]["heads"]["transitions"] == {"last_id": TOTAL, "last_hash": head}


def test_a_cut_tail_is_caught_at_the_first_missing_row(anchored: Anchored) -> None:
    """Prevents erasing the newest rows (K's submit and timeout) and rolling the head and the
    projection back, which leaves a chain that verifies on its own."""
    ledger = anchored.sample.ledger
    with ledger.engine.begin() as conn:
        unguard(conn)
        kept = row(conn, BASE + 1)
        conn.execute(delete(transitions_table).where(transitions_table.c.id > BASE + 1))
        conn.execute(update(chain_head).where(chain_head.c.id == 1).values(last_id=kept["id"],
                                                                           last_hash=kept["row_hash"]))
        conn.execute(update(lifecycles).where(lifecycles.c.id == anchored.k)
                     .values({k: v for k, v in anchored.k_opened.items() if k != "id"}))
    assert verified(anchored.url).problems == []  # the chain alone cannot tell
    assert first_bad_row(verify_cli(anchored.url, anchored.log)) == (
        f"transition {BASE + 2}: is missing: the anchor log recorded it at {stamp(anchored.log, 2)} (line 2); "
        f"the chain ends at transition {BASE + 1}: rows were cut off the end")


def test_a_forged_append_after_a_cut_is_caught_at_the_first_forged_row(anchored: Anchored) -> None:
    """Prevents replacing the newest rows with made-up ones that carry valid recomputed hashes."""
    ledger = anchored.sample.ledger
    with ledger.engine.begin() as conn:
        unguard(conn)
        replaced = rows_from(conn, BASE + 2)
        conn.execute(delete(transitions_table).where(transitions_table.c.id >= BASE + 2))
        prev = row(conn, BASE + 1)["row_hash"]
        for forged in replaced:
            forged["source"] = "stream"  # as if the broker, not the engine's own timer, had said so
            forged["prev_hash"], forged["row_hash"] = prev, row_hash(prev, forged)
            prev = forged["row_hash"]
            conn.execute(insert(transitions_table).values(forged))
        conn.execute(update(chain_head).where(chain_head.c.id == 1).values(last_id=TOTAL, last_hash=prev))
    assert verified(anchored.url).problems == []
    assert first_bad_row(verify_cli(anchored.url, anchored.log)) == (
        f"transition {BASE + 2}: differs from what the anchor log recorded at {stamp(anchored.log, 2)} (line 2): "
        "the chain was rewritten from here")


def test_a_full_rewrite_with_recomputed_hashes_is_caught_at_the_edited_row(anchored: Anchored) -> None:
    """Prevents quietly improving a fill price (535.00 -> 534.90) by someone who redoes every hash."""
    fill_id = rewrite_fill_price(anchored.sample)
    assert verified(anchored.url).problems == []
    result = verify_cli(anchored.url, anchored.log)
    assert first_bad_row(result) == (
        f"transition {fill_id}: differs from what the anchor log recorded at {stamp(anchored.log, 1)} (line 1): "
        "the chain was rewritten from here")
    report = json.loads(verify_cli(anchored.url, anchored.log, "--json").stdout)
    assert report["ok"] is False and report["problems"][0]["transition_id"] == fill_id


def test_deleting_every_row_and_resetting_the_head_is_caught_as_a_wipe(anchored: Anchored) -> None:
    with anchored.sample.ledger.engine.begin() as conn:
        unguard(conn)
        unguard(conn, "records")
        for table in (fills, orders, transitions_table, lifecycles):
            conn.execute(delete(table))
        conn.execute(update(chain_head).where(chain_head.c.id == 1).values(last_id=0, last_hash=GENESIS))
        # The records chain cut back to its first record, the ledger identity's adoption (migration 0011).
        conn.execute(delete(records).where(records.c.id > 1))
        identity = conn.execute(select(records.c.row_hash).where(records.c.id == 1)).scalar_one()
        conn.execute(update(chain_head).where(chain_head.c.id == 2).values(last_id=1, last_hash=identity))
    assert verified(anchored.url).problems == []
    assert first_bad_row(verify_cli(anchored.url, anchored.log)) == (
        f"transition 1: is missing: the transitions chain is empty, but the anchor log recorded it at "
        f"{stamp(anchored.log, 1)} (line 1), and transitions up to {TOTAL} at {stamp(anchored.log, 2)} (line 2): "
        "the ledger was wiped")


def test_a_recreated_database_is_caught_as_a_wipe(anchored: Anchored) -> None:
    """Prevents starting over with an empty ledger (new identity) and claiming nothing ever traded."""
    ledger = anchored.sample.ledger
    old = ledger.identity()
    with ledger.engine.connect() as conn:
        records_head = conn.execute(select(chain_head.c.last_id).where(chain_head.c.id == 2)).scalar_one()
    ledger.close()
    db.downgrade(anchored.url, "base")
    db.upgrade(anchored.url)
    fresh = Ledger(anchored.url)
    try:
        new = fresh.identity()
    finally:
        fresh.close()
    assert new != old
    assert verified(anchored.url).problems == []
    assert first_bad_row(verify_cli(anchored.url, anchored.log)) == (
        f"the anchor log was written for ledger {old} (2 line(s), the newest at {stamp(anchored.log, 2)} (line 2) "
        f"anchoring transitions up to {TOTAL}, records up to {records_head}), but this database is ledger {new}: "
        "the ledger was wiped and "
        "recreated, or the log belongs to another ledger")
    # The engine refuses to continue the old log rather than paper over the break.
    with pytest.raises(AnchorError, match=f"belongs to ledger {old}, this is ledger {new}"):
        write_anchor(db.make_engine(anchored.url), new, anchored.log)


# --- a signed log --------------------------------------------------------------------------------


def test_an_edited_line_of_a_signed_log_fails_its_signature_and_the_key_is_never_shown(
        sample: Sample, tmp_path: Path) -> None:
    log = tmp_path / "signed.jsonl"
    outputs = [anchor_cli(sample.url, log, key=KEY)]
    add_k(sample.ledger)
    outputs.append(anchor_cli(sample.url, log, key=KEY))
    ok = verify_cli(sample.url, log, key=KEY)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "newest: line 2 at" in ok.stdout and ", signed\n" in ok.stdout
    lines = log.read_text().splitlines()
    assert all(json.loads(line)["sig"] for line in lines)
    # Someone who can write the log, but has no key, makes line 1 anchor a doctored row 5.
    edited = json.loads(lines[0])
    hashes = edited["segments"]["transitions"]["hashes"]
    edited["segments"]["transitions"]["hashes"] = hashes[:48] + "0" * 12 + hashes[60:]
    log.write_text("\n".join([json.dumps(edited, sort_keys=True, separators=(",", ":")), lines[1]]) + "\n")
    failed = verify_cli(sample.url, log, key=KEY)
    assert first_bad_row(failed) == ("anchor log line 1: has a signature that does not match: the line was edited, "
                                     "or signed with another key")
    # An unsigned line is refused as well when a key is set.
    del edited["sig"]
    log.write_text("\n".join([json.dumps(edited, sort_keys=True, separators=(",", ":")), lines[1]]) + "\n")
    unsigned = verify_cli(sample.url, log, "--json", key=KEY)
    assert json.loads(unsigned.stdout)["problems"][0]["message"] == (
        "anchor log line 1: is not signed, but SMART_EXECUTOR_ANCHOR_KEY is set")
    refused = cli("ledger", "anchor", "--database-url", sample.url, "--anchor-log", str(log), "--force", key="x" * 20)
    assert refused.returncode != 0 and "cannot be continued" in refused.stderr
    for result in (*outputs, ok, failed, unsigned, refused):
        for part in (KEY, KEY[:8], KEY[-8:]):
            assert part not in result.stdout + result.stderr
    assert KEY[:8] not in log.read_text()


def test_the_running_engine_never_logs_the_key(ledger: Ledger, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A failure to write (here: no such directory) is logged at ERROR with its reason, not the key."""
    from engine.service.redaction import RedactingFilter

    settings = replace(Settings.from_env({}), anchor_key=KEY, anchor_every=0.05)
    anchoring = Anchoring(ledger, settings, path=tmp_path / "missing" / "anchors.jsonl")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.DEBUG, logger="smartexec"):
        assert asyncio.run(anchoring.write_logged()) is None
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "no line written: cannot open the anchor log" in error.getMessage()
    assert "No such file or directory" in error.getMessage()
    assert KEY[:8] not in caplog.text and KEY not in repr(settings)


# --- the engine's writer -------------------------------------------------------------------------


def test_the_periodic_writer_writes_when_a_head_moved_and_not_otherwise(ledger: Ledger, tmp_path: Path) -> None:
    log = tmp_path / "anchors.jsonl"
    anchoring = Anchoring(ledger, replace(Settings.from_env({}), anchor_every=0.05), path=log)

    async def scenario() -> tuple[int, int, int]:
        task = asyncio.create_task(anchoring.run())
        try:
            await asyncio.sleep(0.3)
            empty_ledger = len(log.read_text().splitlines())  # one line: an empty chain is anchored once
            await asyncio.to_thread(add_k, ledger)
            await asyncio.sleep(0.3)
            moved = len(log.read_text().splitlines())
            await asyncio.sleep(0.3)
            idle = len(log.read_text().splitlines())
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await anchoring.close()  # nothing moved since: no line at the stop either
        return empty_ledger, moved, idle

    empty_ledger, moved, idle = asyncio.run(scenario())
    assert empty_ledger == 1 and moved >= 2 and idle == moved  # K's 3 rows may land in 1 line or more
    assert len(log.read_text().splitlines()) == moved
    reading = read_log(log)
    assert reading.problems == []
    assert reading.anchors[0].heads["transitions"].last_id == 0
    assert reading.anchors[-1].heads["transitions"].last_id == 3
    add_k_again = Signal.parse({"signal_id": "sig-L", "symbol": "CRWD", "side": "buy", "qty": 1, "price": "1"})
    ledger.open_lifecycle(add_k_again, mode=Mode.SMART, extended_hours=False, at=DAY2)
    asyncio.run(anchoring.close())  # a clean stop anchors what moved since the last line
    assert read_log(log).anchors[-1].heads["transitions"].last_id == 4


def test_two_writers_sharing_one_log_keep_it_continuous(ledger: Ledger, tmp_path: Path) -> None:
    """Prevents two engines (or workers) writing overlapping or gapped segments into one log."""
    log = tmp_path / "anchors.jsonl"
    second = Ledger(ledger.url)
    stop = threading.Event()
    errors: list[BaseException] = []

    def trade() -> None:
        try:
            started = time.monotonic()
            while not log.exists() and time.monotonic() < started + 10:  # the writers go first
                time.sleep(0.001)
            for n in range(20):
                signal = Signal.parse({"signal_id": f"c-{n}", "symbol": "CRWD", "side": "buy", "qty": 1,
                                       "price": "534.82"})
                lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART, extended_hours=False, at=DAY2)
                ledger.record(lc, "submitted", {}, at=DAY2, source="engine")
                time.sleep(0.005)  # lines between the lifecycles, not only after the last
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    def anchor(writer: Ledger) -> None:
        try:
            while not stop.is_set():
                write_anchor(writer.engine, writer.identity(), log)
                time.sleep(0.001)
            write_anchor(writer.engine, writer.identity(), log)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=trade), threading.Thread(target=anchor, args=(ledger,)),
               threading.Thread(target=anchor, args=(second,))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        second.close()
    assert errors == []
    reading = read_log(log)
    assert reading.problems == [] and len(reading.anchors) >= 2
    ended = 0
    for anchor_ in reading.anchors:
        segment = anchor_.segments["transitions"]
        assert segment.first == ended + 1  # each line starts where the one before it ended
        ended = segment.head.last_id
    assert ended == 40
    engine = db.make_engine(ledger.url)
    try:
        with engine.connect() as conn:
            assert check_anchor_log(conn, reading).problems == []
    finally:
        engine.dispose()


# --- the format, without a ledger ----------------------------------------------------------------


AT = datetime(2026, 12, 2, 18, 0, tzinfo=timezone.utc)


def digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def anchor_of(first: int, last: int, line: int = 0, ledger: str = "abcd1234") -> Anchor:
    prefixes = "".join(digest(n)[:12] for n in range(first, last + 1))
    head = ChainHead(last, digest(last)) if last else ChainHead(0, GENESIS)
    segments = {"transitions": Segment(first, head, prefixes), "records": Segment(1, ChainHead(0, GENESIS), "")}
    return Anchor(AT, ledger, segments, line=line)


def test_a_line_is_canonical_json_and_reads_back() -> None:
    anchor = anchor_of(1, 3)
    raw = line_of(anchor, None)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1 and b" " not in raw
    value = json.loads(raw)
    assert list(value) == sorted(value) and "sig" not in value
    assert value["heads"]["transitions"] == [3, digest(3)]
    assert value["segments"]["transitions"] == {"from": 1, "hashes": digest(1)[:12] + digest(2)[:12] + digest(3)[:12]}
    back = parse_line(raw.rstrip(b"\n"), 7, None)
    assert back.line == 7 and back.heads == anchor.heads and back.segments == anchor.segments
    assert back.at == AT and back.signed is False
    signed = line_of(anchor, KEY)
    assert parse_line(signed.rstrip(b"\n"), 1, KEY).signed is True
    assert KEY.encode() not in signed


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda v: v.update(v=2), "format version 2"),
    (lambda v: v.pop("ledger"), "does not have the fields"),
    (lambda v: v.update(at="yesterday"), "no ISO-8601 UTC time"),
    (lambda v: v["heads"].update(transitions=[3, "xyz"]), "head that is not [last_id, sha256]"),
    (lambda v: v["segments"]["transitions"].update(hashes="zz"), "malformed"),
    (lambda v: v["segments"]["transitions"].update({"from": 2}), "does not end at its head 3"),
    (lambda v: v["heads"].update(transitions=[3, digest(9)]), "head whose hash is not its segment's last"),
    (lambda v: v["heads"].update(ledgers=[0, GENESIS]), "does not give a head and a segment for each chain"),
])
def test_a_malformed_line_is_refused_with_its_reason(mutate: Any, reason: str) -> None:
    value = json.loads(line_of(anchor_of(1, 3), None))
    mutate(value)
    with pytest.raises(LineError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_line(json.dumps(value).encode(), 1, None)


def test_reading_names_torn_lines_gaps_and_overlaps(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    lines = [line_of(anchor_of(1, 3), None), line_of(anchor_of(6, 8), None), line_of(anchor_of(8, 9), None),
             b"not json\n", line_of(anchor_of(10, 10), None)[:40]]
    log.write_bytes(b"".join(lines))
    reading = read_log(log)
    assert reading.lines == 5 and len(reading.anchors) == 3
    assert [str(p) for p in reading.problems] == [
        "anchor log line 2: its transitions segment starts at 6, but line 1 ended at 3: lines were removed from "
        "the log",
        "anchor log line 3: its transitions segment starts at 8, but line 2 already covered up to 8: the line was "
        "not written after it",
        "anchor log line 4: is not a JSON object (JSONDecodeError)",
        "anchor log line 5: is incomplete (no newline at the end of the file): a write was cut short, or the file "
        "was truncated",
    ]
    assert read_log(tmp_path / "none.jsonl").exists is False


def test_the_default_log_sits_next_to_an_sqlite_ledger_or_is_named_after_the_database() -> None:
    assert default_path("sqlite:////var/lib/se/ledger.db") == Path("/var/lib/se/ledger.db.anchors.jsonl")
    assert default_path("sqlite:///smartexec.db") == Path("smartexec.db.anchors.jsonl")
    assert default_path("postgresql+psycopg://u:pw@db.internal:5433/trading") == Path(
        "trading@db.internal-5433.anchors.jsonl")
    assert default_path("postgresql+psycopg://u@h/test?options=-csearch_path%3Dt_0123") == Path(
        "test.t_0123@h.anchors.jsonl")


@pytest.fixture
def bare_chain() -> Iterator[Connection]:
    """A ledger reduced to what the check reads: the identity and `transitions(id, row_hash)`."""
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE ledger_identity (id INTEGER PRIMARY KEY, ledger_id TEXT, created_at TEXT)")
        conn.exec_driver_sql("INSERT INTO ledger_identity VALUES (1, 'abcd1234', '')")
        conn.exec_driver_sql("CREATE TABLE transitions (id INTEGER PRIMARY KEY, row_hash TEXT)")
        yield conn
    engine.dispose()


def fill(conn: Connection, ids: range) -> None:
    conn.execute(text("INSERT INTO transitions VALUES (:id, :h)"), [{"id": n, "h": digest(n)} for n in ids])


def check(conn: Connection, tmp_path: Path, *anchors: Anchor) -> list[str]:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"".join(line_of(a, None) for a in anchors))
    return [str(p) for p in check_anchor_log(conn, read_log(log)).problems]


def test_the_check_names_the_first_row_that_differs_and_a_cut_tail(bare_chain: Connection, tmp_path: Path) -> None:
    fill(bare_chain, range(1, 11))
    assert check(bare_chain, tmp_path, anchor_of(1, 5), anchor_of(6, 10)) == []
    bare_chain.execute(text("UPDATE transitions SET row_hash = :h WHERE id >= 7"), {"h": "f" * 64})
    bare_chain.execute(text("DELETE FROM transitions WHERE id > 8"))
    assert check(bare_chain, tmp_path, anchor_of(1, 5), anchor_of(6, 10)) == [
        "transition 7: differs from what the anchor log recorded at 2026-12-02 18:00:00Z (line 2): the chain was "
        "rewritten from here",
        "transition 9: is missing: the anchor log recorded it at 2026-12-02 18:00:00Z (line 2); the chain ends at "
        "transition 8: rows were cut off the end",
    ]


def test_the_check_names_a_row_deleted_in_the_middle_and_one_inserted_into_a_gap(
        bare_chain: Connection, tmp_path: Path) -> None:
    fill(bare_chain, range(1, 11))
    bare_chain.execute(text("DELETE FROM transitions WHERE id = 4"))
    assert check(bare_chain, tmp_path, anchor_of(1, 10)) == [
        "transition 4: is missing: the anchor log recorded it at 2026-12-02 18:00:00Z (line 1): rows were deleted "
        "here"]
    gapped = anchor_of(1, 10)
    segment = gapped.segments["transitions"]
    gapped = replace(gapped, segments={**gapped.segments, "transitions": replace(
        segment, prefixes=segment.prefixes[:36] + ABSENT + segment.prefixes[48:])})
    assert check(bare_chain, tmp_path, gapped) == []  # an id absent when anchored may stay absent
    fill(bare_chain, range(4, 5))
    assert check(bare_chain, tmp_path, gapped) == [
        "transition 4: was not in the chain when the anchor log recorded it at 2026-12-02 18:00:00Z (line 1): a row "
        "was inserted here"]


def test_a_log_of_100_lines_over_100k_rows_checks_every_line(bare_chain: Connection, tmp_path: Path) -> None:
    """The check at the size of a busy week (its cost is bench/verify_cost.py's to measure)."""
    fill(bare_chain, range(1, 100_001))
    anchors = [anchor_of(first, first + 999, line=n) for n, first in enumerate(range(1, 100_001, 1000), start=1)]
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"".join(line_of(a, None) for a in anchors))
    found = check_anchor_log(bare_chain, read_log(log))
    assert found.problems == [] and found.checked == 100


# --- every chain of CHAINS, on a ledger reduced to what the anchor log reads ----------------------


@pytest.fixture
def bare_ledger(tmp_path: Path) -> Iterator[Engine]:
    """The identity, `chain_head` and both chains as `(id, row_hash)`: what the writer and the check
    read, with the `records` chain that lands with the records migration."""
    engine = create_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE ledger_identity (id INTEGER PRIMARY KEY, ledger_id TEXT, created_at TEXT)")
        conn.exec_driver_sql("INSERT INTO ledger_identity VALUES (1, 'abcd1234', '')")
        conn.exec_driver_sql("CREATE TABLE chain_head (id INTEGER PRIMARY KEY, last_id INTEGER, last_hash TEXT)")
        conn.execute(text("INSERT INTO chain_head VALUES (:id, 0, :h)"), [{"id": 1, "h": GENESIS},
                                                                          {"id": 2, "h": GENESIS}])
        for chain in ("transitions", "records"):
            conn.exec_driver_sql(f"CREATE TABLE {chain} (id INTEGER PRIMARY KEY, row_hash TEXT)")
    yield engine
    engine.dispose()


def grow(engine: Engine, chain: str, ids: range) -> None:
    offset, head_row = (0, 1) if chain == "transitions" else (1000, 2)
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {chain} VALUES (:id, :h)"), [{"id": n, "h": digest(n + offset)} for n in ids])
        conn.execute(text("UPDATE chain_head SET last_id = :id, last_hash = :h WHERE id = :row"),
                     {"id": ids[-1], "h": digest(ids[-1] + offset), "row": head_row})


def test_the_records_chain_is_anchored_and_checked_like_transitions(bare_ledger: Engine, tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    grow(bare_ledger, "transitions", range(1, 6))
    grow(bare_ledger, "records", range(1, 4))
    first = write_anchor(bare_ledger, "abcd1234", log)
    assert first is not None and {c: (s.first, s.count) for c, s in first.segments.items()} == {
        "transitions": (1, 5), "records": (1, 3)}
    grow(bare_ledger, "records", range(4, 7))
    second = write_anchor(bare_ledger, "abcd1234", log)
    assert second is not None and {c: (s.first, s.count) for c, s in second.segments.items()} == {
        "transitions": (6, 0), "records": (4, 3)}
    assert write_anchor(bare_ledger, "abcd1234", log) is None  # nothing moved
    with bare_ledger.begin() as conn:
        conn.execute(text("UPDATE records SET row_hash = :h WHERE id = 5"), {"h": "e" * 64})
        found = check_anchor_log(conn, read_log(log))
    assert [(p.transition_id, p.record_id) for p in found.problems] == [(None, 5)]
    assert str(found.problems[0]) == (
        f"record 5: differs from what the anchor log recorded at {stamp(log, 2)} (line 2): the chain was rewritten "
        "from here")


def test_a_torn_last_line_is_closed_and_the_next_anchor_continues_from_the_line_before(
        bare_ledger: Engine, tmp_path: Path) -> None:
    """A crash mid-append leaves half a line: the next writer starts a line of its own after it."""
    log = tmp_path / "a.jsonl"
    grow(bare_ledger, "transitions", range(1, 4))
    write_anchor(bare_ledger, "abcd1234", log)
    with log.open("ab") as out:
        out.write(b'{"at":"2026-12-0')
    grow(bare_ledger, "transitions", range(4, 6))
    assert write_anchor(bare_ledger, "abcd1234", log) is not None
    reading = read_log(log)
    assert [str(p) for p in reading.problems] == ["anchor log line 2: is not a JSON object (JSONDecodeError)"]
    assert [(a.line, a.segments["transitions"].first) for a in reading.anchors] == [(1, 1), (3, 4)]
    with bare_ledger.connect() as conn:
        assert check_anchor_log(conn, reading).problems == reading.problems


def test_the_writer_refuses_to_extend_a_log_the_chain_no_longer_matches(bare_ledger: Engine, tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    grow(bare_ledger, "transitions", range(1, 6))
    write_anchor(bare_ledger, "abcd1234", log)
    with bare_ledger.begin() as conn:
        conn.execute(text("UPDATE transitions SET row_hash = :h WHERE id = 5"), {"h": "e" * 64})
        conn.execute(text("UPDATE chain_head SET last_hash = :h WHERE id = 1"), {"h": "e" * 64})
    with pytest.raises(AnchorError, match="transitions row 5 no longer has the hash"):
        write_anchor(bare_ledger, "abcd1234", log, force=True)
    with bare_ledger.begin() as conn:
        conn.execute(text("DELETE FROM transitions WHERE id > 3"))
        conn.execute(text("UPDATE chain_head SET last_id = 3, last_hash = :h WHERE id = 1"), {"h": digest(3)})
    with pytest.raises(AnchorError, match="the transitions chain ends at 3, but the anchor log's last line recorded 5"):
        write_anchor(bare_ledger, "abcd1234", log)
    assert len(log.read_text().splitlines()) == 1
