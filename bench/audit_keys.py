"""What the audit write costs as the tables grow, with random (UUIDv4) against time-ordered
(UUIDv7, `cds_service.ids`) card and GuidanceResponse ids: `python -m bench.audit_keys`.

The service's own tables (`cds_service.store.tables`) and INSERTs (`SqliteAuditWriter`) on a
fresh SQLite file in WAL mode with `synchronous=NORMAL`, written as the write-behind queue
writes them: batches of `batch` answers of one card each, a GuidanceResponse of about 6 KB per
answer. Printed per block: the table size reached and the CPU per answer (process time, the
checkpoints SQLite runs included). The hookInstance column stays random in both arms: the
client chooses it.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable

from sqlalchemy import create_engine

from cds_service.ids import time_ordered_uuid
from cds_service.store.audit_writer import SqliteAuditWriter
from cds_service.store.tables import metadata

RESOURCE = '{"resourceType":"GuidanceResponse","pad":"' + "x" * 5800 + '"}'


def run(
    new_id: Callable[[], str], *, blocks: int, per_block: int, batch: int, path: str | None = None
) -> list[float]:
    """CPU µs per answer of each block of `per_block` answers, on a new database at `path`."""
    path = path or os.path.join(tempfile.mkdtemp(prefix="b12-cds-audit-keys-"), "audit.sqlite3")
    metadata.create_all(create_engine(f"sqlite:///{path}"))
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    out = []
    for _ in range(blocks):
        cpu = time.process_time()
        for _ in range(per_block // batch):
            responses, cards = [], []
            for _ in range(batch):
                rid = new_id()
                at = "2026-12-01 10:00:00.000000"
                responses.append(
                    (
                        rid,
                        str(uuid.uuid4()),
                        "b12-patient-view",
                        "Patient/p1",
                        at,
                        "success",
                        RESOURCE,
                    )
                )
                cards.append((new_id(), rid, "b12-patient-view", "treatment", "[]", "[]", at))
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(SqliteAuditWriter.RESPONSES, responses)
            connection.executemany(SqliteAuditWriter.CARDS, cards)
            connection.execute("COMMIT")
        out.append((time.process_time() - cpu) / per_block * 1e6)
    connection.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--per-block", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=30)
    args = parser.parse_args()
    arms = {
        "random (v4)": run(
            lambda: str(uuid.uuid4()),
            blocks=args.blocks,
            per_block=args.per_block,
            batch=args.batch,
        ),
        "time-ordered (v7)": run(
            time_ordered_uuid, blocks=args.blocks, per_block=args.per_block, batch=args.batch
        ),
    }
    print("| answers stored | " + " | ".join(f"{k}, CPU µs/answer" for k in arms) + " |")
    print("|--:|" + "--:|" * len(arms))
    for i in range(args.blocks):
        row = " | ".join(f"{v[i]:.1f}" for v in arms.values())
        print(f"| {(i + 1) * args.per_block} | {row} |")


if __name__ == "__main__":
    main()
