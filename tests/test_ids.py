"""The identifiers the service mints (cards, GuidanceResponses) are RFC 9562 version 7 UUIDs:
valid uuids for any CDS client, unique, and in the order they were made."""

from __future__ import annotations

import time
import uuid

from cds_service.ids import name_based_uuid, time_ordered_uuid


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


def test_a_name_based_id_is_the_standard_libraries_uuid5() -> None:
    namespace = uuid.UUID("6f1c2a3e-8d4b-5e7f-9a0b-1c2d3e4f5a6b")
    names = ["", "p1|standard|im-loading|2026-11-20", "é|ü|漢字", "x" * 1000]
    names += [f"patient-{i}|profile|regimen-{i % 7}|2026-12-{i % 28 + 1:02d}" for i in range(500)]
    for name in names:
        assert name_based_uuid(namespace, name) == str(uuid.uuid5(namespace, name))
