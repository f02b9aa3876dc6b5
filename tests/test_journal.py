"""The resume journal (leukoscan/journal.py): finished fields are found again unless their file changed; a line
cut short is skipped and the next run starts on a fresh line."""

import json
import os

from leukoscan.journal import Journal, all_finished, journal_path
from leukoscan.records import FieldResult


def test_finished_fields_are_found_again_until_their_file_changes(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    with Journal(tmp_path / "out") as journal:
        journal.record(a, FieldResult("ok", cells=[{"cell": 0}, {"cell": 1}, {"cell": 2}]))
    assert not all_finished(tmp_path / "out", [a, b])
    with Journal(tmp_path / "out") as journal:
        assert len(journal.finished(a).cells) == 3 and journal.finished(b) is None
        journal.record(b, FieldResult("error", "image over 2 megapixels: 3000x2000 (6.0 megapixels)"))
    assert not all_finished(tmp_path / "out", [a, b])  # refused for its size: tried again (the limit may be raised)
    with Journal(tmp_path / "out") as journal:
        journal.record(b, FieldResult("error", "corrupt or truncated image"))
    assert all_finished(tmp_path / "out", [a, b])  # unreadable as it is: until the file changes
    a.write_bytes(b"changed")
    os.utime(a, (1, 1))
    assert not all_finished(tmp_path / "out", [a, b])


def test_a_line_cut_short_is_skipped_and_the_next_starts_fresh(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    with Journal(tmp_path / "out") as journal:
        journal.record(a, FieldResult("ok"))
    with open(journal_path(tmp_path / "out"), "ab") as f:
        f.write(b'{"fingerprint": {"path": "cut')  # an interrupted run
    with Journal(tmp_path / "out") as journal:
        assert journal.finished(a) is not None
        journal.record(b, FieldResult("ok"))
    assert all_finished(tmp_path / "out", [a, b])


def test_a_line_damaged_into_other_valid_json_is_screened_again(tmp_path):
    a = tmp_path / "a.png"
    a.write_bytes(b"1")
    with Journal(tmp_path / "out") as journal:
        good = journal.record(a, FieldResult("ok", cells=[{"cell": 0}]))
    # each damage alone; `duplicate` is decided when a slide's tables are made, never journalled
    for damage in ({"cells": "x"}, {"status": 5}, {"look": [1]}, {"status": "duplicate"}):
        with open(journal_path(tmp_path / "out"), "ab") as f:
            f.write(json.dumps({**good.record(), **damage}).encode() + b"\n")
        with Journal(tmp_path / "out") as journal:
            assert journal.finished(a) is None, damage
        assert not all_finished(tmp_path / "out", [a])


def test_fresh_forgets_everything(tmp_path):
    a = tmp_path / "a.png"
    a.write_bytes(b"1")
    with Journal(tmp_path / "out") as journal:
        journal.record(a, FieldResult("ok"))
    with Journal(tmp_path / "out", fresh=True) as journal:
        assert journal.finished(a) is None


def test_a_line_of_an_earlier_version_is_read_back(tmp_path):
    """Journals written before fields were typed records (no ``overlay``; keys since dropped) still resume."""
    import json

    from leukoscan.journal import fingerprint

    a = tmp_path / "a.png"
    a.write_bytes(b"1")
    path = journal_path(tmp_path / "out")
    path.parent.mkdir(parents=True)
    old = {"fingerprint": fingerprint(a), "status": "ok", "error": "", "cells": [{"cell": 0}], "retired": 1}
    path.write_text(json.dumps(old) + "\n")
    with Journal(tmp_path / "out") as journal:
        result = journal.finished(a)
    assert result == FieldResult("ok", cells=[{"cell": 0}], fingerprint=fingerprint(a)) and result.overlay is None
