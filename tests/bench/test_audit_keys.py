"""`python -m bench.audit_keys` writes the service's audit rows with either kind of id."""

from __future__ import annotations

import sqlite3
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import audit_keys  # noqa: E402
from cds_service.ids import time_ordered_uuid  # noqa: E402


def test_both_arms_write_every_answer(tmp_path: Path) -> None:
    made: list[str] = []

    def new_id() -> str:
        made.append(time_ordered_uuid())
        return made[-1]

    for name, ids in (("v4", lambda: str(uuid.uuid4())), ("v7", new_id)):
        path = tmp_path / f"{name}.sqlite3"
        figures = audit_keys.run(ids, blocks=2, per_block=20, batch=5, path=str(path))
        assert len(figures) == 2 and all(f > 0 for f in figures)
        with sqlite3.connect(path) as connection:
            assert connection.execute("SELECT count(*) FROM guidance_response").fetchone()[0] == 40
            assert connection.execute("SELECT count(*) FROM issued_card").fetchone()[0] == 40
    assert len(made) == 2 * 40  # a GuidanceResponse id and a card uuid per answer
