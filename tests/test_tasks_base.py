"""The shared math-task interface: steps, answers, calculator annotations, JSONL reading."""

import pytest

from sipf.errors import DataError
from sipf.tasks.base import (annotation_holds, annotations, answers_match, extract_answer,
                             join_steps, read_jsonl, safe_eval, split_steps)


def test_split_steps_skips_blank_lines_and_stops_at_answer_line():
    solution = "  A = <<2+3=5>>5 \n\nB = <<5*2=10>>10\nThe answer is 10\nignored tail"
    assert split_steps(solution) == ["A = <<2+3=5>>5", "B = <<5*2=10>>10"]


def test_join_steps_inverts_split_steps():
    steps = ["x = <<1+1=2>>2", "y = <<2*3=6>>6"]
    assert split_steps(join_steps(steps, "6")) == steps
    assert extract_answer(join_steps(steps, "6")) == "6"


@pytest.mark.parametrize("text, expected", [
    ("so The answer is 42", "42"),
    ("The answer is 1,234,567", "1234567"),
    ("The answer is 3.50.", "3.5"),
    ("The answer is -7", "-7"),
    ("The answer is: $18", "18"),
    ("The answer is 10.0", "10"),
    ("The answer is 5. Later: The answer is 6", "5"),  # the first one counts
    ("The answer is <<8=8>>8.\nThe answer is 8", "8"),  # non-numbers are skipped over
    ("I think it is 42", None),
    ("The answer is unknown", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("predicted, gold, expected", [
    ("1,000", "1000.0", True),
    ("$7", "7", True),
    ("0.5", ".5", True),
    ("-3", "3", False),
    ("6", "7", False),
    (None, "7", False),
    ("seven", "7", False),
])
def test_answers_match(predicted, gold, expected):
    assert answers_match(predicted, gold) is expected


@pytest.mark.parametrize("expr, expected", [
    ("2+3*4", 14.0),
    ("(2+3)*4", 20.0),
    ("1,000/4", 250.0),
    ("3 x 4", 12.0),
    ("-5+2", -3.0),
])
def test_safe_eval_arithmetic(expr, expected):
    assert safe_eval(expr) == expected


@pytest.mark.parametrize("expr", [
    "a+b",                     # names
    "__import__('os')",        # calls
    "len([1])",
    "(1).real",                # attributes
    "2**10",                   # operators beyond + - * /
    "1/0",
    "True+1",
    "'a'*3",
    "",
    "1+" * 150 + "1",          # over the length limit
])
def test_safe_eval_rejects_non_arithmetic(expr):
    assert safe_eval(expr) is None


def test_annotations_and_annotation_holds():
    step = "6 x 9 = <<6*9=54>>54 and 54 - 4 = <<54-4=49>>49"
    assert annotations(step) == [("6*9", "54"), ("54-4", "49")]
    assert annotation_holds("6*9", "54")
    assert not annotation_holds("54-4", "49")
    assert annotation_holds("1,000+1", "1,001")
    assert annotation_holds("10/3", "3.3333333")
    assert not annotation_holds("os.system(1)", "0")
    assert not annotation_holds("1+1", "two")


def test_read_jsonl_reports_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": \n', encoding="utf-8")
    rows = read_jsonl(path)
    assert next(rows) == (1, {"a": 1})
    assert next(rows) == (3, {"a": 2})  # blank line 2 skipped but still counted
    with pytest.raises(DataError, match=r"d\.jsonl: row 4: invalid JSON"):
        next(rows)


def test_read_jsonl_rejects_non_objects_and_missing_files(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 1: expected a JSON object, got list"):
        list(read_jsonl(path))
    with pytest.raises(DataError, match="absent.jsonl: cannot read file"):
        list(read_jsonl(tmp_path / "absent.jsonl"))


def test_integer_answers_stay_exact_beyond_two_to_the_53():
    from sipf.tasks.base import answers_match, normalize_number

    big = 2**53 + 1  # float(big) == 2**53
    assert normalize_number(f"{big:,}") == str(big)
    assert normalize_number("1,234.50") == "1234.5" and normalize_number("7.0") == "7"
    assert not answers_match(str(big), str(2**53))
    assert answers_match(str(big), f"{big}.0")
    assert answers_match("0.30000000000000004", "0.3")  # non-integers keep the tolerance
