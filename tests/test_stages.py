"""The stage entry points end to end on a tiny configuration, and their failure modes."""

import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sipf.cli import main
from tests.helpers import tiny_params, wall_time_keys


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """prepare -> base -> sft -> evaluate in a scratch directory."""
    root = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        tiny_params(root / "params.yaml")
        results = {name: run(*args) for name, args in [
            ("prepare", ["prepare"]), ("base", ["base"]), ("sft", ["sft"]),
            ("evaluate", ["evaluate", "--model", "models/sft", "--name", "sft"])]}
    return root, results


def test_every_stage_succeeds(pipeline):
    _, results = pipeline
    for name, result in results.items():
        assert result.exit_code == 0, f"{name}: {result.output}"


def test_prepare_writes_every_split_with_prompts(pipeline):
    root, _ = pipeline
    counts = json.loads((root / "data/prepared/meta.json").read_text())["counts"]
    assert counts == {"train": 48, "test": 6, "ood": 4}
    table = pq.read_table(root / "data/prepared/train.parquet")
    assert table.column_names == ["id", "question", "answer", "solution", "prompt"]
    row = table.slice(0, 1).to_pylist()[0]
    assert row["prompt"] == f"Q: {row['question']}\nA:\n"


def test_sft_trains_and_logs_a_falling_loss(pipeline):
    root, _ = pipeline
    assert (root / "models/sft/model.safetensors").is_file()
    loss_rows = (root / "metrics/sft/plots/metrics/loss.tsv").read_text().splitlines()[1:]
    losses = [float(line.split("\t")[-1]) for line in loss_rows]
    assert len(losses) >= 3 and losses[-1] < losses[0]


def test_sft_logs_an_accuracy_curve_on_both_test_splits(pipeline):
    root, _ = pipeline
    # 48 problems in batches of 8 = 6 steps an epoch; a probe every half epoch, 3 questions.
    curve = json.loads((root / "metrics/sft/accuracy_curve.json").read_text())
    assert [point["step"] for point in curve] == [3, 6]
    assert all(point[split] in (0.0, 1 / 3, 2 / 3, 1.0) for point in curve
               for split in ("test", "ood"))
    logged = (root / "metrics/sft/plots/metrics/accuracy/test.tsv").read_text().splitlines()
    assert len(logged) == 1 + len(curve)


def test_sft_holds_out_validation_questions_for_its_stop_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # A target the tiny model never reaches: every probe runs, each on the 5 held-out questions.
    tiny_params(tmp_path / "params.yaml",
                sft={"stop_at_accuracy": 1.0, "val_questions": 5, "accuracy_limit": 10})
    for command in ("prepare", "base", "sft"):
        assert run(command).exit_code == 0
    curve = json.loads((tmp_path / "metrics/sft/accuracy_curve.json").read_text())
    # 43 trained problems in batches of 8 = 6 steps an epoch; a probe every 3 steps.
    assert [point["step"] for point in curve] == [3, 6]
    assert all(point["val"] in {i / 5 for i in range(6)} and "stopped" not in point
               for point in curve)


def test_sft_without_probes_still_writes_the_declared_curve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvc.yaml declares the curve: an absent file fails `dvc repro`
    tiny_params(tmp_path / "params.yaml", sft={"accuracy_every": 0.0, "max_steps": 2})
    for command in ("prepare", "base", "sft"):
        assert run(command).exit_code == 0
    assert json.loads((tmp_path / "metrics/sft/accuracy_curve.json").read_text()) == []


def test_evaluate_writes_metrics_and_one_prediction_per_question(pipeline):
    root, _ = pipeline
    metrics = json.loads((root / "metrics/eval/sft.json").read_text())
    assert set(metrics) == {"test", "ood"}
    assert metrics["test"]["total"] == 6 and metrics["ood"]["total"] == 4
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    predictions = pq.read_table(root / "data/predictions/sft.parquet").to_pylist()
    assert [p["split"] for p in predictions] == ["test"] * 6 + ["ood"] * 4
    assert all(p["new_tokens"] <= 24 for p in predictions)


def test_tracked_metrics_hold_no_wall_time_which_the_log_still_shows(pipeline):
    root, results = pipeline
    assert (root / "metrics/sft/metrics.json").is_file()
    assert wall_time_keys(root / "metrics") == []
    assert "'train_runtime'" in results["sft"].output  # the Trainer's printed log line
    assert " s, " in results["evaluate"].output and " new tokens/s)" in results["evaluate"].output


def test_unknown_param_fails_before_any_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_params(tmp_path / "params.yaml", sft={"learning_rte": 0.1})
    result = CliRunner().invoke(main, ["prepare"])
    assert result.exit_code == 1
    assert "error: params.yaml: unknown parameter sft.learning_rte" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_stage_run_out_of_order_names_the_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_params(tmp_path / "params.yaml")
    result = CliRunner().invoke(main, ["base"])
    assert result.exit_code == 1
    assert "error: data/prepared/train.parquet: no such file" in result.output
    assert not (tmp_path / "models").exists()


def test_unusable_jsonl_row_is_reported_with_file_row_and_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.jsonl").write_text(
        '{"question": "q1", "answer": "3", "solution": "1+2=3\\nThe answer is 3"}\n'
        '{"question": "q2", "answer": "three", "solution": "The answer is 3"}\n')
    tiny_params(tmp_path / "params.yaml", prepare={"task": "jsonl", "jsonl": {
        "train": "train.jsonl", "test": "train.jsonl"}})
    result = CliRunner().invoke(main, ["prepare"])
    assert result.exit_code == 1
    assert "train.jsonl: row 2: field 'answer'" in result.output
    assert not (tmp_path / "data").exists()


def test_every_subcommand_has_help():
    from sipf.cli import STAGES

    listing = run("--help").output
    for command in STAGES:
        assert f"  {command} " in listing
        result = run(command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output
    assert "No such command 'nope'" in run("nope").output


def test_a_light_stage_does_not_import_torch(tmp_path):
    """Stages are imported lazily: `sipf prefs` must not pay for torch and transformers, nor
    `sipf verifier` when it only writes its placeholder (the default prm.backbone)."""
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text("{}\n")  # every default
    code = ("import sys; from click.testing import CliRunner; from sipf.cli import main; "
            "CliRunner().invoke(main, ['prefs', '--help']); "
            "r = CliRunner().invoke(main, ['verifier']); print(r.exit_code, r.output.strip()); "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    assert out.stdout.splitlines() == [
        "0 verifier: skipped (prm.backbone is 'policy', not 'verifier')", "False False"]
    assert (tmp_path / "models/verifier/SKIPPED.json").is_file()
