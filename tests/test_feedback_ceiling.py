"""benchmarks/feedback_ceiling.py: exact process and outcome rewards where `score` writes
them, and `prefs` making its pairs from them (hand-made samples: each question's gold
solution, right, and a copy whose first step is false, wrong)."""

import importlib.util
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sipf.layout import Iteration
from tests.helpers import hand_sampled_project, run, tiny_params

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "feedback_ceiling.py"
_SPEC = importlib.util.spec_from_file_location("feedback_ceiling", _PATH)
ceiling = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = ceiling
_SPEC.loader.exec_module(ceiling)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("ceiling")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        tiny_params(root / "params.yaml", prefs={"margin": 0.01, "require_outcome": True})
        hand_sampled_project(questions=4)
    return root


@pytest.mark.parametrize("feedback", ["process", "outcome"])
def test_exact_rewards_rank_gold_above_its_corrupted_copy(project, monkeypatch, feedback):
    monkeypatch.chdir(project)
    result = CliRunner().invoke(ceiling.main, ["--iteration", "1", "--feedback", feedback])
    assert result.exit_code == 0, result.output
    assert f"{feedback} rewards it1: 8 paths, mean reward right 1.000 (4)" in result.output
    rows = pq.read_table(project / Iteration(1).scores).to_pylist()
    by_path = {r["path_id"]: r for r in rows}
    for r in rows:
        if r["outcome"]:
            assert r["reward"] == 1.0 and all(s == 1.0 for s in r["step_scores"])
        else:
            assert r["step_scores"][0] == 0.0  # the corrupted step, whatever the feedback
            expected = 0.0 if feedback == "outcome" else sum(r["step_scores"]) / len(r["step_scores"])
            assert r["reward"] == pytest.approx(expected) and r["reward"] < 1.0
            assert by_path[r["path_id"][:-3] + "000"]["reward"] > r["reward"]
    prefs = run("prefs", "--iteration", "1")
    assert prefs.exit_code == 0, prefs.output
    pairs = pq.read_table(project / Iteration(1).prefs).to_pylist()
    # one pair a question: its gold solution over its corrupted copy
    assert sorted((p["chosen_path_id"][-3:], p["rejected_path_id"][-3:]) for p in pairs) == [
        ("000", "001")] * 4


def test_a_path_of_an_unknown_question_is_one_error_and_writes_nothing(project, monkeypatch):
    from sipf.storage import read_parquet, write_parquet

    monkeypatch.chdir(project)
    paths = read_parquet(Iteration(1).samples)
    paths[3] = {**paths[3], "question_id": "no-such-question"}
    write_parquet(paths, Iteration(2).samples)
    result = CliRunner().invoke(ceiling.main, ["--iteration", "2", "--feedback", "process"])
    assert result.exit_code == 1
    assert "unknown id 'no-such-question'" in result.output
    assert "row 4" in result.output and "question_id" in result.output
    assert "samples.parquet" in result.output
    assert not (project / Iteration(2).scores).exists()
