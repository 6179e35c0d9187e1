"""The code index's shortcuts (one alternation for all words, prefixes grouped by system) give
the answers of the plain scans they replace, over every entry and word of the protocol."""

from __future__ import annotations

import random

from cds_service.clinical.codes import MEMO_KEY, MEMO_SIZE, CodeIndex, code_index, normalise
from cds_service.protocol import default_protocol

PROTOCOL = default_protocol()
INDEX = code_index(PROTOCOL)


def _plain_known(index: CodeIndex, codings: list[tuple[str, str]], words: str) -> bool:
    if index.value_sets_of(codings) - index._qualifiers:
        return True
    return bool(words) and any(
        p.search(words) for name, p in index._words.items() if name not in index._qualifiers
    )


def _plain_value_sets(codings: list[tuple[str, str]]) -> set[str]:
    found: set[str] = set()
    for name, vs in PROTOCOL.codes.value_sets.items():
        for entry in vs.codes:
            system = PROTOCOL.system_url(entry.system)
            wanted = normalise(system, entry.code)
            for s, c in codings:
                norm = normalise(s, c)
                if s == system and (
                    norm.startswith(wanted) if entry.match == "prefix" else norm == wanted
                ):
                    found.add(name)
    return found


def _texts() -> list[str]:
    words = [w.lower() for vs in PROTOCOL.codes.value_sets.values() for w in vs.text]
    rng = random.Random(19)
    texts = ["", "unrelated words only", "b12", "pernicious"]
    for word in words:
        texts += [word, f"history of {word} since 2010", f"x{word}", f"{word}s", word[:-1]]
    for _ in range(300):
        texts.append(" ".join(rng.sample(words + ["and", "no", "the"], k=3)))
    return texts


def test_known_words_match_the_scan_of_every_value_set() -> None:
    texts = _texts()
    assert any(INDEX.known([], t) for t in texts) and not all(INDEX.known([], t) for t in texts)
    for text in texts:
        assert INDEX.known([], text) == _plain_known(INDEX, [], text), text


def test_value_sets_of_matches_the_scan_of_every_entry() -> None:
    codings: list[tuple[str, str]] = []
    for vs in PROTOCOL.codes.value_sets.values():
        for entry in vs.codes:
            system = PROTOCOL.system_url(entry.system)
            codings += [(system, entry.code), (system, entry.code + "9"), (system, entry.code[:-1])]
            codings.append(("http://example.org/other", entry.code))
    assert any(INDEX.value_sets_of([c]) for c in codings)
    for coding in codings:
        assert INDEX.value_sets_of([coding]) == _plain_value_sets([coding]), coding


def test_kept_answers_are_the_answers_computed_afresh() -> None:
    """`matches` and `known` keep their answers for short keys; kept or not, asked twice or
    not, an answer is what the index computes for it."""
    index = CodeIndex(PROTOCOL)  # its own memo, empty
    names = list(PROTOCOL.codes.value_sets)
    codings = [
        (PROTOCOL.system_url(entry.system), entry.code)
        for vs in PROTOCOL.codes.value_sets.values()
        for entry in vs.codes
    ][:40]
    texts = _texts()[:120] + ["pernicious anaemia " + "x" * 400]
    for _ in range(2):
        for i, text in enumerate(texts):
            coded = (codings[i % len(codings)],) if i % 3 else ()
            assert index.known(coded, text) == index._is_known(coded, text)
            for name in names:
                assert index.matches(name, coded, text) == index._match(name, coded, text)
    long_key = texts[-1]
    assert index.matches("pernicious_anemia", (), long_key) == index._match(
        "pernicious_anemia", (), long_key
    )
    kept = index._matches.cache_info()
    assert kept.hits > 0 and kept.currsize <= MEMO_SIZE
    index.matches(names[0], (), "y" * (MEMO_KEY + 1))
    assert index._matches.cache_info().currsize == kept.currsize  # a long key is not kept
