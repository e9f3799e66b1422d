"""GSM8K loading and gold-solution rewriting, checked on every real gold solution."""

import json

import pytest

from sipf.errors import ConfigError, DataError
from sipf.tasks.base import (annotation_holds, annotations, extract_answer, normalize_number,
                             split_steps)
from sipf.tasks.gsm8k import gold_solution, load_gsm8k
from sipf.tasks.prompts import COT_STOP, PROMPT_STYLES, format_prompt


def test_extraction_recovers_every_gold_answer(shared_data):
    """The closing line written by gold_solution is read back by extract_answer, 8792/8792.

    The gold answer is taken independently from the raw "#### N" line of each file.
    """
    loaded = load_gsm8k(str(shared_data / "gsm8k"))
    counts, failures = {}, []
    for split, records in loaded.items():
        lines = (shared_data / "gsm8k" / f"{split}.jsonl").read_text(encoding="utf-8")
        raw_rows = [json.loads(line) for line in lines.splitlines()]
        assert len(raw_rows) == len(records)
        counts[split] = len(records)
        for raw, record in zip(raw_rows, records):
            gold = normalize_number(raw["answer"].split("####")[-1])
            if record.answer != gold or extract_answer(record.solution) != gold:
                failures.append(record.id)
    assert counts == {"train": 7473, "test": 1319}
    assert failures == []


def test_loaded_records_keep_question_and_reasoning(shared_data):
    test = load_gsm8k(str(shared_data / "gsm8k"), splits=("test",))["test"]
    first = test[0]
    assert first.id == "gsm8k-test-00000"
    assert first.question.startswith("Janet’s ducks lay 16 eggs per day.")
    assert first.answer == "18"
    steps = split_steps(first.solution)
    assert first.solution.endswith("\nThe answer is 18")
    assert all(annotation_holds(e, v) for step in steps for e, v in annotations(step))
    assert test[42].id == "gsm8k-test-00042"


def test_single_jsonl_file_is_one_split_named_by_stem(shared_data):
    loaded = load_gsm8k(str(shared_data / "gsm8k" / "test.jsonl"))
    assert list(loaded) == ["test"]
    assert len(loaded["test"]) == 1319


def test_gold_solution_rewrites_final_line_and_keeps_reasoning():
    raw = "He buys 2 * 1,500 = <<2*1500=3000>>3,000 bricks.\n\nSo 3,000.\n#### 3,000"
    solution, answer = gold_solution(raw)
    assert answer == "3000"
    assert solution == ("He buys 2 * 1,500 = <<2*1500=3000>>3,000 bricks.\n\nSo 3,000.\n"
                        "The answer is 3000")
    assert gold_solution("#### -4") == ("The answer is -4", "-4")


def _write(tmp_path, text):
    path = tmp_path / "test.jsonl"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("lines, row, field, message", [
    (['{"question": "q", "answer": "1 + 1 = 2\\n#### 2"}', '{"question": "q", '],
     2, None, "invalid JSON"),
    (['{"question": "q", "answer": "#### 2"}', "", '{"answer": "#### 2"}'],
     3, "question", "missing"),
    (['{"question": "q", "answer": "1 + 1 = 2\\nso 2"}'], 1, "answer", "no final '#### N'"),
    (['{"question": "q", "answer": "1 + 1 = 2\\n#### two"}'], 1, "answer",
     "expected a number, got ' two'"),
    (['{"question": "", "answer": "#### 2"}'], 1, "question", "empty"),
])
def test_malformed_rows_name_file_row_and_field(tmp_path, lines, row, field, message):
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataError) as caught:
        load_gsm8k(str(path))
    text = str(caught.value)
    assert text.startswith(f"{path}: row {row}: ")
    assert (f"field '{field}'" in text) == (field is not None)
    assert message in text
    assert (caught.value.file, caught.value.row, caught.value.field) == (str(path), row, field)


def test_missing_split_file_in_directory(tmp_path):
    _write(tmp_path, '{"question": "q", "answer": "#### 1"}\n')
    with pytest.raises(DataError, match=r"train\.jsonl: cannot read file"):
        load_gsm8k(str(tmp_path))
    assert len(load_gsm8k(str(tmp_path), splits=("test",))["test"]) == 1


def test_instruction_prompt_is_the_authors_verbatim():
    assert format_prompt("What is 2+2?", "instruction") == (
        "### Instruction:\nLet't think step by step to answer following question.\n\n"
        "### Question:\nWhat is 2+2?\n\n### Answer:\n")


def test_cot8_prompt_has_eight_checked_exemplars():
    prompt = format_prompt("What is 2+2?", "cot8")
    *blocks, last = prompt.split("\n\n")
    assert last == "Q: What is 2+2?\nA: "
    assert len(blocks) == 8
    expected = ["6", "5", "39", "8", "9", "29", "33", "8"]
    for block, answer in zip(blocks, expected):
        question, rationale = block.split("\n")
        assert question.startswith("Q: ") and rationale.startswith("A: ")
        assert rationale.endswith(f"The answer is {answer}")
        assert extract_answer(rationale) == answer
        pairs = annotations(rationale)
        assert pairs and all(annotation_holds(e, v) for e, v in pairs)
    # Continuing into a new exemplar is cut at the stop string.
    assert any(stop in "4. The answer is 4\n\nQ: next" for stop in COT_STOP)


def test_compact_prompt_and_style_list():
    assert format_prompt("What is 2+2?", "compact") == "Q: What is 2+2?\nA:\n"
    assert set(PROMPT_STYLES) == {"instruction", "cot8", "compact", "code"}


def test_questions_with_braces_are_inserted_literally():
    question = r"Find $\frac{1}{2}$ of {question}."
    assert format_prompt(question, "compact") == f"Q: {question}\nA:\n"


def test_unknown_prompt_style_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown prompt style 'fewshot'.*instruction, cot8, "
                                          "compact"):
        format_prompt("q", "fewshot")
