"""Tests of bot/engine/mapcheck.py: the `mappings` state machine (C and Python) and its rules."""

from __future__ import annotations

import itertools
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine import mapcheck
from bot.engine.mapcheck import MappingsCheck, MapRules


def compiled() -> mapcheck.Feeder:
    feeder = mapcheck.compiled_feeder()
    if feeder is None:
        pytest.fail("bot/engine/_vlq.c was not built: reinstall the package (pip install -e .)")
    return feeder


def run(feeder: mapcheck.Feeder, pieces: list[bytes]) -> list[int]:
    state = mapcheck.new_state()
    for piece in pieces:
        feeder(state, piece)
    feeder(state, b";")
    return list(state)


def encode(value: int) -> str:
    """Base64 VLQ, as ECMA-426 describes it (the test's own encoder)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    if value == -(1 << 31):
        return "B"  # "minus zero": VLQSignedValue's only spelling of -2^31
    bits = (-value << 1) | 1 if value < 0 else value << 1
    out = ""
    while True:
        digit, bits = bits & 31, bits >> 5
        if not bits:
            return out + alphabet[digit]
        out += alphabet[digit | 32]


def check(mappings: str, *, sources: int = 1, names: int = 0) -> str | None:
    """The problem a map with `mappings` and so many sources and names has, if any."""
    rules = MapRules(in_section=False)
    check = rules.begin_mappings()
    check.feed(mappings.encode())
    check.finish()
    if check.problem is not None:
        return check.problem
    rules.add_names(names)
    return rules.close({"version", "sources", "mappings"}, sources)


_PIECES = st.text(alphabet="AaBbCDgh+/9zfe,;;,,!", max_size=60)


@settings(max_examples=400, deadline=None)
@given(text=_PIECES, cuts=st.lists(st.integers(0, 60), max_size=4))
def test_the_c_loop_and_the_python_loop_agree(text: str, cuts: list[int]) -> None:
    data = text.encode()
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    expected = run(mapcheck._feed_python, [data])
    assert run(compiled(), pieces) == expected
    assert run(mapcheck._feed_python, pieces) == expected


@settings(max_examples=200, deadline=None)
@given(
    segments=st.lists(
        st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=1, max_size=5).filter(
            lambda fields: len(fields) in (1, 4, 5)
        ),
        max_size=20,
    ),
    breaks=st.lists(st.booleans(), max_size=20),
    cuts=st.lists(st.integers(0, 1000), max_size=3),
)
def test_decoded_values_match_a_reference_decoder(
    segments: list[list[int]], breaks: list[bool], cuts: list[int]
) -> None:
    """Build mappings from known deltas; the state must hold what a plain decoder computes.

    Mostly valid input: this is what runs the C module's optimistic pass (`run_fast`), which
    must leave the very state the exact loop does, however the input is cut.
    """
    text = ""
    column = source = oline = ocolumn = name = 0
    line = 0
    negative = False
    max_source = max_name = -1
    for index, fields in enumerate(segments):
        if index:
            new_line = index - 1 < len(breaks) and breaks[index - 1]
            text += ";" if new_line else ","
            if new_line:
                line, column = line + 1, 0
        text += "".join(encode(v) for v in fields)
        column += fields[0]
        negative |= column < 0
        if len(fields) >= 4:
            source, oline, ocolumn = source + fields[1], oline + fields[2], ocolumn + fields[3]
            negative |= min(source, oline, ocolumn) < 0
            max_source = max(max_source, source)
        if len(fields) == 5:
            name += fields[4]
            negative |= name < 0
            max_name = max(max_name, name)
        if negative:
            break
    data = text.encode()
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    assert run(compiled(), pieces) == run(mapcheck._feed_python, [data])
    for feeder in (compiled(), mapcheck._feed_python):
        state = array("q", run(feeder, [data]))
        if negative:
            assert state[mapcheck.ERROR] in range(
                mapcheck.E_NEGATIVE_COLUMN, mapcheck.E_NEGATIVE_NAME + 1
            )
            continue
        assert state[mapcheck.ERROR] == mapcheck.E_NONE
        assert (state[mapcheck.MAX_SOURCE], state[mapcheck.MAX_NAME]) == (max_source, max_name)
        assert state[mapcheck.SEGMENTS] == len(segments)


@pytest.mark.parametrize(
    ("mappings", "problem"),
    [
        ("", None),
        (";;;", None),
        ("A", None),
        ("AAAA,CAAC;;AACA", None),
        ("AAAAA", "a segment points at name 0, but `names` has 0 entries"),
        ("+/////D", None),  # 2^31 - 1
        ("ggggggE", "a base64 VLQ value exceeds 32 bits"),  # 2^31
        ("+/////H", "a base64 VLQ value exceeds 32 bits"),  # 2^33 - 2 before the sign
        ("i" + "g" * 200 + "A", None),  # leading zero digits are allowed
        ("i" + "g" * 200 + "B", "a base64 VLQ value exceeds 32 bits"),
        ("AA", "a segment with 2 fields"),
        ("AAA", "a segment with 3 fields"),
        ("AAAAAA", "a segment with more than 5 fields"),
        (",", "a segment with no fields"),
        ("A,", "a segment with no fields"),
        ("A,;A", "a segment with no fields"),
        (",A", "a segment with no fields"),
        ("g", "a base64 VLQ ends in a continuation digit"),
        ("Ag,A", "a base64 VLQ ends in a continuation digit"),
        ("A=", "a character outside base64 VLQ"),
        ("A.A", "a character outside base64 VLQ"),
        ("D", "a negative generated column"),
        ("C,D", None),
        ("C,F", "a negative generated column"),
        ("C;D", "a negative generated column"),  # the column starts again at 0
        ("ADAA", "a negative source index"),
        ("AADA", "a negative original line"),
        ("AAAD", "a negative original column"),
        ("AAAAD", "a negative name index"),
        ("ACAA", "a segment points at source 1, but `sources` has 1 entry"),
    ],
)
def test_mappings_rules(mappings: str, problem: str | None) -> None:
    found = check(mappings)
    if problem is None:
        assert found is None, found
    else:
        assert found is not None and problem in found, found


def test_minus_zero_is_the_lowest_32_bit_value() -> None:
    # VLQSignedValue: a sign bit with value 0 is -2^31, so "B" as a generated column is < 0.
    assert check("B") == "a negative generated column"
    assert check("+/////D,B") == "a negative generated column"  # 2^31 - 1 - 2^31 = -1
    assert check("+/////D,D") is None  # 2^31 - 1 - 1


def test_escapes_are_decoded_and_can_straddle_pieces() -> None:
    escaped_c = b"AAAA,\\u0043AAC;+\\/B"  # `C` as \\u0043, `/` as \\/ (+/B is 1023)
    for cut in range(len(escaped_c) + 1):
        check = MappingsCheck()
        check.feed(escaped_c[:cut])
        check.feed(escaped_c[cut:])
        check.finish()
        assert check.problem is None, (cut, check.problem)
    bad = MappingsCheck()
    bad.feed(b"AA\\qA")
    bad.finish()
    assert bad.problem == "a character outside base64 VLQ, `,` and `;`: b'\\\\'"
    assert bad.error_position == 2


def test_section_order_and_overlap() -> None:
    def child(mappings: str) -> MapRules:
        rules = MapRules(in_section=True)
        check = rules.begin_mappings()
        check.feed(mappings.encode())
        check.finish()
        return rules

    def add(index: MapRules, line: int, column: int, mappings: str) -> str | None:
        index.begin_section()
        index.section_offset()
        assert index.offset_field("line", str(line).encode()) is None
        assert index.offset_field("column", str(column).encode()) is None
        index.section_map(child(mappings))
        return index.end_section()

    index = MapRules(in_section=False)
    assert add(index, 0, 0, "AAAA,SAAS") is None  # last mapping at (0, 9)
    overlap = add(index, 0, 9, "AAAA")
    assert overlap is not None and "overlap" in overlap
    index = MapRules(in_section=False)
    assert add(index, 0, 0, "AAAA,SAAS") is None
    assert add(index, 0, 10, "AAAA;AAAA") is None  # last mapping at (1, 0)
    assert add(index, 1, 1, "") is None
    unsorted = add(index, 1, 0, "")
    assert unsorted is not None and "not sorted" in unsorted
    assert add(MapRules(in_section=False), 0, 0, "") is None
    missing = MapRules(in_section=False)
    missing.begin_section()
    assert missing.end_section() == "a section has no `offset`"
    assert missing.offset_field("line", b"1.5") is None  # no section open: ignored
    missing.begin_section()
    missing.section_offset()
    assert missing.offset_field("line", b"1.5") == "a section's `offset.line` must be an integer"
    assert missing.offset_field("column", b"2e0") is None


def test_ignore_list_entries() -> None:
    rules = MapRules(in_section=False)
    rules.begin_ignore_list()
    assert rules.ignore_index(b"0") is None
    assert rules.ignore_index(b"1") is None
    assert rules.ignore_index(b"-1") is not None
    assert rules.ignore_index(b"0.5") is not None
    assert rules.ignore_index(None) is not None
    assert rules.close({"version", "sources", "mappings"}, 2) is None
    problem = rules.close({"version", "sources", "mappings"}, 1)
    assert problem == "`ignoreList` holds index 1, but `sources` has 1 entry"
