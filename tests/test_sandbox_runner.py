"""The sandbox's child side, sipf/code/sandbox/runner.py, imported here (nothing runs on import)
and its pure helpers called directly: the data encoding the parent decodes, the MAC'd records
the parent parses, and what it reports of hostile exceptions."""

from __future__ import annotations

import json
import os

import pytest

from sipf.code import sandbox
from sipf.code.sandbox import runner


def round_trip(value: object) -> object:
    """runner.encode on one side, JSON on a pipe, runner.decode on the other."""
    return runner.decode(json.loads(json.dumps(runner.encode(value))))


@pytest.mark.parametrize("value", [
    None, True, 0, -7, 2**53 - 1, 2**53, -(2**80), 1.5, float("inf"), 2 - 3j, "ünï", b"\x00\xff",
    bytearray(b"ab"), [1, [2, (3,)]], (), {4, 5}, frozenset({"a"}),
    {1: {"k": [None]}, (1, 2): b""},
])
def test_plain_data_round_trips_with_its_type(value: object) -> None:
    back = round_trip(value)
    assert back == value
    assert type(back) is type(value)


def test_big_ints_go_as_hex_small_ones_as_numbers() -> None:
    assert runner.encode(2**53 - 1) == 2**53 - 1
    assert runner.encode(2**53) == {"I": "20000000000000"}
    assert runner.encode(-255 * 2**60) == {"I": format(-255 * 2**60, "x")}
    assert runner.encode(True) is True  # bool is not read as int


def test_subclasses_are_read_through_their_base_type() -> None:
    class Sneaky(list):
        def __iter__(self):
            return iter([42])

        def __eq__(self, other):
            return True

    class Loud(str):
        def __str__(self):
            return "passed"

    class Big(int):
        def __index__(self):
            return 0

    assert runner.encode(Sneaky([1, 2])) == {"L": [1, 2]}
    assert runner.encode(Loud("no")) == "no" and type(runner.encode(Loud("no"))) is str
    assert runner.encode(Big(3)) == 3
    assert runner.encode({"k": Sneaky([7])}) == {"D": [["k", {"L": [7]}]]}


def test_iterators_go_as_what_they_yield_and_come_back_as_iterators() -> None:
    back = round_trip(map(abs, [-1, 2]))
    assert type(back) is type(iter([])) and list(back) == [1, 2]
    assert list(round_trip(x * x for x in range(3))) == [0, 1, 4]


@pytest.mark.parametrize("value", [object(), range(3), [1, print], {1: {2: object()}}])
def test_non_data_is_refused(value: object) -> None:
    with pytest.raises(TypeError):
        runner.encode(value)


def test_nesting_is_capped() -> None:
    nested: list = []
    for _ in range(100):
        nested = [nested]
    assert round_trip(nested) == nested  # depth 100 still goes
    with pytest.raises(TypeError, match="nested too deeply"):
        runner.encode([nested])


def emitted(key: bytes, *fields: str) -> bytes:
    """What the runner's emitter writes on its record pipe for ``fields``."""
    read_end, write_end = os.pipe()
    try:
        emit = runner.make_emitter(write_end, key)
        for text in fields:
            emit(text)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            return pipe.read()
    finally:
        for fd in (read_end, write_end):
            try:
                os.close(fd)
            except OSError:
                pass


def test_emitted_records_are_what_the_parent_accepts() -> None:
    key = bytes(range(32))
    data = emitted(key, '"probe": [0, 1], "value": ' + json.dumps(runner.encode([2**60, 2j])),
                   '"test": 2, "ok": true', '"done": true')
    lines = data.split(b"\n")
    assert len(lines) == 4 and lines[-1] == b""
    mac, _, text = lines[2].partition(b" ")
    assert len(mac) == 32 and text == b'{"done": true}'
    records = sandbox._Records.parse(data, key)
    assert not records.tampered and records.done and records.test_ok == {2}
    assert runner.decode(records.probes[(0, 1)]["value"]) == [2**60, 2j]


def test_records_under_another_key_are_tampering() -> None:
    data = emitted(b"k" * 32, '"done": true')
    records = sandbox._Records.parse(data, b"K" * 32)
    assert records.tampered and not records.done


def test_describe_survives_hostile_exceptions() -> None:
    class Hostile(Exception):
        def __str__(self):
            raise RuntimeError("no")

    assert runner.describe(Hostile()) == ("Exception", "")
    assert runner.describe(ValueError("x" * 1000)) == ("ValueError", "x" * 300)
    assert runner.describe(ZeroDivisionError("division by zero")) == (
        "ZeroDivisionError", "division by zero")
