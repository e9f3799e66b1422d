"""MMLU math: the authors' 354-item set, and the builder measured against it."""

import json
from collections import Counter

import pytest

from sipf.errors import DataError
from sipf.tasks.mmlu_math import build_mmlu_math, choice_number, load_mmlu_math


def test_load_authors_file(shared_data):
    path = shared_data / "mmlu" / "mmlu_math_354.jsonl"
    records = load_mmlu_math(path)
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 354
    assert [r.id for r in records] == [f"mmlu_math-{row['idx']:05d}" for row in raw]
    assert all(r.solution == "" for r in records)
    assert records[0].answer == "50"
    by_raw = {row["answer"]: r.answer for row, r in zip(raw, records)}
    assert by_raw["592,620"] == "592620"
    assert by_raw["-4"] == "-4"


def test_builder_count_and_overlap_with_authors(shared_data):
    """Measured: 387 items, 353 of them rows of the authors' 354 (see module docstring)."""
    built = build_mmlu_math(shared_data / "mmlu")
    authors = load_mmlu_math(shared_data / "mmlu" / "mmlu_math_354.jsonl")
    assert len(built) == 387
    built_pairs = Counter((r.question, r.answer) for r in built)
    author_pairs = Counter((r.question, r.answer) for r in authors)
    assert sum((built_pairs & author_pairs).values()) == 353
    missed = [r for r in authors if (r.question, r.answer) not in built_pairs]
    assert [r.question for r in missed] == [
        "Which of the following could NOT be the sides of an isosceles triangle?"]
    assert len({r.id for r in built}) == len(built)
    assert Counter(r.id.split("-")[1] for r in built) == {
        "college_mathematics": 26, "high_school_mathematics": 180,
        "elementary_mathematics": 181}


@pytest.mark.parametrize("choice, expected", [
    ("42", "42"),
    (" 0.14 ", "0.14"),
    ("-4", "-4"),
    ("\u22127", "-7"),       # U+2212 minus sign
    ("\u20139", "-9"),       # en dash used as a minus
    ("$1,234.50", "1234.5"),
    ("$14.00", "14"),
    ("$.47", "0.47"),
    ("1,600,000", "1600000"),
    ("2,2,4", None),         # a list, not a thousands-grouped number
    ("1/2", None),
    ("25%", None),
    ("2 × 5", None),
    ("140°", None),
    ("p = 8", None),
    ("None", None),
])
def test_choice_number(choice, expected):
    assert choice_number(choice) == expected


def _write_csvs(directory, elementary_text):
    for subject in ("college_mathematics", "high_school_mathematics"):
        (directory / f"{subject}_test.csv").write_text("What is 1+1?,1,2,3,4,B\n",
                                                       encoding="utf-8")
    (directory / "elementary_mathematics_test.csv").write_text(elementary_text,
                                                               encoding="utf-8")


def test_builder_on_small_files(tmp_path):
    _write_csvs(tmp_path, '"Pick, carefully",1/2,"$1,000",x,y,B\nName it,a,b,c,d,A\n')
    built = build_mmlu_math(tmp_path)
    assert [(r.id, r.question, r.answer) for r in built] == [
        ("mmlu-college_mathematics-000", "What is 1+1?", "2"),
        ("mmlu-high_school_mathematics-000", "What is 1+1?", "2"),
        ("mmlu-elementary_mathematics-000", "Pick, carefully", "1000"),
    ]


@pytest.mark.parametrize("text, row, field", [
    ("q,1,2,3,4,A\nq,1,2,3,B\n", 2, None),
    ("q,1,2,3,4,E\n", 1, "answer"),
])
def test_builder_malformed_rows(tmp_path, text, row, field):
    _write_csvs(tmp_path, text)
    with pytest.raises(DataError) as caught:
        build_mmlu_math(tmp_path)
    assert str(caught.value).startswith(
        f"{tmp_path / 'elementary_mathematics_test.csv'}: row {row}: ")
    assert caught.value.field == field


def test_builder_missing_file(tmp_path):
    with pytest.raises(DataError, match="college_mathematics_test.csv: no such file"):
        build_mmlu_math(tmp_path)
