"""The bad-input suite: every broken input a stage reads gives one clear line (naming the
file, and the row and field where there is one), exit status 1, no traceback, and no output
written, whole or partial. Each case breaks one thing in a small prepared project; the stage
that reads it must refuse before it loads a model or trains.

`python -m pytest tests/test_bad_inputs.py -q -rA` lists every case; the closing note of
issue 19 counts them (clear errors / tried)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import run, tiny_params

GOOD = [{"question": f"q{i}", "answer": str(i), "solution": f"{i}+0={i}\nThe answer is {i}"}
        for i in range(4)]


@dataclass(frozen=True)
class Case:
    """``setup(project)`` breaks one input; ``command`` reads it; the error line must hold
    every string in ``expect``."""

    name: str
    setup: Callable[[Path], None]
    command: tuple[str, ...]
    expect: tuple[str, ...]


# ------------------------------------------------------------------------------ helpers
def params(**sections: dict) -> Callable[[Path], None]:
    return lambda root: tiny_params(root / "params.yaml", **sections)


def raw_params(text: str) -> Callable[[Path], None]:
    return lambda root: (root / "params.yaml").write_text(text)


def edit_params(old: str, new: str) -> Callable[[Path], None]:
    """Replace the first match of the regular expression ``old`` in params.yaml."""
    def setup(root: Path) -> None:
        path = root / "params.yaml"
        text, count = re.subn(old, new, path.read_text(), count=1)
        assert count == 1, old
        path.write_text(text)
    return setup


def lines(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def jsonl_task(train: str | bytes | None, test: str | None = lines(GOOD),
               **fields: str) -> Callable[[Path], None]:
    """The jsonl task on these file contents (None: the file is not there)."""
    def setup(root: Path) -> None:
        for name, content in (("train.jsonl", train), ("test.jsonl", test)):
            if isinstance(content, bytes):
                (root / name).write_bytes(content)
            elif content is not None:
                (root / name).write_text(content)
        tiny_params(root / "params.yaml", prepare={"task": "jsonl", "jsonl": {
            "train": "train.jsonl", "test": "test.jsonl", **fields}})
    return setup


def good_rows(*replace: tuple[int, str, str]) -> str:
    """GOOD as JSONL, with ``rows[index][key] = value`` for each replacement."""
    rows = [dict(r) for r in GOOD]
    for index, key, value in replace:
        rows[index][key] = value
    return lines(rows)


def table(path: str, rows: list[dict] | None = None, **columns: pa.Array) -> Callable[[Path], None]:
    """Write a Parquet file: ``rows``, or the given arrow columns."""
    def setup(root: Path) -> None:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        data = pa.table(columns) if columns else pa.Table.from_pylist(rows or [])
        pq.write_table(data, target)
    return setup


def train_ids(root: Path) -> list[str]:
    return pq.read_table(root / "data/prepared/train.parquet").column("id").to_pylist()


def changed(rows: list[dict], changes: dict[str, object]) -> list[dict]:
    """Row 2 changed, or every row when a value is a string where the column holds no text
    (arrow cannot mix a string with numbers in a column: so a writer would store it)."""
    every = any(isinstance(v, str) and not isinstance(rows[0].get(k), str)
                for k, v in changes.items())
    for row in rows if every else rows[1:2]:
        row.update(changes)
    return rows


def samples(root: Path, **changes: object) -> list[dict]:
    ids = train_ids(root)
    rows = [{"question_id": ids[i], "path_id": f"{ids[i]}/it1/000", "text": "1+1=2",
             "steps": ["1+1=2"], "answer": "2", "outcome": True, "iteration": 1,
             "generator": "hand"} for i in range(3)]
    return changed(rows, changes)


def samples_with(**changes: object) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        table("data/it1/samples.parquet", samples(root, **changes))(root)
    return setup


def scores_with(**changes: object) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        ids = train_ids(root)
        rows = [{"question_id": ids[i // 2], "path_id": f"{ids[i // 2]}/it1/{i:03d}",
                 "text": "t", "outcome": bool(i % 2), "step_scores": [0.5], "reward": i / 10,
                 "iteration": 1} for i in range(4)]
        table("data/it1/scores.parquet", changed(rows, changes))(root)
    return setup


def labels_with(**changes: object) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        ids = train_ids(root)
        rows = [{"path_id": f"{ids[0]}/it1/000", "question_id": ids[0], "step_index": j,
                 "step": "1+1=2", "n_correct": 1, "k": 2, "hard": True, "soft": 0.5}
                for j in range(3)]
        table("data/it1/step_labels.parquet", changed(rows, changes))(root)
    return setup


def prefs_with(**changes: object) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        ids = train_ids(root)
        rows = [{"question_id": ids[i], "prompt": "p", "chosen": "c", "rejected": "r",
                 "chosen_path_id": f"{ids[i]}/a", "rejected_path_id": f"{ids[i]}/b",
                 "chosen_reward": 0.9, "rejected_reward": 0.1, "chosen_outcome": True,
                 "rejected_outcome": False, "iteration": 1} for i in range(3)]
        table("data/it1/prefs.parquet", changed(rows, changes))(root)
    return setup


def a_file_at(path: str) -> Callable[[Path], None]:
    """A plain file where a stage wants a directory: its outputs cannot be written."""
    def setup(root: Path) -> None:
        target = root / path
        if target.is_dir():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("in the way\n")
    return setup


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        for step in setups:
            step(root)
    return setup


LOOP1 = ("--iteration", "1")
POLICY = ("--policy", "models/sft")
TRAIN_FILE, SAMPLES = "train.jsonl", "data/it1/samples.parquet"
SCORES, LABELS, PREFS = "data/it1/scores.parquet", "data/it1/step_labels.parquet", \
    "data/it1/prefs.parquet"

CASES = [
    # params.yaml
    Case("params: a key given twice", edit_params("prefs:\n", "prefs:\n  margin: 0.2\n"),
         ("prefs", *LOOP1), ("params.yaml", "duplicate key 'margin'")),
    Case("params: margin .inf", edit_params(r"margin: \S+", "margin: .inf"),
         ("prefs", *LOOP1), ("params.yaml", "prefs.margin", "finite")),
    Case("params: a learning rate .nan", edit_params(r"learning_rate: \S+", "learning_rate: .nan"),
         ("sft",), ("params.yaml", "align.learning_rate", "finite")),
    Case("params: an unknown key", edit_params("prefs:\n", "prefs:\n  margn: 0.2\n"),
         ("prefs", *LOOP1), ("params.yaml", "unknown parameter prefs.margn")),
    Case("params: text for an integer", edit_params(r"batch_size: \S+", "batch_size: four"),
         ("evaluate", "--model", "models/sft", "--name", "x"),
         ("params.yaml", "align.batch_size", "expected int")),
    Case("params: not YAML", raw_params("prefs: [\n"), ("prefs", *LOOP1),
         ("params.yaml", "not valid YAML")),
    Case("params: a list at the top", raw_params("- 1\n"), ("prepare",),
         ("params.yaml", "mapping")),
    Case("params: no file", lambda root: (root / "params.yaml").unlink(), ("prepare",),
         ("params.yaml", "no such params file")),
    # prepare: the jsonl task's files
    Case("jsonl: no train file", jsonl_task(None), ("prepare",), (TRAIN_FILE, "cannot read")),
    Case("jsonl: an empty train file", jsonl_task(""), ("prepare",),
         (TRAIN_FILE, "train split is empty")),
    Case("jsonl: only blank lines", jsonl_task("\n  \n\n"), ("prepare",),
         (TRAIN_FILE, "train split is empty")),
    Case("jsonl: an empty test file", jsonl_task(good_rows(), test=""), ("prepare",),
         ("test.jsonl", "test split is empty")),
    Case("jsonl: answer-only training data",
         jsonl_task('{"question": "q", "answer": "1"}\n'), ("prepare",),
         (TRAIN_FILE, "row 1", "field 'solution'", "gold solution")),
    Case("jsonl: no solution field configured", jsonl_task(good_rows(), solution_field=""),
         ("prepare",), (TRAIN_FILE, "row 1", "gold solution")),
    Case("jsonl: a row that is not JSON", jsonl_task(good_rows() + "{oops\n"), ("prepare",),
         (TRAIN_FILE, "row 5", "invalid JSON")),
    Case("jsonl: a row that is a list", jsonl_task(good_rows() + "[1, 2]\n"), ("prepare",),
         (TRAIN_FILE, "row 5", "expected a JSON object")),
    Case("jsonl: no question", jsonl_task('{"answer": "1", "solution": "The answer is 1"}\n'),
         ("prepare",), (TRAIN_FILE, "row 1", "field 'question'", "missing")),
    Case("jsonl: a blank question", jsonl_task(good_rows((2, "question", "  "))), ("prepare",),
         (TRAIN_FILE, "row 3", "field 'question'", "empty")),
    Case("jsonl: a word for an answer", jsonl_task(good_rows((1, "answer", "three"))),
         ("prepare",), (TRAIN_FILE, "row 2", "field 'answer'", "expected a number")),
    Case("jsonl: a solution ending on another answer",
         jsonl_task(good_rows((0, "solution", "The answer is 7"))), ("prepare",),
         (TRAIN_FILE, "row 1", "field 'solution'", "answer field is 0")),
    Case("jsonl: a duplicate id", jsonl_task(good_rows((0, "id", "a"), (1, "id", "a")),
                                             id_field="id"), ("prepare",),
         (TRAIN_FILE, "row 2", "duplicate id 'a'")),
    Case("jsonl: not UTF-8", jsonl_task(b'{"question": "\xff", "answer": "1"}\n'),
         ("prepare",), (TRAIN_FILE, "row 1", "UTF-8")),
    Case("jsonl: a corrupt .gz", both(
        lambda root: (root / "train.jsonl.gz").write_bytes(b"not gzip"),
        params(prepare={"task": "jsonl", "jsonl": {"train": "train.jsonl.gz",
                                                   "test": "train.jsonl.gz"}})),
         ("prepare",), ("train.jsonl.gz", "cannot read")),
    Case("jsonl: no test file named", params(prepare={"task": "jsonl", "jsonl": {
        "train": "train.jsonl"}}), ("prepare",), ("prepare.jsonl", "test")),
    # prepare: the other tasks' files
    Case("mbpp: no such file", params(prepare={"task": "mbpp", "prompt_style": "code", "mbpp": {
        "path": "absent/mbpp.jsonl"}}), ("prepare",), ("absent/mbpp.jsonl", "cannot read")),
    Case("gsm8k: no out-of-domain file", both(
        jsonl_task(good_rows()), params(prepare={"task": "gsm8k", "gsm8k": {
            "source": "gsm", "ood_path": "absent/mmlu.jsonl"}}),
        lambda root: ((root / "gsm").mkdir(), shutil.copy(root / "train.jsonl", root / "gsm"),
                      shutil.copy(root / "test.jsonl", root / "gsm"))),
         ("prepare",), ("gsm/train.jsonl",)),
    # base: the policy named in params
    Case("model: no such directory", params(model={"policy": "./no/such/model"}), ("base",),
         ("model.policy", "./no/such/model", "no such directory")),
    Case("model: no such GGUF file", params(model={"policy": "absent.gguf"}), ("base",),
         ("model.policy", "absent.gguf", "does not exist")),
    Case("model: a package that is not installed", params(model={
        "policy": "package:no_such_pkg/x.gguf"}), ("base",), ("model.policy", "no_such_pkg")),
    Case("model: a directory with no model in it", both(
        params(model={"policy": "./empty"}), lambda root: (root / "empty").mkdir()), ("base",),
         ("model.policy", "cannot load ./empty")),
    # the prepared splits
    Case("prepared: no train split", lambda root: (root / "data/prepared/train.parquet").unlink(),
         ("base",), ("data/prepared/train.parquet", "no such file")),
    Case("prepared: a null id", table("data/prepared/train.parquet", id=pa.array([None, "b"], pa.string()),
                                      question=pa.array(["q", "q"]), answer=pa.array(["1", "2"]),
                                      solution=pa.array(["s", "s"]), prompt=pa.array(["p", "p"])),
         ("sft",), ("data/prepared/train.parquet", "row 1", "field 'id'", "null")),
    Case("prepared: answers stored as numbers", table(
        "data/prepared/train.parquet", id=pa.array(["a"]), question=pa.array(["q"]),
        answer=pa.array([1]), solution=pa.array(["s"]), prompt=pa.array(["p"])),
         ("base",), ("data/prepared/train.parquet", "row 1", "field 'answer'", "expected text")),
    Case("prepared: not Parquet", lambda root: (root / "data/prepared/test.parquet").write_text(
        "id,question\n"), ("sft",), ("data/prepared/test.parquet", "not a readable Parquet")),
    # loop tables
    Case("samples: steps stored as text", samples_with(steps="1+1=2"), ("simulate", *LOOP1,
         *POLICY), (SAMPLES, "row 1", "field 'steps'", "expected a list of text")),
    Case("samples: a null question id", samples_with(question_id=None), ("score", *LOOP1, *POLICY),
         (SAMPLES, "row 2", "field 'question_id'", "null")),
    Case("samples: an unknown question id", samples_with(question_id="nope"),
         ("simulate", *LOOP1, *POLICY), (SAMPLES, "row 2", "field 'question_id'", "'nope'")),
    Case("samples: a path id twice", lambda root: table(SAMPLES, samples(root) + samples(root)[:1])(
        root), ("score", *LOOP1, *POLICY), (SAMPLES, "row 4", "field 'path_id'", "duplicate")),
    Case("samples: no outcome column", lambda root: table(SAMPLES, [
        {k: v for k, v in r.items() if k != "outcome"} for r in samples(root)])(root),
         ("simulate", *LOOP1, *POLICY), (SAMPLES, "field 'outcome'", "missing column")),
    Case("samples: outcome stored as text", samples_with(outcome="yes"),
         ("score", *LOOP1, *POLICY), (SAMPLES, "row 1", "field 'outcome'", "true/false")),
    Case("samples: a null step inside the list", samples_with(steps=["a", None]),
         ("simulate", *LOOP1, *POLICY), (SAMPLES, "row 2", "field 'steps'", "null inside")),
    Case("pool: steps of numbers for iteration 2", lambda root: table(
        SAMPLES, [{**r, "steps": [1, 2]} for r in samples(root)])(root),
         ("sample", "--iteration", "2", *POLICY), (SAMPLES, "row 1", "field 'steps'")),
    Case("scores: a reward stored as text", scores_with(reward="0.5"), ("prefs", *LOOP1),
         (SCORES, "row 1", "field 'reward'", "expected a number")),
    Case("scores: a null reward", scores_with(reward=None), ("prefs", *LOOP1),
         (SCORES, "row 2", "field 'reward'", "null")),
    Case("scores: an unknown question id", scores_with(question_id="nope"), ("prefs", *LOOP1),
         (SCORES, "row 2", "field 'question_id'", "unknown id")),
    Case("scores: not Parquet", lambda root: (
        (root / "data/it1").mkdir(parents=True, exist_ok=True),
        (root / SCORES).write_bytes(b"PAR1 nonsense")), ("prefs", *LOOP1),
         (SCORES, "not a readable Parquet")),
    Case("step labels: soft label as text", labels_with(soft="half"), ("train_prm", *LOOP1,
         *POLICY), (LABELS, "row 1", "field 'soft'", "expected a number")),
    Case("step labels: an unknown question id", labels_with(question_id="nope"),
         ("train_prm", *LOOP1, *POLICY), (LABELS, "row 2", "field 'question_id'")),
    Case("step labels: a null step index", labels_with(step_index=None),
         ("train_prm", *LOOP1, *POLICY), (LABELS, "row 2", "field 'step_index'", "null")),
    Case("prefs: a null chosen path", prefs_with(chosen=None), ("align", *LOOP1, *POLICY),
         (PREFS, "row 2", "field 'chosen'", "null")),
    Case("prefs: an unknown question id", prefs_with(question_id="nope"), ("control", *LOOP1),
         (PREFS, "row 2", "field 'question_id'", "unknown id")),
    Case("prefs: rewards as text", prefs_with(chosen_reward="high"), ("align", *LOOP1, *POLICY),
         (PREFS, "row 1", "field 'chosen_reward'")),
    # outputs that cannot be written
    Case("output: data/prepared under a file", a_file_at("data"), ("prepare",),
         ("data/prepared", "cannot write")),
    Case("output: the metrics dir is a file", both(scores_with(), a_file_at("metrics")),
         ("prefs", *LOOP1), ("metrics", "cannot write")),
    Case("output: the model dir is a file", a_file_at("models"), ("base",),
         ("models/base", "cannot write")),
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A project with params.yaml and data/prepared (seconds: no model)."""
    root = tmp_path_factory.mktemp("prepared")
    tiny_params(root / "params.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = run("prepare")
    assert result.exit_code == 0, result.output
    return root


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_input_is_one_clear_line_and_writes_nothing(case, prepared, tmp_path, monkeypatch):
    root = tmp_path / "project"
    shutil.copytree(prepared, root)
    case.setup(root)
    before = files(root)
    monkeypatch.chdir(root)
    result = run(*case.command)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"a traceback, not an error line:\n{result.output}\n{result.exception!r}"
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for expected in case.expect:
        assert expected in errors[0], (expected, errors[0])
    assert files(root) == before, "the stage wrote or changed files"


def test_the_suite_covers_every_input_class():
    """At least a case for each kind of input the issue names (a guard against shrinking)."""
    names = " ".join(case.name for case in CASES)
    for kind in ("params:", "jsonl:", "mbpp:", "gsm8k:", "model:", "prepared:", "samples:",
                 "pool:", "scores:", "step labels:", "prefs:", "output:"):
        assert kind in names, kind
    assert len(CASES) >= 50


def test_an_integer_answer_above_two_to_the_53_stays_exact(tmp_path, monkeypatch):
    big = 2**53 + 1
    (tmp_path / "train.jsonl").write_text(
        f'{{"question": "q", "answer": "{big}", "solution": "The answer is {big}"}}\n')
    tiny_params(tmp_path / "params.yaml", prepare={"task": "jsonl", "jsonl": {
        "train": "train.jsonl", "test": "train.jsonl"}})
    monkeypatch.chdir(tmp_path)
    assert run("prepare").exit_code == 0
    answer = pq.read_table("data/prepared/train.parquet").column("answer").to_pylist()[0]
    assert answer == str(big)
