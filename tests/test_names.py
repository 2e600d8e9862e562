"""File names of any bytes: stored losslessly, shown escaped."""

import json
import os

import pytest

from lookalike.names import display, from_db, json_text, to_db

HOSTILE = [
    os.fsdecode(b"bad\xff.jpg"),  # not UTF-8: a lone surrogate in Python
    "red\x1b[31malert\x1b[0m.png",  # terminal escape codes
    "right\u202eto-left.gif",  # a bidi override that reorders what a terminal shows
    "new\nline.jpg",
    "plain café.jpg",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_names_round_trip_through_the_database_form(name):
    assert from_db(to_db(name)) == name
    assert os.fsencode(from_db(to_db(name))) == os.fsencode(name)


def test_display_escapes_invalid_bytes_and_control_characters():
    assert display(HOSTILE[0]) == "bad\\xff.jpg"
    assert display(HOSTILE[1]) == "red\\x1b[31malert\\x1b[0m.png"
    assert display(HOSTILE[2]) == "right\\u202eto-left.gif"
    assert display(HOSTILE[3]) == "new\\x0aline.jpg"
    assert display(HOSTILE[4]) == "plain café.jpg"  # printable names are left alone
    assert all(display(n).isprintable() for n in HOSTILE)


def test_json_text_is_valid_utf8_and_only_touches_invalid_bytes():
    assert json_text(HOSTILE[0]) == "bad\\xff.jpg"
    assert json_text("plain café.jpg") == "plain café.jpg"
    json.dumps(json_text(HOSTILE[0]), ensure_ascii=False).encode("utf-8")
