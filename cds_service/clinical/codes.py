"""Code matching across SNOMED CT, ICD-10-CM (with or without the dot), LOINC and RxNorm.

One index answers "which value sets contain this coding", so each resource is matched with a
few dictionary look-ups instead of a scan of every value set.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from functools import cache, lru_cache

from cds_service.protocol import Protocol
from cds_service.protocol.model import CodeEntry

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
#: Answers of `matches` and `known` kept per index, for keys of up to MEMO_KEY characters
#: (at most a few MB in all; a longer key is answered afresh).
MEMO_SIZE = 8192
MEMO_KEY = 256


def _memoisable(codings: tuple[tuple[str, str], ...], words: str) -> bool:
    if len(codings) > 8:
        return False
    size = len(words)
    for system, code in codings:
        size += len(system) + len(code)
    return size <= MEMO_KEY


def normalise(system: str, code: str) -> str:
    code = code.strip()
    if system == ICD10CM:
        return code.replace(".", "").upper()
    return code


@cache
def code_index(protocol: Protocol) -> CodeIndex:
    """One index per protocol, shared by every stage that matches codes."""
    return CodeIndex(protocol)


class CodeIndex:
    """Value-set membership by coding and by whole words of text."""

    def __init__(self, protocol: Protocol) -> None:
        self._exact: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._prefix: list[tuple[str, str, str]] = []
        self._words: dict[str, re.Pattern[str]] = {}
        self._qualifiers = {n for n, vs in protocol.codes.value_sets.items() if vs.qualifier}
        # value set -> (system, normalised code, entry): to cite the protocol's own entries.
        self._entries: dict[str, list[tuple[str, str, CodeEntry]]] = defaultdict(list)
        for name, vs in protocol.codes.value_sets.items():
            for entry in vs.codes:
                system = protocol.system_url(entry.system)
                key = (system, normalise(system, entry.code))
                self._entries[name].append((*key, entry))
                if entry.match == "prefix":
                    self._prefix.append((system, key[1], name))
                else:
                    self._exact[key].add(name)
            if vs.text:
                alternatives = "|".join(re.escape(w.lower()) for w in vs.text)
                self._words[name] = re.compile(rf"\b(?:{alternatives})\b")
        # `known` asks whether any value set's words occur: one search instead of one per set.
        any_words = [p.pattern for n, p in self._words.items() if n not in self._qualifiers]
        self._any_word = re.compile("|".join(any_words)) if any_words else None
        # Prefix entries by system: a coding is compared with its own system's prefixes only.
        self._prefix_by_system: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for p_system, prefix, name in self._prefix:
            self._prefix_by_system[p_system].append((prefix, name))
        # The rules ask the same few questions of the same codings and words many times per
        # call (one per value set a rule names, per record), and most records of a clinic are
        # coded alike: answers are kept, bounded, since codes and text come from callers.
        self._matches = lru_cache(maxsize=MEMO_SIZE)(self._match)
        self._known = lru_cache(maxsize=MEMO_SIZE)(self._is_known)

    def value_sets_of(self, codings: Iterable[tuple[str, str]]) -> set[str]:
        found: set[str] = set()
        for system, code in codings:
            norm = normalise(system, code)
            found |= self._exact.get((system, norm), set())
            for prefix, name in self._prefix_by_system.get(system, ()):
                if norm.startswith(prefix):
                    found.add(name)
        return found

    def matches(self, value_set: str, codings: Iterable[tuple[str, str]], words: str = "") -> bool:
        codings = tuple(codings)
        if not _memoisable(codings, words):
            return self._match(value_set, codings, words)
        return self._matches(value_set, codings, words)

    def _match(self, value_set: str, codings: tuple[tuple[str, str], ...], words: str) -> bool:
        if value_set in self.value_sets_of(codings):
            return True
        pattern = self._words.get(value_set)
        return bool(pattern and words and pattern.search(words))

    def entries_in(self, value_set: str, codings: Iterable[tuple[str, str]]) -> list[CodeEntry]:
        """The value set's entries (with their verified displays) that these codings match."""
        wanted = [(system, normalise(system, code)) for system, code in codings]
        return [
            entry
            for system, code, entry in self._entries.get(value_set, ())
            if any(
                s == system and (c.startswith(code) if entry.match == "prefix" else c == code)
                for s, c in wanted
            )
        ]

    def known(self, codings: Iterable[tuple[str, str]], words: str = "") -> bool:
        """Whether a resource could matter to any rule at all (used to skip the rest cheaply)."""
        codings = tuple(codings)
        if not _memoisable(codings, words):
            return self._is_known(codings, words)
        return self._known(codings, words)

    def _is_known(self, codings: tuple[tuple[str, str], ...], words: str) -> bool:
        if self.value_sets_of(codings) - self._qualifiers:
            return True
        return bool(words) and self._any_word is not None and bool(self._any_word.search(words))
