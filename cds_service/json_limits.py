"""Limits on the shape of request JSON, checked before anything validates it.

fhir.resources validates nested elements recursively: about 120 levels of `extension` raise
RecursionError deep inside it. No FHIR resource the service reads needs more than a few levels
(a Bundle entry's Observation, its code, its codings), so a request deeper than `MAX_DEPTH`
levels of JSON is refused as malformed before any model sees it.
"""

from __future__ import annotations

#: JSON nesting allowed in a request body: a hook request's observation sits about 8 levels deep
#: (body, prefetch, key, entry array, entry, resource, code, coding array, coding).
MAX_DEPTH = 64


_BRACKETS = b"[]{}"
_TO_BRACES = bytes.maketrans(b"[]", b"{}")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _BRACKETS + b'"')


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text `raw` (already known to parse) nests objects and arrays more than
    `limit` levels deep.

    Works on the bytes with C-speed bytes operations, so that a 5 MB body costs milliseconds
    rather than a walk over every parsed node. Escaped backslashes and quotes go first; then
    only quotes and brackets are kept, and `""` pairs dropped (two adjacent quotes enclose or
    separate nothing, so which characters lie inside strings does not change): what is left
    of the strings is the few that hold brackets, cut out next. The brackets left are made
    braces, and each pass of removing `{}` peels one level off every innermost container."""
    # Most bodies hold no backslash at all: two passes over the whole body saved.
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in raw else raw
    structure = text.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    braces = b"".join(structure.split(b'"')[::2]).translate(_TO_BRACES)
    for _ in range(limit):
        if not braces:
            return False
        braces = braces.replace(b"{}", b"")
    return bool(braces)
