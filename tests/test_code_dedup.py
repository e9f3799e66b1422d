"""Code deduplication: the edit distance, the authors' threshold, and speed on 1,000 programs."""

import random
import time

import pytest

from sipf.code.dedup import (CodeDeduper, dedup_programs, levenshtein, mean_line_length,
                             normalize_code, threshold)


def reference_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def test_levenshtein_matches_the_textbook_dynamic_programme():
    rng = random.Random(7)
    for _ in range(1500):
        a = "".join(rng.choice("ab(c)") for _ in range(rng.randint(0, 70)))
        b = "".join(rng.choice("ab(c)") for _ in range(rng.randint(0, 140)))
        exact = reference_distance(a, b)
        assert levenshtein(a, b) == exact
        limit = rng.randint(0, 30)
        bounded = levenshtein(a, b, limit)
        assert bounded == exact if exact < limit else bounded >= limit
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == levenshtein("abc", "") == 3
    long_a, long_b = "x" * 200 + "abc", "abd" + "x" * 200  # patterns over 64 bits
    assert levenshtein(long_a, long_b) == reference_distance(long_a, long_b) == 6


def test_normalisation_and_mean_line_length():
    program = "def f(x):\n\n    return  x +\t1\n"
    assert normalize_code(program) == "deff(x):returnx+1"
    assert mean_line_length(program) == (len("deff(x):") + len("returnx+1")) / 2
    assert mean_line_length(" \n\n") == 0.0
    # 0.8 * (8.5 + 1) + |17 - 11| / 2
    assert threshold(program, 11) == pytest.approx(0.8 * 9.5 + 3)


def test_the_threshold_is_strict_and_uses_the_candidates_line_length():
    # Candidate: two lines of 4 characters, so 0.8 * (4 + 1) = 4.0 at equal lengths.
    candidate = "abcd\nefgh"
    assert CodeDeduper.of(["abcdWXYZ"]).add(candidate)  # distance 4: not < 4.0, kept
    assert not CodeDeduper.of(["abcdeXYZ"]).add(candidate)  # distance 3 < 4.0, dropped
    # Different lengths: kept "abcdefghij" (10) vs candidate (8): bound 4.0 + 1 = 5.0.
    assert levenshtein("abcdefghij", "abcdefgh") == 2
    assert not CodeDeduper.of(["abcdefghij"]).add(candidate)
    assert CodeDeduper.of(["abcdefghijklmnop"]).add(candidate)  # gap 8 >= 4.0 + 4.0
    # Asymmetric, as the authors' rule: the candidate's line length sets the tolerance.
    four_lines, one_line = "ab\ncd\nef\ngh", "abWXYZgh"
    assert levenshtein(normalize_code(four_lines), one_line) == 4
    assert CodeDeduper.of([one_line]).add(four_lines)  # 4 >= 0.8 * (2 + 1) = 2.4: kept
    assert not CodeDeduper.of([four_lines]).add(one_line)  # 4 < 0.8 * (8 + 1) = 7.2: dropped


def test_whitespace_only_differences_and_empty_programs_are_dropped():
    a = "def f(x):\n    return x+1\n"
    b = "def f(x):\n\n\treturn x + 1   \n"
    assert dedup_programs([a, b, "   \n\n", ""]) == [0]


def test_dedup_keeps_order_and_compares_with_existing_and_earlier_kept():
    programs = ["def add(a, b):\n    return a + b",
                "def add(a, b):\n    return b + a",      # 2 edits: a near-duplicate
                "def add(x, y):\n    total = x\n    total += y\n    return total",
                "def add(x, y):\n    total = x\n    total += y\n    return total  # sum",
                "import operator\ndef add(a, b):\n    return operator.add(a, b)"]
    assert dedup_programs(programs) == [0, 2, 4]
    assert dedup_programs(programs, existing=[programs[2]]) == [0, 4]
    deduper = CodeDeduper()
    assert [deduper.add(p) for p in programs] == [True, False, True, False, True]
    assert deduper.kept == [programs[0], programs[2], programs[4]]


def _mutants(count: int, seed: int) -> list[str]:
    """MBPP-like programs: a few shapes, random names, constants and extra lines."""
    rng = random.Random(seed)
    shapes = [
        "def {f}({a}, {b}):\n    {r} = []\n    for {i} in range(len({a})):\n"
        "        if {a}[{i}] % {k} == {m}:\n            {r}.append({a}[{i}] * {b})\n"
        "    return {r}\n",
        "def {f}({a}, {b}):\n    return [{i} * {b} for {i} in {a} if {i} % {k} == {m}]\n",
        "import math\ndef {f}({a}, {b}):\n    {r} = 0\n    for {i} in {a}:\n"
        "        {r} += math.floor({i} / {k}) * {b}\n    return {r} + {m}\n",
    ]
    names = ["x", "y", "arr", "nums", "lst", "n", "res", "out", "val", "item", "idx", "j"]
    programs = []
    for _ in range(count):
        fields = {key: rng.choice(names) for key in "abri"}
        fields.update(f=rng.choice(["solve", "func", "get_res", "compute"]),
                      k=rng.randint(2, 9), m=rng.randint(0, 30))
        program = rng.choice(shapes).format(**fields)
        for _ in range(rng.randint(0, 3)):
            program += f"    # note {rng.randint(0, 10 ** 6)}\n"
        programs.append(program)
    return programs


def _within(candidate: str, kept: str) -> bool:
    """The rule, written out directly: exact distance against the threshold."""
    return levenshtein(normalize_code(candidate), normalize_code(kept)) < \
        threshold(candidate, len(normalize_code(kept)))


def test_a_thousand_programs_in_a_few_seconds():
    programs = _mutants(1000, seed=3)
    started = time.perf_counter()
    deduper = CodeDeduper()
    kept = [deduper.add(p) for p in programs]
    elapsed = time.perf_counter() - started
    assert 50 < sum(kept) < 950
    assert elapsed < 3.0, f"{elapsed:.1f} s for 1,000 programs"  # 0.4 s on 2 idle cores
    # Each decision (on a sample) is the rule applied to the programs kept before it.
    for i in random.Random(0).sample(range(1000), 40):
        earlier = [p for p, k in zip(programs[:i], kept[:i]) if k]
        assert kept[i] == (not any(_within(programs[i], p) for p in earlier)), i
