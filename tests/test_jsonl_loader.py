"""Loading a user's own JSONL, and the DataError messages that point at bad rows."""

import json

import pytest

from sipf.errors import ConfigError, DataError
from sipf.tasks.jsonl import FieldMap, load_jsonl


def _write(tmp_path, rows, name="mine.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_data_error_message_parts():
    assert str(DataError("expected a number, got 'abc'", file="data/x.jsonl", row=7,
                         field="answer")) == \
        "data/x.jsonl: row 7: field 'answer': expected a number, got 'abc'"
    assert str(DataError("bad", row=3)) == "row 3: bad"
    assert str(DataError("bad")) == "bad"
    assert isinstance(DataError("bad"), ValueError)
    assert isinstance(ConfigError("bad"), ValueError)


def test_loads_default_fields(tmp_path):
    path = _write(tmp_path, [
        {"question": "1+1?", "answer": "2", "solution": "1 + 1 = <<1+1=2>>2\nThe answer is 2"},
        {"question": "Big?", "answer": "1,000", "solution": "10*100 = <<10*100=1000>>1000\n"
                                                             "#### 1,000"},
        {"question": "No work shown?", "answer": 7},
        {"question": "Null solution?", "answer": "-0.5", "solution": None},
    ])
    records = load_jsonl(path, FieldMap(), prefix="mine")
    assert [r.id for r in records] == ["mine-00000", "mine-00001", "mine-00002", "mine-00003"]
    assert [r.answer for r in records] == ["2", "1000", "7", "-0.5"]
    assert records[0].solution == "1 + 1 = <<1+1=2>>2\nThe answer is 2"
    assert records[1].solution == "10*100 = <<10*100=1000>>1000\nThe answer is 1000"
    assert records[2].solution == records[3].solution == ""


def test_custom_field_names_and_ids(tmp_path):
    path = _write(tmp_path, [{"problem": "p", "target": "$3", "steps": "The answer is 3.",
                              "uid": "a"},
                             {"problem": "q", "target": "4", "uid": 17}])
    fields = FieldMap(question="problem", answer="target", solution="steps", id="uid")
    records = load_jsonl(path, fields, prefix="x")
    assert [(r.id, r.question, r.answer) for r in records] == [("x-a", "p", "3"),
                                                               ("x-17", "q", "4")]
    no_solutions = load_jsonl(path, FieldMap("problem", "target", None), prefix="x")
    assert no_solutions[0].solution == ""


@pytest.mark.parametrize("rows, row, field, message", [
    (["{not json"], 1, None, "invalid JSON"),
    ([{"question": "q", "answer": "1"}, {"answer": "1"}], 2, "question", "missing"),
    ([{"question": "  ", "answer": "1"}], 1, "question", "empty"),
    ([{"question": "q"}], 1, "answer", "missing"),
    ([{"question": "q", "answer": "abc"}], 1, "answer", "expected a number, got 'abc'"),
    ([{"question": "q", "answer": "1/2"}], 1, "answer", "expected a number"),
    ([{"question": "q", "answer": ["1"]}], 1, "answer", "expected text, got list"),
    ([{"question": "q", "answer": "3", "solution": "1 + 2 = 3"}], 1, "solution",
     "must end with a line 'The answer is N' or '#### N'"),
    ([{"question": "q", "answer": "3", "solution": "The answer is 4"}], 1, "solution",
     "ends with answer 4 but the answer field is 3"),
    ([{"question": "q", "answer": "3", "solution": "1+2\n#### 5"}], 1, "solution",
     "ends with answer 5"),
    ([{"question": "q", "answer": "3", "solution": ""}], 1, "solution", "empty"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, rows, row, field, message):
    path = _write(tmp_path, rows)
    with pytest.raises(DataError) as caught:
        load_jsonl(path, FieldMap(), prefix="mine")
    text = str(caught.value)
    assert text.startswith(f"{path}: row {row}: ")
    assert (f"field '{field}'" in text) == (field is not None)
    assert message in text


def test_duplicate_ids(tmp_path):
    path = _write(tmp_path, [{"question": "q", "answer": "1", "id": "a"},
                             {"question": "r", "answer": "2", "id": "b"},
                             {"question": "s", "answer": "3", "id": "a"}])
    with pytest.raises(DataError, match=r"row 3: field 'id': duplicate id 'a' "
                                        r"\(first used in row 1\)"):
        load_jsonl(path, FieldMap(id="id"), prefix="mine")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"absent\.jsonl: cannot read file"):
        load_jsonl(tmp_path / "absent.jsonl", FieldMap(), prefix="mine")
