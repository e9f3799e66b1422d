"""`dvc repro` builds the pipeline, a second run does nothing, a param change re-runs only
what depends on it, and `dvc push` / `dvc pull` carry the outputs to another clone."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import tiny_params

REPO = Path(__file__).resolve().parents[1]


def sh(*args: str, cwd: Path, **env_vars: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           **env_vars}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture()
def project(tmp_path):
    if shutil.which("dvc", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("dvc is not installed in this environment")
    for name in ("sipf",):
        shutil.copytree(REPO / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", tmp_path)
    tiny_params(tmp_path / "params.yaml")
    sh("git", "init", "-q", cwd=tmp_path)
    sh("dvc", "init", "-q", cwd=tmp_path)
    # dvclive reads the baseline revision: the repository needs a first commit.
    sh("git", "add", "-A", cwd=tmp_path)
    sh("git", "-c", "user.name=sipf", "-c", "user.email=sipf@localhost", "commit", "-qm", "init",
       cwd=tmp_path)
    return tmp_path


def ran(log: str) -> list[str]:
    return [line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")]


FOUNDATION = ("evaluate@base", "evaluate@sft")  # the loop needs a model that can answer


def test_repro_twice_then_a_param_change(project):
    first = sh("dvc", "repro", *FOUNDATION, cwd=project)
    order = ran(first)
    assert sorted(order) == ["base", "evaluate@base", "evaluate@sft", "inputs", "prepare", "sft"]
    assert order.index("inputs") < order.index("prepare") < order.index("base") < order.index("sft") \
        < order.index("evaluate@sft")
    assert (project / "metrics/eval/sft.json").is_file()

    second = sh("dvc", "repro", *FOUNDATION, cwd=project)
    assert ran(second) == ["inputs"]  # always run: it hashes the files params.yaml names

    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("max_new_tokens: 24",
                                                        "max_new_tokens: 20"))
    third = sh("dvc", "repro", *FOUNDATION, cwd=project)
    assert sorted(ran(third)) == ["evaluate@base", "evaluate@sft", "inputs"]

    # Sharing through the remote: push here, pull into a fresh clone, same bytes come back.
    store, other = project.parent / "store", project.parent / "other"
    sh("dvc", "remote", "add", "-d", "store", str(store), cwd=project)
    sh("dvc", "push", "--with-deps", *FOUNDATION, cwd=project)
    sh("git", "add", "-A", cwd=project)
    sh("git", "-c", "user.name=sipf", "-c", "user.email=sipf@localhost", "commit", "-qm", "run",
       cwd=project)
    sh("git", "clone", "-q", str(project), str(other), cwd=project.parent)
    sh("dvc", "pull", "--with-deps", *FOUNDATION, cwd=other)
    for output in ("models/sft/model.safetensors", "data/prepared/train.parquet"):
        assert (other / output).read_bytes() == (project / output).read_bytes()


def test_a_changed_input_file_named_in_params_reruns_prepare(project):
    """The task's files are parameters, not paths in dvc.yaml: the inputs stage's fingerprint
    makes them dependencies all the same."""
    rows = [f'{{"question": "q{i}", "answer": "{i}", "solution": "{i}+0={i}\\nThe answer '
            f'is {i}"}}' for i in range(6)]
    (project / "train.jsonl").write_text("\n".join(rows) + "\n")
    (project / "test.jsonl").write_text("\n".join(rows[:4]) + "\n")
    tiny_params(project / "params.yaml", prepare={"task": "jsonl", "jsonl": {
        "train": "train.jsonl", "test": "test.jsonl"}})
    assert ran(sh("dvc", "repro", "prepare", cwd=project)) == ["inputs", "prepare"]
    assert ran(sh("dvc", "repro", "prepare", cwd=project)) == ["inputs"]
    (project / "test.jsonl").write_text("\n".join(rows[:2]) + "\n")  # truncated
    assert ran(sh("dvc", "repro", "prepare", cwd=project)) == ["inputs", "prepare"]
    meta = yaml.safe_load((project / "data/prepared/meta.json").read_text())
    assert meta["counts"]["test"] == 2


@pytest.mark.slow
def test_two_runs_under_other_hash_seeds_write_the_same_dvc_lock(project):
    # Byte-reproducible outputs: a second copy of the project, run from scratch under another
    # PYTHONHASHSEED, records the same hash for every output (metrics included). DVC writes
    # the stages in the order it ran them, which the hash seed may change: compared by name.
    twin = project.parent / "twin"
    shutil.copytree(project, twin)
    locks = []
    for root, seed in ((project, "1"), (twin, "2")):
        sh("dvc", "repro", *FOUNDATION, cwd=root, PYTHONHASHSEED=seed)
        locks.append(yaml.safe_load((root / "dvc.lock").read_text())["stages"])
    assert sorted(locks[0]) == ["base", "evaluate@base", "evaluate@sft", "prepare", "sft"]
    for name, stage in locks[0].items():
        assert stage["outs"] == locks[1][name]["outs"], name
    assert locks[0] == locks[1]  # deps and params too


def test_experiments_of_two_methods_and_seeds_feed_the_report(project):
    # `-S method=... -S seed=...` as docs/experiments.md queues them; run up to M0's evaluation only
    # (a tiny model never answers right, so the loop has nothing to learn from).
    for method, seed in (("cot", 0), ("sft", 0), ("sft", 1)):
        sh("dvc", "exp", "run", "-S", f"method={method}", "-S", f"seed={seed}",
           "-n", f"{method}-s{seed}", *FOUNDATION, cwd=project)
    sipf = str(Path(sys.executable).parent / "sipf")
    printed = sh(sipf, "report", "--out", "reports", cwd=project)
    assert "Runs: 3 experiments, seeds 0, 1." in printed
    results = (project / "reports/results.md").read_text()
    assert results.startswith("Runs: 3 experiments")
    assert "### Tables 1/2" in results and "](accuracy_per_iteration.png)" in results
    sft_row = next(line for line in printed.splitlines() if line.startswith("| SFT |"))
    assert sft_row.startswith("| SFT | 2 | ")  # both seeds of method sft, mean ± sd
    assert next(line for line in printed.splitlines()
                if line.startswith("| CoT |")).startswith("| CoT | 1 | ")
    written = sorted(p.name for p in (project / "reports").iterdir())
    assert written == ["accuracy_per_iteration.png", "alignment_log_probs.png",
                       "or_weight_sweep.png", "results.md", "reward_model_accuracy.png"]
