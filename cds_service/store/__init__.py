"""The state layer: audit trail, feedback, replay protection and cards raised once per hook
instance, in one database.

`Store(settings)` names the database (SQLite in `CDS_DATA_DIR`, or `CDS_DATABASE_URL`);
`open()` migrates it (or checks it is migrated) before the service answers anything.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from cds_service.settings import Settings
from cds_service.store.audit import AuditLog, AuditRecord, SearchPage
from cds_service.store.database import Database, DatabaseUrl, StoreError, database_url
from cds_service.store.feedback import FeedbackLog
from cds_service.store.migrate import current_revision, head_revision, upgrade
from cds_service.store.raised_cards import RaisedCards
from cds_service.store.replay import DatabaseReplayCache

logger = logging.getLogger("cds_service.store")
#: How long a graceful shutdown waits for the audit writer before giving up on the database.
SHUTDOWN_FLUSH_S = 10.0
#: Audit records queued past this many mean the database cannot keep up: not ready.
MAX_READY_BACKLOG = 5_000


class Store:
    def __init__(self, settings: Settings) -> None:
        self.target: DatabaseUrl = database_url(settings)
        self.retention = timedelta(days=settings.audit_retention_days)
        self._migrate = settings.migrate_on_start
        self.database = Database(self.target)
        self.audit = AuditLog(self.database, self.database.audit_writer())
        self.feedback = FeedbackLog(self.database, self.audit)
        self.replay = DatabaseReplayCache(self.database)
        self.raised = RaisedCards(self.database)

    def open(self) -> None:
        """Migrate (CDS_DB_MIGRATE=on) or check the schema is current; StoreError if not."""
        if self._migrate:
            upgrade(self.target)
            return
        revision = current_revision(self.target)
        if revision != head_revision():
            raise self.target.error(
                f"the database schema is at {revision or 'nothing'}, this build needs "
                f"{head_revision()}: run `b12-cds db upgrade` (CDS_DB_MIGRATE is off)"
            )

    async def readiness(self) -> str | None:
        """The readiness check: None when the database answers and the audit writer keeps up."""
        try:
            await self.database.ping()
        except Exception as exc:
            logger.warning("database readiness: %s", type(exc).__name__)
            return f"the database ({self.target.variable}) does not answer"
        backlog = self.audit.queue.depth
        if backlog > MAX_READY_BACKLOG:
            return f"{backlog} audit records are waiting to be written"
        return None

    async def close(self) -> None:
        """Write everything pending, then close the connections (graceful shutdown)."""
        if not await self.audit.flush(timeout=SHUTDOWN_FLUSH_S):
            logger.error(
                "shutdown: %d audit record(s) could not be written", self.audit.queue.depth
            )
        await self.database.dispose()

    async def purge(self, now: datetime) -> dict[str, int]:
        """Delete what the retention period no longer covers, dead replay rows and the rows of
        hook instances that are over."""
        counts = await self.audit.purge(now - self.retention)
        counts["replayTokens"] = await self.replay.purge(now.timestamp())
        counts["raisedCards"] = await self.raised.purge(now.timestamp())
        return counts


__all__ = [
    "AuditLog",
    "AuditRecord",
    "DatabaseReplayCache",
    "FeedbackLog",
    "RaisedCards",
    "SearchPage",
    "Store",
    "StoreError",
]
