"""The layout's rules that import-linter cannot see."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_migrations_import_no_live_engine_module() -> None:
    """Prevents a migration whose meaning changes when the engine does: what a revision needs of the
    engine is frozen in migrations/frozen.py (env.py imports the live schema only for the alembic CLI)."""
    scripts = [*sorted((ROOT / "migrations" / "versions").glob("*.py")), ROOT / "migrations" / "frozen.py"]
    assert len(scripts) >= 6
    live = {str(path.relative_to(ROOT)): sorted(name for name in _imports(path)
                                                  if name.startswith("engine") and name != "engine._migrations")
            for path in scripts}
    assert {path: names for path, names in live.items() if names} == {}


def test_no_status_word_or_apca_variable_outside_the_alpaca_adapter() -> None:
    """Prevents venue words deciding anything above the broker port (a second broker would have to
    speak Alpaca to be understood)."""
    offenders = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        # Alpaca's adapter and its two stand-ins (the venue, the fake broker) speak Alpaca's words.
        if relative.startswith(("engine/sim/", "engine/broker/alpaca", "engine/broker/fake")):
            continue
        text = path.read_text()
        if "APCA_" in text or '"done_for_day"' in text or '"partially_filled"' in text:
            offenders.append(relative)
    assert offenders == []
