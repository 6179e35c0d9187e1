"""The identifiers the service mints (cards, GuidanceResponses) are RFC 9562 version 7 UUIDs:
valid uuids for any CDS client, unique, and in the order they were made."""

from __future__ import annotations

import time
import uuid

from cds_service.ids import time_ordered_uuid


def test_an_id_is_a_canonical_version_7_uuid() -> None:
    text = time_ordered_uuid()
    parsed = uuid.UUID(text)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == text  # lowercase, hyphenated: what a client echoes back in feedback


def test_an_id_carries_the_millisecond_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid.UUID(time_ordered_uuid()).int
    after = time.time_ns() // 1_000_000
    assert before <= value >> 80 <= after


def test_ids_sort_in_the_order_they_were_made_and_never_repeat() -> None:
    ids = []
    for _ in range(5):
        ids += [time_ordered_uuid() for _ in range(2000)]
        time.sleep(0.002)
    assert len(set(ids)) == len(ids)
    # Within one millisecond the order is random; across milliseconds it is the order made.
    millis = [uuid.UUID(i).int >> 80 for i in ids]
    assert millis == sorted(millis)
    assert sorted(ids) == sorted(ids, key=lambda i: (uuid.UUID(i).int >> 80, i))


def test_the_random_bits_vary() -> None:
    """74 random bits: two ids of the same millisecond differ there, not only in the clock."""
    a, b = (uuid.UUID(time_ordered_uuid()).int & ((1 << 74) - 1) for _ in range(2))
    assert a != b
