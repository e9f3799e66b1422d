"""One iteration of the loop through its stage entry points, on a tiny model.

A model trained for seconds never answers right, so the iteration starts from
hand-made samples (tests.helpers.hand_sampled_project). Everything after sampling runs
for real.
"""

import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.helpers import hand_sampled_project, run, tiny_params, wall_time_keys

# search all: every step rolled out, so every label row has k = 2
LOOP = {"simulate": {"k": 2, "max_paths": 0, "max_new_tokens": 16, "batch_size": 16,
                     "search": "all"},
        "prm": {"epochs": 1, "batch_size": 8, "val_fraction": 0.25},
        # A PRM trained for seconds barely separates paths: any positive gap makes a pair.
        "prefs": {"margin": 1e-9, "require_outcome": False},
        "align": {"max_steps": 2, "batch_size": 4, "logging_steps": 1},
        "sample": {"question_limit": 3, "per_round": 2, "max_rounds": 1, "max_new_tokens": 16}}


@pytest.fixture(scope="module")
def iteration(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        tiny_params(root / "params.yaml", **LOOP)
        hand_sampled_project()
        results = {name: run(*args) for name, args in [
            ("simulate", ["simulate", "--iteration", "1", "--policy", "models/sft"]),
            ("train_prm", ["train_prm", "--iteration", "1", "--policy", "models/sft"]),
            ("score", ["score", "--iteration", "1", "--policy", "models/sft"]),
            ("prefs", ["prefs", "--iteration", "1"]),
            ("align", ["align", "--iteration", "1", "--policy", "models/sft"]),
            ("evaluate", ["evaluate", "--model", "models/it1/policy", "--name", "it1"]),
            ("control", ["control", "--iteration", "1"])]}
    return root, results


def test_every_loop_stage_succeeds(iteration):
    _, results = iteration
    for name, result in results.items():
        assert result.exit_code == 0, f"{name}: {result.output}"


def test_simulation_keeps_every_rollout_and_measures_against_the_oracle(iteration):
    root, _ = iteration
    labels = pq.read_table(root / "data/it1/step_labels.parquet").to_pylist()
    rollouts = pq.read_table(root / "data/it1/rollouts.parquet").to_pylist()
    assert {"path_id", "step_index", "completion", "answer", "correct"} <= set(rollouts[0])
    assert all(row["k"] == 2 for row in labels)
    # The corrupted first step is wrong and every gold step right, by the oracle.
    by_path = {(r["path_id"], r["step_index"]): r["oracle"] for r in labels}
    assert all(by_path[(p, 0)] is (p.endswith("/000")) for p, _ in by_path)
    metrics = json.loads((root / "metrics/it1/simulate.json").read_text())
    assert metrics["steps"] == len(labels)
    assert 0.0 <= metrics["against_oracle"]["hard_accuracy"] <= 1.0


def test_prm_scores_and_pairs(iteration):
    root, _ = iteration
    prm = json.loads((root / "metrics/it1/prm.json").read_text())
    assert prm["best_epoch"] == 1
    scores = pq.read_table(root / "data/it1/scores.parquet").to_pylist()
    assert len(scores) == 16
    assert all(len(s["step_scores"]) >= 1 and 0.0 <= s["reward"] <= 1.0 for s in scores)
    score = json.loads((root / "metrics/it1/score.json").read_text())
    assert "prm_step_accuracy_vs_oracle" in score
    assert 0.0 <= score["right_above_wrong"] <= 1.0  # every question has a right and a wrong
    # the PRM names the questions it trained on; score also reports on the others' paths
    meta = json.loads((root / "models/it1/prm/prm.json").read_text())
    labelled = {r["question_id"]
                for r in pq.read_table(root / "data/it1/step_labels.parquet").to_pylist()}
    assert set(meta["questions"]) == labelled
    assert "unseen_paths" not in score  # every question here was labelled
    pairs = pq.read_table(root / "data/it1/prefs.parquet").to_pylist()
    assert pairs and all(p["chosen_reward"] - p["rejected_reward"] >= 1e-9 for p in pairs)
    assert all(p["iteration"] == 1 and p["prompt"].startswith("Q: ") for p in pairs)


def test_score_reports_apart_the_questions_the_prm_never_trained_on(iteration, tmp_path,
                                                                     monkeypatch):
    """The PRM's own training paths flatter it: score gives the same metrics again over
    the paths of questions its prm.json does not list (here, in a copy of the project,
    as if it had trained on one question only)."""
    import shutil
    root = tmp_path / "project"
    shutil.copytree(iteration[0], root)
    monkeypatch.chdir(root)
    meta_file = root / "models/it1/prm/prm.json"
    meta = json.loads(meta_file.read_text())
    kept = sorted(meta["questions"])[:1]
    meta_file.write_text(json.dumps({**meta, "questions": kept}))
    result = run("score", "--iteration", "1", "--policy", "models/sft")
    assert result.exit_code == 0, result.output
    scores = pq.read_table(root / "data/it1/scores.parquet").to_pylist()
    unseen = [s for s in scores if s["question_id"] not in kept]
    score = json.loads((root / "metrics/it1/score.json").read_text())
    assert 0 < score["unseen_paths"] == len(unseen) < len(scores)
    # every question has a right and a wrong path, so each ranking is measured
    for key in ("unseen_right_above_wrong", "unseen_likelihood_right_above_wrong",
                "unseen_step_auc_within_question_and_index"):
        assert 0.0 <= score[key] <= 1.0
    assert f"on the {len(unseen)} paths of questions the PRM never saw" in result.output


def test_align_writes_a_loadable_adapter_and_logs_log_probabilities(iteration):
    root, _ = iteration
    policy = root / "models/it1/policy"
    assert (policy / "adapter_config.json").is_file()
    assert json.loads((policy / "parent.json").read_text()) == {"parent": "models/sft"}
    logged = (root / "metrics/it1/align/plots/metrics/logps").iterdir()
    assert {p.name for p in logged} >= {"chosen.tsv", "rejected.tsv"}
    assert json.loads((root / "metrics/eval/it1.json").read_text())["test"]["total"] == 6


def test_control_trains_the_same_budget_on_gold_solutions(iteration):
    root, _ = iteration
    pairs = pq.read_table(root / "data/it1/prefs.parquet").to_pylist()
    control = json.loads((root / "metrics/it1/control.json").read_text())
    assert control == {"examples": len(pairs),
                       "questions": len({p["question_id"] for p in pairs})}
    adapter = root / "models/it1/control"
    assert (adapter / "adapter_config.json").is_file()
    assert json.loads((adapter / "parent.json").read_text()) == {"parent": "models/sft"}


def test_tracked_metrics_hold_no_wall_time(iteration):
    root, _ = iteration
    assert (root / "metrics/it1/align/metrics.json").is_file()
    assert wall_time_keys(root / "metrics") == []
    # dvclive's params.yaml (committed with metrics/) names no per-run scratch directory
    logged = sorted((root / "metrics").rglob("params.yaml"))
    assert logged and not [p for p in logged if "output_dir" in p.read_text()
                           or "/tmp" in p.read_text()]


def test_prm_select_ranking_picks_the_epoch_on_questions_simulate_did_not_label(
        iteration, tmp_path, monkeypatch):
    """prm.select 'ranking' (in a copy of the project, with three questions' step labels
    dropped): the kept epoch is picked by ranking the pool's paths of two of them; those
    count as seen, so score's unseen_* metrics are left with the third."""
    import shutil
    from sipf.storage import read_parquet, write_parquet
    root = tmp_path / "project"
    shutil.copytree(iteration[0], root)
    monkeypatch.chdir(root)
    labels = read_parquet("data/it1/step_labels.parquet")
    questions = sorted({r["question_id"] for r in labels})
    simulated, left = set(questions[:-3]), questions[-3:]
    write_parquet([r for r in labels if r["question_id"] in simulated],
                  "data/it1/step_labels.parquet")
    prm = {**LOOP["prm"], "select": "ranking", "select_questions": 2}
    tiny_params(root / "params.yaml", **{**LOOP, "prm": prm})
    result = run("train_prm", "--iteration", "1", "--policy", "models/sft")
    assert result.exit_code == 0, result.output
    metrics = json.loads((root / "metrics/it1/prm.json").read_text())
    assert metrics["select"] == "ranking" and metrics["start"]["epoch"] == 0
    assert (metrics["ranking_questions"], metrics["ranking_paths"]) == (2, 4)
    assert metrics["best_epoch"] in (0, 1)
    assert (f"right above wrong {metrics['val_ranking']:.1%} on 2 unsimulated questions' "
            "4 paths") in result.output
    seen = set(json.loads((root / "models/it1/prm/prm.json").read_text())["questions"])
    assert simulated < seen and len(seen - simulated) == 2 and seen - simulated < set(left)
    result = run("score", "--iteration", "1", "--policy", "models/sft")
    assert result.exit_code == 0, result.output
    assert json.loads((root / "metrics/it1/score.json").read_text())["unseen_paths"] == 2


def test_sample_at_iteration_2_grows_the_pool_of_iteration_1(iteration, monkeypatch):
    root, _ = iteration
    monkeypatch.chdir(root)
    result = run("sample", "--iteration", "2", "--policy", "models/it1/policy")
    assert result.exit_code == 0, result.output
    earlier = pq.read_table(root / "data/it1/samples.parquet").to_pylist()
    pool = pq.read_table(root / "data/it2/samples.parquet").to_pylist()
    assert pool[:len(earlier)] == earlier  # D_1 kept whole, in order
    fresh = pool[len(earlier):]
    assert all(row["iteration"] == 2 and "/it2/" in row["path_id"] for row in fresh)
    summary = json.loads((root / "metrics/it2/sample.json").read_text())
    assert summary["pool_paths"] == len(pool) and summary["new_paths"] >= len(fresh)
    assert wall_time_keys(root / "metrics/it2") == []
    assert "new paths (" in result.output and f"pool {len(pool)} paths" in result.output


def test_empty_preference_set_fails_clearly_and_writes_nothing(iteration, monkeypatch):
    root, _ = iteration
    monkeypatch.chdir(root)
    tiny_params(root / "strict.yaml", **{**LOOP, "prefs": {"margin": 1.5}})
    result = run("prefs", "--iteration", "1", "--params", "strict.yaml")
    assert result.exit_code == 1
    assert "no preference pairs" in result.output
    assert (root / "data/it1/prefs.parquet").stat().st_size > 0  # the earlier file untouched


def test_broken_prm_checkpoint_and_missing_simulator_are_named(iteration, monkeypatch):
    root, _ = iteration
    monkeypatch.chdir(root)
    (root / "models/it3/prm").mkdir(parents=True)
    (root / "data/it3").mkdir()
    (root / "data/it3/samples.parquet").write_bytes(
        (root / "data/it1/samples.parquet").read_bytes())
    result = run("score", "--iteration", "3", "--policy", "models/sft")
    assert result.exit_code == 1 and "models/it3/prm" in result.output
    tiny_params(root / "sim.yaml", **{**LOOP, "simulate": {"simulator": "./no/such/model"}})
    result = run("simulate", "--iteration", "3", "--policy", "models/sft", "--params", "sim.yaml")
    assert result.exit_code == 1
    assert "simulate.simulator: ./no/such/model is not a model directory" in result.output
    assert not (root / "data/it3/rollouts.parquet").exists()


def test_every_table_has_the_columns_the_layout_lists(iteration):
    from sipf import layout
    from sipf.storage import read_table

    root, _ = iteration
    it = layout.Iteration(1)
    extra = {"step_labels": ("oracle",)}  # arith has a step oracle
    for name in ("samples", "rollouts", "step_labels", "scores", "prefs"):
        columns = tuple(pq.read_schema(root / it.table(name)).names)
        assert columns == layout.TABLES[name] + extra.get(name, ()), name
        # and every column has the kind the schema says (read_table raises otherwise)
        assert read_table(root / it.table(name), layout.SCHEMAS[name],
                          layout.OPTIONAL_COLUMNS.get(name)), name
    assert read_table(root / layout.predictions("it1"), layout.SCHEMAS["predictions"])
    assert tuple(pq.read_schema(root / layout.predictions("it1")).names) == \
        layout.TABLES["predictions"]
    for split in layout.SPLITS:
        assert tuple(pq.read_schema(root / layout.split_file(split)).names) == \
            layout.TABLES["prepared"]
    # every output the layout declares for the stages that ran exists
    for stage in ("simulate", "train_prm", "score", "prefs", "align", "control"):
        for out in it.outputs(stage):
            assert (root / out).exists(), out


def test_likelihood_prm_trains_nothing_and_scores_with_the_policy(iteration, monkeypatch):
    """prm.kind likelihood: train_prm writes only a marker, score reads the policy's own
    token probabilities (iteration 3: a copy of iteration 1's paths)."""
    from sipf.models import load_policy, load_tokenizer
    from sipf.config import load_params
    from sipf.pipeline.prm import likelihood_step_scores
    from sipf.stages.common import train_records_by_id

    root, _ = iteration
    monkeypatch.chdir(root)
    (root / "data/it3").mkdir(exist_ok=True)
    for table in ("samples", "step_labels"):
        (root / f"data/it3/{table}.parquet").write_bytes(
            (root / f"data/it1/{table}.parquet").read_bytes())
    tiny_params(root / "likelihood.yaml", **{**LOOP, "prm": {"kind": "likelihood"}})
    for stage in ("train_prm", "score"):
        result = run(stage, "--iteration", "3", "--policy", "models/sft",
                     "--params", "likelihood.yaml")
        assert result.exit_code == 0, result.output
    assert [p.name for p in (root / "models/it3/prm").iterdir()] == ["prm.json"]
    assert json.loads((root / "metrics/it3/prm.json").read_text())["train_steps"] == 0
    scores = pq.read_table(root / "data/it3/scores.parquet").to_pylist()
    _, prompts = train_records_by_id()
    params = load_params("likelihood.yaml")
    expected = likelihood_step_scores(
        load_policy("models/sft", "models/base", params.model, merged=True),
        load_tokenizer("models/base"), [prompts[s["question_id"]] for s in scores],
        [list(p["steps"]) for p in pq.read_table("data/it3/samples.parquet").to_pylist()],
        reduce=params.prm.likelihood)
    got = [s["step_scores"] for s in scores]
    assert [len(path) for path in got] == [len(path) for path in expected]
    assert sum(got, []) == pytest.approx(sum(expected, []), rel=1e-5)
    metrics = json.loads((root / "metrics/it3/score.json").read_text())
    assert metrics["prm_kind"] == "likelihood"


def test_prm_backbone_verifier_trains_from_the_verifier_stage_model(iteration, monkeypatch):
    """prm.backbone 'verifier': the verifier stage runs M0's SFT again, the same steps until
    M0's stop, then on to verifier.stop_at_accuracy, and train_prm starts from it; with any
    other backbone the stage writes only placeholders (iteration 2: iteration 1's labels)."""
    from safetensors.torch import load_file

    root, _ = iteration
    monkeypatch.chdir(root)
    result = run("verifier")  # params.yaml: prm.backbone 'policy'
    assert result.exit_code == 0, result.output
    assert "verifier: skipped (prm.backbone is 'policy', not 'verifier')" in result.output
    assert [p.name for p in (root / "models/verifier").iterdir()] == ["SKIPPED.json"]
    assert "skipped" in json.loads((root / "metrics/verifier/metrics.json").read_text())

    backbone = {"prm": {**LOOP["prm"], "backbone": "verifier"}}
    tiny_params(root / "no_stop.yaml", **{**LOOP, **backbone})  # tiny sft: no stop rule
    result = run("verifier", "--params", "no_stop.yaml")
    assert result.exit_code == 1
    assert "needs sft.stop_at_accuracy > 0" in result.output
    assert [p.name for p in (root / "models/verifier").iterdir()] == ["SKIPPED.json"]

    # M0's stop at 0.5 validation accuracy, never reached in 6 steps: its run and the
    # verifier's are the same steps, so the same weights
    tiny_params(root / "verifier.yaml",
                **{**LOOP, **backbone, "sft": {"stop_at_accuracy": 0.5, "val_questions": 5}})
    assert run("sft", "--params", "verifier.yaml", "--out", "models/sft_stop",
               "--live-dir", "metrics/sft_stop").exit_code == 0
    result = run("verifier", "--params", "verifier.yaml")
    assert result.exit_code == 0, result.output
    assert "verifier: trained on 43 solutions (M0's run, on to validation accuracy 1)" \
        in result.output
    assert all(point["val"] is not None
               for point in json.loads((root / "metrics/verifier/accuracy_curve.json").read_text()))
    verifier = load_file(root / "models/verifier/model.safetensors")
    m0 = load_file(root / "models/sft_stop/model.safetensors")
    assert set(verifier) == set(m0) and all((verifier[n] == m0[n]).all() for n in m0)
    base = load_file(root / "models/base/model.safetensors")
    assert any(not (verifier[n] == base[n]).all() for n in base)

    (root / "data/it2").mkdir(exist_ok=True)  # train_prm reads only the step labels
    (root / "data/it2/step_labels.parquet").write_bytes(
        (root / "data/it1/step_labels.parquet").read_bytes())
    result = run("train_prm", "--iteration", "2", "--policy", "models/it1/policy",
                 "--params", "verifier.yaml")
    assert result.exit_code == 0, result.output
    assert json.loads((root / "models/it2/prm/prm.json").read_text())["backbone"] == \
        "models/verifier"
