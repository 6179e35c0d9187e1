"""Large pages of fallback-fetch search results, read in the reading process.

A FHIR server may answer a search with pages of up to 16 MB (`DEFAULT_MAX_BYTES`); parsed on
the event loop, one such page holds it for about a second. A page over `OFFLOAD_BYTES` goes
to the reading process (cds_service.offload.pool), which makes every check the whole page
gets, the fetcher's (`cds_service.fetch.pages`: JSON, searchset, every entry) and the hook
layer's (`resources_of`: the key's resource types, the patient of every entry), and sends
back the page cut down to the entries the rules read. The first entry the hook layer would
refuse is kept in the cut-down page, so the key fails with the reason the whole answer gets
(412 for a required key), never answered from what is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_service.fetch.pages import QueryFailed, ReadPage, check_page, parse
from cds_service.fhir.search_completeness import match_count
from cds_service.hooks.prefetch import PrefetchError, RecordScope, resources_of
from cds_service.offload.pool import OFFLOAD_BYTES, ReaderPool
from cds_service.offload.relevant import relevant_bundle


def read_page(raw: bytes, key: str, patient_id: str, scope: RecordScope, today: date) -> ReadPage:
    """The page `raw` of the search for `key`, checked in full and cut down; or why not.

    Runs in the child process."""
    try:
        bundle = parse(raw)
        entries = check_page(bundle)
    except QueryFailed as exc:
        return ReadPage(None, reason=exc.reason)
    refused = []
    for entry in entries:
        try:
            resources_of(key, entry["resource"], patient_id, scope)
        except PrefetchError:
            refused.append(entry["resource"])
            break
    return ReadPage(
        relevant_bundle(bundle, today, also=refused),
        entries=len(entries),
        matches=match_count(entries),
    )


@dataclass(frozen=True)
class FetchedPages:
    """The `PageReader` of one hook call: its patient, the references' scope and its day."""

    pool: ReaderPool
    patient_id: str
    scope: RecordScope
    today: date
    threshold: int = OFFLOAD_BYTES

    async def __call__(self, key: str, raw: bytes) -> ReadPage:
        # Not waiting for a child still starting: that second counts against the fetch timeout.
        return await self.pool.run(
            read_page, raw, key, self.patient_id, self.scope, self.today, wait=False
        )
