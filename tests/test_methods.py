"""Every method of the paper through the same loop stages (sipf.methods), on a tiny model.

Iteration 1 starts from hand-made samples (tests.helpers.hand_sampled_project): 8 questions,
each with its gold solution (right) and a copy with a wrong first step (wrong).
"""

import json
import shutil

import pyarrow.parquet as pq
import pytest

from sipf.config import METHOD_NAMES
from sipf.errors import ConfigError, DataError
from sipf.layout import LOOP_STAGES
from sipf.methods import METHODS, method_named
from sipf.pipeline.preferences import correct_path_rows, keep_top_correct, with_outcome_reward
from sipf.pipeline.simulation import outcome_labels
from tests.helpers import hand_sampled_project, run, tiny_params

LOOP = {"simulate": {"k": 2, "max_paths": 0, "max_new_tokens": 16, "batch_size": 16},
        "prm": {"epochs": 1, "batch_size": 8, "val_fraction": 0.25},
        "prefs": {"margin": 1e-9, "require_outcome": False},
        "align": {"max_steps": 2, "batch_size": 4, "logging_steps": 1}}
ITERATION_1 = [("simulate", "--policy", "models/sft"), ("train_prm", "--policy", "models/sft"),
               ("score", "--policy", "models/sft"), ("prefs",),
               ("align", "--policy", "models/sft"), ("control",)]


def path(qid, n, outcome, reward):
    return {"question_id": qid, "path_id": f"{qid}/{n}", "text": f"{qid} path {n}",
            "outcome": outcome, "reward": reward}


# ----------------------------------------------------------------------------- the table
def test_the_table_names_every_method_of_the_issue():
    assert list(METHODS) == ["cot", "sft", "rft", "prft", "star", "srf", "psrf", "rpo", "siof",
                             "sipf", "sipf_no_or", "sipf_no_pf_or"]
    with pytest.raises(ConfigError, match="method: 'dpo' is not one of cot, sft, rft"):
        method_named("dpo")


def test_the_table_lists_the_names_params_yaml_accepts():
    # sipf.config checks `method` against its own tuple, without importing the table
    assert tuple(METHODS) == METHOD_NAMES


def test_which_stages_each_method_runs():
    def runs(name, k):
        return [s for s in LOOP_STAGES if method_named(name).skip_reason(s, k) is None]

    assert runs("sipf", 3) == list(LOOP_STAGES)
    assert runs("siof", 1) == ["sample", "simulate", "train_prm", "score", "prefs", "align"]
    assert runs("rft", 1) == ["sample", "score", "prefs", "align"]
    assert runs("rft", 2) == runs("sft", 1) == runs("cot", 1) == []
    assert runs("star", 3) == ["sample", "score", "prefs", "align"]
    assert method_named("rpo").skip_reason("sample", 2) == "method rpo runs 1 iteration"


def test_star_samples_one_greedy_path_and_keeps_only_right_ones():
    from sipf.config import SampleConfig

    cfg = method_named("star").sample_config(SampleConfig(temperature=1.0, per_round=8))
    assert (cfg.temperature, cfg.per_round, cfg.max_rounds, cfg.n_correct, cfg.n_wrong) == \
        (0.0, 1, 1, 1, 0)
    assert method_named("rft").sample_config(SampleConfig()) == SampleConfig()


def test_unknown_method_in_params_fails_at_start_up(tmp_path):
    from sipf.config import load_params

    file = tiny_params(tmp_path / "params.yaml")
    file.write_text(file.read_text().replace("method: sipf", "method: ppo"))
    with pytest.raises(ConfigError, match="params.yaml: method: 'ppo' is not one of") as err:
        load_params(file)
    assert str(err.value).endswith(f"is not one of {', '.join(METHODS)}")
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- data rules
def test_reward_filter_keeps_the_top_fraction_of_correct_paths_and_every_wrong_one():
    paths = [path("a", 0, True, 0.2), path("a", 1, True, 0.9), path("a", 2, True, 0.5),
             path("a", 3, False, 0.95), path("b", 0, True, 0.1)]
    kept = keep_top_correct(paths, 0.5)
    # a: ceil(0.5 * 3) = 2 of 3 correct (rewards 0.9, 0.5); b: its single correct path.
    assert [p["path_id"] for p in kept] == ["a/1", "a/2", "a/3", "b/0"]


def test_correct_path_rows_are_sft_data_in_the_pairs_columns():
    paths = [path("b", 0, True, 1.0), path("a", 1, False, 0.0), path("a", 0, True, 1.0)]
    rows = correct_path_rows(paths, {"a": "Qa", "b": "Qb"}, iteration=2)
    assert [(r["question_id"], r["prompt"], r["chosen"], r["rejected"]) for r in rows] == \
        [("a", "Qa", "a path 0", ""), ("b", "Qb", "b path 0", "")]
    assert rows[0]["iteration"] == 2 and rows[0]["rejected_path_id"] is None


def test_outcome_reward_pairs_right_over_wrong_whatever_the_prm_said():
    from sipf.config import PrefsConfig
    from sipf.pipeline.preferences import build_pairs

    paths = [path("a", 0, True, 0.1), path("a", 1, False, 0.9)]
    with pytest.raises(DataError, match="no preference pairs"):  # by the PRM: wrong above right
        build_pairs(paths, {"a": "Q"}, PrefsConfig(), 1)
    pairs = build_pairs(with_outcome_reward(paths), {"a": "Q"}, PrefsConfig(), 1)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("a path 0", "a path 1")]


def test_outcome_labels_give_every_step_its_paths_outcome():
    labels = outcome_labels([{"path_id": "p", "question_id": "q", "steps": ["s1", "s2"],
                              "outcome": False},
                             {"path_id": "r", "question_id": "q", "steps": ["t1"],
                              "outcome": True}])
    assert [(r["path_id"], r["step_index"], r["step"], r["hard"], r["soft"]) for r in labels] == \
        [("p", 0, "s1", False, 0.0), ("p", 1, "s2", False, 0.0), ("r", 0, "t1", True, 1.0)]


# ----------------------------------------------------------------------------- stages
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """prepare, base and sft once; each method's test copies the project."""
    root = tmp_path_factory.mktemp("methods") / "project"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        tiny_params(root / "params.yaml", **LOOP)
        hand_sampled_project()
    return root


def run_iteration_1(project, tmp_path, monkeypatch, method):
    root = tmp_path / method
    shutil.copytree(project, root)
    monkeypatch.chdir(root)
    tiny_params(root / "params.yaml", **LOOP)
    (root / "params.yaml").write_text(
        (root / "params.yaml").read_text().replace("method: sipf", f"method: {method}"))
    for stage, *policy in ITERATION_1:
        result = run(stage, "--iteration", "1", *policy)
        assert result.exit_code == 0, f"{method} {stage}: {result.output}"
    return root


def read(root, name):
    return pq.read_table(root / name).to_pylist()


@pytest.mark.parametrize("method", ["rft", "prft", "srf", "rpo", "siof", "sipf_no_or"])
def test_each_method_trains_its_own_way(project, tmp_path, monkeypatch, method):
    root = run_iteration_1(project, tmp_path, monkeypatch, method)
    spec = method_named(method)
    prefs = read(root, "data/it1/prefs.parquet")
    labels = read(root, "data/it1/step_labels.parquet")
    scores = read(root, "data/it1/scores.parquet")
    if spec.feedback == "none":
        assert labels == [] and (root / "models/it1/prm/SKIPPED.json").is_file()
        assert {s["reward"] for s in scores} == {0.0, 1.0}
        assert all(s["reward"] == float(s["outcome"]) for s in scores)
    elif spec.feedback == "outcome":  # ORM labels: no rollouts, steps labelled by outcome
        assert read(root, "data/it1/rollouts.parquet") == []
        by_path = {s["path_id"]: s["outcome"] for s in read(root, "data/it1/samples.parquet")}
        assert labels and all(r["hard"] == by_path[r["path_id"]] for r in labels)
    if spec.data == "correct":  # SFT data: correct paths only, 8 questions x 1 right path
        assert all(p["chosen_outcome"] and p["rejected"] == "" for p in prefs)
        assert len(prefs) == 8  # one right path each; pRFT's filter keeps at least one
    elif spec.data == "outcome_pairs":
        assert len(prefs) == 8 and all(p["chosen_outcome"] and not p["rejected_outcome"]
                                       for p in prefs)
    logged = {p.name for p in (root / "metrics/it1/align/plots/metrics").rglob("*.tsv")}
    if spec.objective in ("orpo", "dpo", "rpo"):  # Figure 3's curves
        assert {"chosen.tsv", "rejected.tsv"} <= logged
    else:
        assert "loss.tsv" in logged
    assert (root / "models/it1/policy/adapter_config.json").is_file()
    assert (root / "models/it1/control/SKIPPED.json").is_file()  # only sipf has a control
    result = run("evaluate", "--model", "models/it1/policy", "--name", "it1")
    assert result.exit_code == 0, result.output
    assert json.loads((root / "metrics/eval/it1.json").read_text())["test"]["total"] == 6


def first_logged(root, metric):
    lines = (root / "metrics/it1/align/plots/metrics" / f"{metric}.tsv").read_text().splitlines()
    return float(lines[1].split("\t")[-1])  # header, then step 1 (before any update)


def test_dpo_starts_at_log_2_and_rpo_adds_the_chosen_nll(project, tmp_path, monkeypatch):
    import math

    srf = run_iteration_1(project, tmp_path, monkeypatch, "srf")
    rpo = run_iteration_1(project, tmp_path, monkeypatch, "rpo")
    # A fresh LoRA adapter leaves the policy equal to its reference (M0): -log sigmoid(0).
    assert first_logged(srf, "loss") == pytest.approx(math.log(2), abs=1e-4)
    # RPO: the same first batch (same pairs, same seed), so the same DPO term, plus the
    # chosen paths' per-token NLL under M0 (a tiny model trained 6 steps: nats per token).
    assert first_logged(rpo, "logps/chosen") == first_logged(srf, "logps/chosen") < 0
    assert first_logged(rpo, "loss") - math.log(2) > 0.5


def test_later_iterations_of_a_one_iteration_method_are_placeholders(project, tmp_path,
                                                                      monkeypatch):
    root = run_iteration_1(project, tmp_path, monkeypatch, "rft")
    for stage, *policy in [("sample", "--policy", "models/it1/policy"), *ITERATION_1[:5]]:
        result = run(stage, "--iteration", "2", *(policy and ["--policy", "models/it1/policy"]))
        assert result.exit_code == 0 and "skipped (method rft runs 1 iteration)" in result.output
    assert read(root, "data/it2/samples.parquet") == []
    assert json.loads((root / "metrics/it2/prefs.json").read_text()) == {
        "skipped": "method rft runs 1 iteration"}
    result = run("evaluate", "--model", "models/it2/policy", "--name", "it2")
    assert result.exit_code == 0 and "skipped" in result.output
    assert json.loads((root / "metrics/eval/it2.json").read_text()) == {
        "skipped": "method rft runs 1 iteration"}
    assert read(root, "data/predictions/it2.parquet") == []
