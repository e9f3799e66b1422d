import csv
import io
import json
from pathlib import Path

import pytest

from sipf.analysis import query
from sipf.errors import ConfigError, DataError
from sipf.analysis.query import VIEWS, connect, run_query
from sipf.storage import write_parquet


def sample(question: str, n: int, outcome: bool, iteration: int) -> dict:
    return {"question_id": question, "path_id": f"{question}/it{iteration}/{n:03d}",
            "text": f"step one\nThe answer is {n}", "steps": ["step one"], "answer": str(n),
            "outcome": outcome, "iteration": iteration, "generator": "m"}


def label(path_id: str, step_index: int, hard: bool, oracle: bool | None) -> dict:
    return {"path_id": path_id, "question_id": path_id.split("/")[0], "step_index": step_index,
            "step": "2+2=<<2+2=4>>4", "n_correct": 3 if hard else 0, "k": 4, "hard": hard,
            "soft": 0.75 if hard else 0.0, "oracle": oracle}


def pref(question: str, chosen: float, rejected: float, iteration: int) -> dict:
    return {"question_id": question, "prompt": "Q?", "chosen": "a", "rejected": "b",
            "chosen_path_id": f"{question}/c", "rejected_path_id": f"{question}/r",
            "chosen_reward": chosen, "rejected_reward": rejected, "chosen_outcome": True,
            "rejected_outcome": False, "iteration": iteration}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    write_parquet([sample("q1", 0, True, 1), sample("q1", 1, False, 1),
                   sample("q2", 0, True, 1), sample("q2", 1, True, 1)],
                  data / "it1/samples.parquet")
    # Iteration 2's pool keeps an iteration-1 path next to its new ones.
    write_parquet([sample("q1", 0, True, 1), sample("q1", 0, False, 2)],
                  data / "it2/samples.parquet")
    write_parquet([{"path_id": "q1/it1/000", "question_id": "q1", "step_index": 0,
                    "rollout_index": 0, "completion": "x", "answer": "4", "correct": True}],
                  data / "it1/rollouts.parquet")
    write_parquet([label("q1/it1/000", 0, True, True), label("q1/it1/000", 1, True, False),
                   label("q1/it1/001", 0, False, None)], data / "it1/step_labels.parquet")
    write_parquet([label("q1/it2/000", 0, False, True)], data / "it2/step_labels.parquet")
    write_parquet([{"question_id": "q1", "path_id": "q1/it1/000", "text": "t", "reward": 0.9,
                    "outcome": True}], data / "it1/scores.parquet")
    write_parquet([pref("q1", 0.9, 0.1, 1), pref("q2", 0.5, 0.35, 1)], data / "it1/prefs.parquet")
    write_parquet([pref("q1", 0.8, 0.6, 2)], data / "it2/prefs.parquet")
    for model, correct in (("base", False), ("sft", True), ("sipf-it2", True)):
        write_parquet([{"split": "test", "id": "t1", "correct": correct}],
                      data / "predictions" / f"{model}.parquet")
    (data / "items").mkdir()  # an it* folder that is no iteration
    write_parquet([sample("q9", 0, True, 9)], data / "items" / "samples.parquet")
    return tmp_path


def rows(root: Path, sql: str) -> list[dict]:
    return json.loads(run_query(sql, root, "json"))


def test_every_view_exists_with_its_iteration(project):
    con = connect(project)
    for view in VIEWS:
        assert "iteration" in [c[0] for c in con.execute(f"DESCRIBE {view}").fetchall()], view
    counts = dict(con.execute("SELECT iteration, count(*) FROM samples GROUP BY 1").fetchall())
    assert counts == {1: 4, 2: 2}  # data/items is ignored
    assert con.execute("SELECT count(*) FROM rollouts").fetchone() == (1,)
    assert con.execute("SELECT DISTINCT iteration FROM scores").fetchall() == [(1,)]


def test_a_files_own_iteration_column_is_kept_apart(project):
    got = rows(project, "SELECT iteration, file_iteration, outcome FROM samples "
                        "WHERE iteration = 2 ORDER BY file_iteration")
    assert got == [{"iteration": 2, "file_iteration": 1, "outcome": True},
                   {"iteration": 2, "file_iteration": 2, "outcome": False}]


def test_predictions_carry_model_and_iteration(project):
    got = rows(project, "SELECT model, iteration, correct FROM predictions ORDER BY model")
    assert got == [{"model": "base", "iteration": None, "correct": False},
                   {"model": "sft", "iteration": 0, "correct": True},
                   {"model": "sipf-it2", "iteration": 2, "correct": True}]


def test_docstring_queries_run(project):
    accuracy, disagreeing, gaps = [block.split(";")[0] for block in
                                   query.__doc__.split("Useful queries::")[1].split("--")[1:]]
    assert rows(project, accuracy.split("\n", 1)[1]) == [
        {"iteration": 1, "paths": 4, "accuracy": 0.75},
        {"iteration": 2, "paths": 2, "accuracy": 0.5}]
    got = rows(project, disagreeing.split("\n", 1)[1])
    assert [(r["iteration"], r["path_id"], r["step_index"]) for r in got] == [
        (1, "q1/it1/000", 1), (2, "q1/it2/000", 0)]
    got = rows(project, gaps.split("\n", 1)[1])
    assert got == [{"iteration": 1, "gap_from": 0.1, "pairs": 1},
                   {"iteration": 1, "gap_from": 0.8, "pairs": 1},
                   {"iteration": 2, "gap_from": 0.2, "pairs": 1}]


def test_formats(project):
    sql = "SELECT iteration, path_id, text, outcome FROM samples WHERE iteration = 2 " \
          "ORDER BY path_id"
    table = run_query(sql, project, "table").splitlines()
    assert table[0].split() == ["iteration", "path_id", "text", "outcome"]
    assert set(table[1]) == {"-", " "}
    assert table[2].startswith("        2  q1/it1/000  step one\\nThe answer is 0  true")
    assert table[-1] == "(2 rows)"
    assert len({len(line) for line in table[:2]}) == 1  # header and rule line up

    parsed = list(csv.DictReader(io.StringIO(run_query(sql, project, "csv"))))
    assert parsed[0]["text"] == "step one\nThe answer is 0" and parsed[1]["outcome"] == "False"

    assert json.loads(run_query(sql, project, "json"))[1] == {
        "iteration": 2, "path_id": "q1/it2/000", "text": "step one\nThe answer is 0",
        "outcome": False}
    lists = json.loads(run_query("SELECT steps FROM samples LIMIT 1", project, "json"))
    assert lists == [{"steps": ["step one"]}]


def test_errors_are_clear(project, tmp_path):
    with pytest.raises(DataError, match="query failed: Parser Error: syntax error"):
        run_query("SELEC iteration FROM samples", project)
    with pytest.raises(DataError, match="Referenced column \"nope\" not found"):
        run_query("SELECT nope FROM samples", project)
    with pytest.raises(ConfigError, match="format: 'xml'"):
        run_query("SELECT 1", project, "xml")
    empty = tmp_path / "fresh"
    empty.mkdir()
    with pytest.raises(DataError, match=r"view 'prefs' has no data yet: no file matches "
                                        r"data/it\*/prefs.parquet"):
        run_query("SELECT count(*) FROM prefs", empty)
    (project / "data" / "it3").mkdir()
    (project / "data" / "it3" / "scores.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="it3/scores.parquet: not a readable Parquet file"):
        connect(project)
