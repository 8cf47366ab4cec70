"""The auditor's queries: `smartexec ledger list / show / export` and the SQL views, on both backends."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from sample_ledger import Sample
from sqlalchemy import text

from engine.cli import main


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The same command line through engine.cli.main, without a process start (for many small queries)."""
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


def listed(sample: Sample, capsys: pytest.CaptureFixture[str], *filters: str) -> list[str]:
    rows = json.loads(in_process(capsys, "ledger", "list", "--json", "--database-url", sample.url, *filters))
    return [row["signal_id"].removeprefix("sig-") for row in rows]


def test_list_filters_by_state_symbol_mode_time_and_signal(sample: Sample, capsys: pytest.CaptureFixture[str]) -> None:
    assert listed(sample, capsys) == ["A", "B", "C", "D", "E", "F", "G", "H", "J"]
    assert listed(sample, capsys, "--state", "CLOSED", "--state", "failed") == ["A", "B", "D", "F", "J"]
    assert listed(sample, capsys, "--state", "CANCELED,FLATTENED", "--mode", "smart") == ["C", "G"]
    assert listed(sample, capsys, "--symbol", "crwd") == ["A", "E"]
    assert listed(sample, capsys, "--since", "2026-11-25", "--until", "2026-11-25") == ["E", "F", "G", "H"]
    # B, C, D were created at 14:40, 14:50 and 15:00: `until` is exclusive, a zone-less time is UTC
    assert listed(sample, capsys, "--since", "2026-11-24T14:40:00Z", "--until", "2026-11-24T15:00") == ["B", "C"]
    assert listed(sample, capsys, "--signal-id", "sig-H") == ["H"]


def test_list_json_keeps_money_exact_and_times_in_utc(sample: Sample, capsys: pytest.CaptureFixture[str]) -> None:
    [row] = json.loads(in_process(capsys, "ledger", "list", "--json", "--signal-id", "sig-E", "--database-url",
                                  sample.url))
    assert (row["filled_avg_price"], row["slippage"], row["realized_pnl"], row["state"]) == (
        "536.00", "0.002206", "-5.00", "FLATTENED")
    assert row["created_at"] == "2026-11-25T14:30:00+00:00"


def test_list_prints_an_aligned_table_for_people(sample: Sample) -> None:
    out = cli("ledger", "list", "--mode", "legacy", "--database-url", sample.url).stdout.splitlines()
    # Each lifecycle's line, then what became of it below (wrapped to 100 columns): see tests/cli.
    header, rule, e, e_outcome, _, f, f_outcome, total = out
    assert header.split()[:7] == ["id", "signal", "symbol", "side", "qty", "mode", "state"]
    assert e.split()[1:7] == ["sig-E", "CRWD", "buy", "10", "legacy", "FLATTENED"]
    assert f.split()[1:7] == ["sig-F", "NVDA", "buy", "20", "legacy", "CLOSED"]
    assert "0.221%" in e_outcome and "-5.00" in e_outcome and "83.00" in f_outcome
    assert len({len(header), len(rule)}) == 1 or len(rule) >= len(header.rstrip())
    assert header.index("state") == e.index("FLATTENED")  # columns line up
    assert total == "2 lifecycle(s)"


def test_show_tells_the_whole_story_of_one_lifecycle(sample: Sample, capsys: pytest.CaptureFixture[str]) -> None:
    story = json.loads(cli("ledger", "show", "sig-A", "--json", "--database-url", sample.url).stdout)
    assert story["lifecycle"]["id"] == sample.ids["A"] and story["lifecycle"]["state"] == "CLOSED"
    assert [t["trigger"] for t in story["transitions"]] == ["created", "submitted", "fill", "guards_passed",
                                                           "exits_placed", "exit_filled"]
    fill = story["transitions"][2]
    assert (fill["at"], fill["source"], fill["payload"]["filled_avg_price"]) == ("2026-11-24T14:30:03+00:00",
                                                                                 "stream", "535.00")
    assert len(fill["row_hash"]) == 64
    assert [o["leg"] for o in story["orders"]] == ["entry", "take_profit", "stop"]
    assert [(f["leg"], f["qty"], f["price"]) for f in story["fills"]] == [("entry", "10", "535.00"),
                                                                          ("take_profit", "10", "546.06")]
    by_id = json.loads(in_process(capsys, "ledger", "show", str(sample.ids["A"]), "--json", "--database-url",
                                  sample.url))
    assert by_id == story

    text_ = in_process(capsys, "ledger", "show", "sig-E", "--database-url", sample.url)
    assert "legacy" in text_ and "FLATTENED" in text_
    assert "slippage 0.22% > max 0.10%; reward/risk 0.13 < min 2.00" in text_
    for section in ("Transitions", "Orders", "Fills"):
        assert f"\n{section}\n" in text_
    assert "x-E-1" in text_ and "x-E-2" in text_ and "535.90" in text_ and "536.10" in text_


def test_show_an_unknown_lifecycle_exits_non_zero(sample: Sample, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", "show", "sig-nope", "--database-url", sample.url]) == 1
    assert "no lifecycle with id or signal id 'sig-nope'" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["\u0663", "\u00b2", "9" * 20])
def test_show_takes_only_ascii_digits_within_64_bits_for_an_id(sample: Sample, capsys: pytest.CaptureFixture[str],
                                                               key: str) -> None:
    """Prevents an Arabic-Indic three from showing lifecycle 3, and a superscript two or an id past
    2^63 from crashing the lookup: each is looked for as a signal id, and none is one."""
    assert main(["ledger", "show", key, "--database-url", sample.url]) == 1
    assert f"no lifecycle with id or signal id {key!r}" in capsys.readouterr().err


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_export_writes_a_table_or_view_as_csv(sample: Sample, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "outcomes.csv"
    cli("ledger", "export", "--out", str(out), "--database-url", sample.url)
    rows = read_csv(out)
    assert [r["outcome"] for r in rows] == ["closed", "closed", "missed", "failed", "flattened", "closed",
                                           "flattened", "open", "failed"]
    in_process(capsys, "ledger", "export", "--table", "all", "--out", str(tmp_path / "all"), "--database-url",
               sample.url)
    files = {p.name: read_csv(p) for p in (tmp_path / "all").glob("*.csv")}
    assert {name: len(rows) for name, rows in files.items()} == {
        "lifecycle_outcomes.csv": 9, "fill_slippage.csv": 12, "lifecycles.csv": 9, "transitions.csv": 42,
        "orders.csv": 20, "fills.csv": 12, "orphan_orders.csv": 0,
        "trading_state.csv": 0, "inbox.csv": 0, "records.csv": 56, "refused_signals.csv": 2}
    fill_row = files["transitions.csv"][sample.rows[("A", "fill")] - 1]
    assert json.loads(fill_row["payload"])["filled_avg_price"] == "535.00" and len(fill_row["row_hash"]) == 64
    assert fill_row["at"] == "2026-11-24T14:30:03+00:00"
    assert [r["filled_avg_price"] for r in files["lifecycles.csv"]][:2] == ["535.00", "199.96"]


def view(sample: Sample, name: str) -> list[dict[str, Any]]:
    with sample.ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(f"SELECT * FROM {name}")).mappings()]


def test_the_lifecycle_outcomes_view_has_one_row_per_lifecycle_with_its_outcome(sample: Sample) -> None:
    rows = {r["signal_id"].removeprefix("sig-"): r for r in view(sample, "lifecycle_outcomes")}
    summary = {k: (r["outcome"], r["final_state"], bool(r["timed_out"]), bool(r["rejected"]), bool(r["exits_placed"]))
               for k, r in rows.items()}
    assert summary == {
        "A": ("closed", "CLOSED", False, False, True),
        "B": ("closed", "CLOSED", False, False, True),
        "C": ("missed", "CANCELED", True, False, False),
        "D": ("failed", "FAILED", False, False, False),
        "E": ("flattened", "FLATTENED", False, True, False),
        "F": ("closed", "CLOSED", False, False, True),
        "G": ("flattened", "FLATTENED", False, True, False),
        "H": ("open", "EXITS_PLACED", False, False, True),
        "J": ("failed", "FAILED", False, False, False),
    }
    a = rows["A"]
    assert (D(str(a["filled_avg_price"])), D(str(a["slippage"])), D(str(a["realized_pnl"])),
            D(str(a["r_multiple"])), a["transition_count"]) == (D("535.00"), D("0.000337"), D("110.60"), D("2"), 6)
    assert rows["H"]["ended_at"] is None and rows["A"]["ended_at"] is not None
    assert rows["C"]["filled_at"] is None and str(rows["A"]["filled_at"]).startswith("2026-11-24 14:30:03")
    assert rows["E"]["reject_reason"] == "slippage 0.22% > max 0.10%; reward/risk 0.13 < min 2.00"


def test_the_fill_slippage_view_signs_entry_slippage_adverse(sample: Sample) -> None:
    rows = {r["execution_id"]: r for r in view(sample, "fill_slippage")}
    entry = {k: D(str(r["slippage"])) for k, r in rows.items() if r["leg"] == "entry"}
    assert entry == {
        "x-A-1": D("0.000337"),  # (535.00 - 534.82) / 534.82
        "x-B-1": D("-0.0002"),  # bought below the signal: favourable, negative
        "x-E-1": D("0.002019"),  # (535.90 - 534.82) / 534.82
        "x-E-2": D("0.002393"),  # (536.10 - 534.82) / 534.82
        "x-F-1": D("0.0005"),
        "x-G-1": D("0.0002"),
        "x-H-1": D("0.001"),  # a short entry sold 0.17 below 170.00: adverse, positive
    }
    exits = {k: r["slippage"] for k, r in rows.items() if r["leg"] != "entry"}
    assert exits == {"x-A-exit": None, "x-B-exit": None, "x-E-flat": None, "x-F-exit": None, "x-G-flat": None}
    assert (rows["x-H-1"]["entry_side"], rows["x-H-1"]["order_side"], rows["x-B-exit"]["leg"]) == ("sell", "sell",
                                                                                                 "stop")
