"""Identifiers the service mints: card uuids and GuidanceResponse ids, and the name-based ids
that group a plan's MedicationRequests.

Card and GuidanceResponse ids are UUID version 7 (RFC 9562 §5.7): 48 bits of Unix
milliseconds, then 74 random bits. Still unique and unguessable as CDS Hooks asks of a card's
`uuid`, but in the order they were made, so each one the audit trail stores lands at the end of
its primary-key index instead of on a random page of it: with random (version 4) keys every row
dirtied another page of each index, and the write of an answer's audit record grew with the
size of the table.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_B = (1 << 62) - 1


def time_ordered_uuid() -> str:
    """A new UUIDv7 in its canonical text form (lowercase, hyphenated)."""
    millis = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big")  # 80 bits: 12 for rand_a, 62 for rand_b
    value = (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | _VERSION
        | (random >> 68) << 64
        | _VARIANT
        | random & _RAND_B
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def name_based_uuid(namespace: uuid.UUID, name: str) -> str:
    """`str(uuid.uuid5(namespace, name))`, the same text (RFC 9562 §5.5), without building the
    UUID object: an answer makes one per schedule it proposes."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
