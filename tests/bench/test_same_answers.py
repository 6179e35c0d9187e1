"""`python -m bench.same_answers` compares two builds' answers byte for byte: the driver gives
the same bytes twice for the same build (fresh ids masked, group ids kept), and a changed answer
is reported by name."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from bench.same_answers import FRESH_ID, ROOT, answers_of, differences, write_requests


def _requests_file(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    write_requests(path, cohort_size=2)
    return path


def test_one_build_answers_the_same_bytes_twice(tmp_path: Path) -> None:
    requests_file = _requests_file(tmp_path)
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    start = date(2026, 11, 20)
    answers_of(sys.executable, ROOT, requests_file, first, start)
    answers_of(sys.executable, ROOT, requests_file, second, start)
    lines = first.read_bytes().splitlines()
    assert len(lines) == len(requests_file.read_text().splitlines()) > 6
    assert all(line.split(b" ")[1] == b"200" for line in lines)
    assert b"<fresh-id>" in first.read_bytes() and not FRESH_ID.search(first.read_bytes())
    assert b"urn:uuid:" in first.read_bytes()  # the name-based group ids are compared
    assert differences(first, second) == []


def test_a_changed_answer_is_named(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.txt", tmp_path / "theirs.txt"
    ours.write_bytes(b'a 200 {"cards":[]}\nb 200 {"cards":[1]}\n')
    theirs.write_bytes(b'a 200 {"cards":[]}\nb 200 {"cards":[2]}\n')
    assert differences(ours, theirs) == ["b differs at byte 16"]
    theirs.write_bytes(b'a 200 {"cards":[]}\n')
    assert differences(ours, theirs) == ["2 answers against 1"]
