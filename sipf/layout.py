"""Where everything lives: every path the pipeline reads or writes, and every table's columns.

The one module that spells paths out. Stages, ``sipf query``, ``sipf report`` and the figures
read it; ``dvc.yaml`` must spell the same paths, and ``tests/test_layout.py`` checks that it
does (DVC cannot import Python, so the file repeats them once, checked).

A leaf: it imports nothing of the library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# ----------------------------------------------------------------------------- the foundation
DATA, MODELS, METRICS = Path("data"), Path("models"), Path("metrics")
INPUTS = DATA / "inputs"  # inputs: fingerprints of the files params.yaml names, per stage
INPUT_STAGES = ("prepare", "base", "simulate", "train_prm")  # the stages that read such files
PREPARED = DATA / "prepared"  # prepare: one Parquet table per split, and meta.json
SPLITS = ("train", "test", "ood")
TEST_SPLITS = ("test", "ood")  # in-domain and out-of-domain: evaluated after every model
BASE = MODELS / "base"  # base: the checkpoint (or dequantized GGUF) every model starts from
M0 = MODELS / "sft"  # sft: the SFT policy, which iteration 1 samples with
SFT_METRICS = METRICS / "sft"  # sft's dvclive directory and accuracy_curve.json
VERIFIER = MODELS / "verifier"  # verifier: the PRM's backbone with prm.backbone 'verifier'
VERIFIER_METRICS = METRICS / "verifier"  # verifier's dvclive directory
PREDICTIONS = DATA / "predictions"  # evaluate: <model name>.parquet
EVAL_METRICS = METRICS / "eval"  # evaluate: <model name>.json
SKIPPED = "SKIPPED.json"  # what a placeholder directory holds (a stage a method does not run)


def inputs_file(stage: str) -> Path:
    """The fingerprint of the outside files ``stage`` reads (a dvc.yaml dependency of it)."""
    return INPUTS / f"{stage}.json"


def split_file(split: str, prepared: Path = PREPARED) -> Path:
    return prepared / f"{split}.parquet"


def predictions(name: str) -> Path:
    return PREDICTIONS / f"{name}.parquet"


def eval_metrics(name: str) -> Path:
    return EVAL_METRICS / f"{name}.json"


# ----------------------------------------------------------------------------- one iteration
@dataclass(frozen=True)
class Iteration:
    """Iteration k's outputs: data/it<k>/, models/it<k>/ and metrics/it<k>/."""

    k: int

    @property
    def data(self) -> Path:
        return DATA / f"it{self.k}"

    @property
    def models(self) -> Path:
        return MODELS / f"it{self.k}"

    @property
    def metrics(self) -> Path:
        return METRICS / f"it{self.k}"

    # data: one Parquet table per step of the loop (ITERATION_TABLES; columns: TABLES)
    def table(self, name: str) -> Path:
        return self.data / f"{name}.parquet"

    @property
    def samples(self) -> Path:
        return self.table("samples")  # the pool D_k

    @property
    def rollouts(self) -> Path:
        return self.table("rollouts")

    @property
    def step_labels(self) -> Path:
        return self.table("step_labels")

    @property
    def scores(self) -> Path:
        return self.table("scores")

    @property
    def prefs(self) -> Path:
        return self.table("prefs")

    # models
    @property
    def prm(self) -> Path:
        return self.models / "prm"

    @property
    def policy(self) -> Path:
        return self.models / "policy"  # M_k: a LoRA adapter on M0

    @property
    def control(self) -> Path:
        return self.models / "control"  # the gold-SFT control with M_k's budget

    # metrics (dvclive directories hold metrics.json and plots/metrics)
    def stage_metrics(self, stage: str) -> Path:
        return self.metrics / f"{stage}.json"

    def live_dir(self, stage: str) -> Path:
        return self.metrics / stage

    def plots(self, stage: str) -> Path:
        """The dvclive curves of a training stage (one TSV per logged metric)."""
        return self.live_dir(stage) / "plots" / "metrics"

    # what iteration k reads from k - 1
    @property
    def previous_policy(self) -> Path:
        """M_{k-1}: the model that samples and simulates in iteration k."""
        return M0 if self.k == 1 else Iteration(self.k - 1).policy

    @property
    def previous_pool(self) -> Path:
        """D_{k-1}, which iteration k grows (iteration 1 has none: the prepared data)."""
        return PREPARED if self.k == 1 else Iteration(self.k - 1).samples

    def outputs(self, stage: str) -> tuple[Path, ...]:
        """Everything ``stage`` of this iteration writes: its dvc.yaml outs, metrics and
        plots, in that order. A stage a method skips writes a placeholder for each."""
        return {
            "sample": (self.samples, self.stage_metrics("sample")),
            "simulate": (self.rollouts, self.step_labels, self.stage_metrics("simulate")),
            "train_prm": (self.prm, self.stage_metrics("prm"), self.plots("prm")),
            "score": (self.scores, self.stage_metrics("score")),
            "prefs": (self.prefs, self.stage_metrics("prefs")),
            "align": (self.policy, self.live_dir("align") / "metrics.json", self.plots("align")),
            "control": (self.control, self.stage_metrics("control")),
        }[stage]


LOOP_STAGES = ("sample", "simulate", "train_prm", "score", "prefs", "align", "control")


def loop_entry(k: int) -> dict[str, object]:
    """params.yaml's ``loop.it<k>``: what dvc.yaml's foreach reads for iteration k."""
    it = Iteration(k)
    return {"k": k, "policy": it.previous_policy.as_posix(), "pool": it.previous_pool.as_posix()}


def default_loop(iterations: int = 3) -> dict[str, dict[str, object]]:
    """params.yaml's ``loop`` for iterations 1..``iterations`` (the paper runs three)."""
    return {f"it{k}": loop_entry(k) for k in range(1, iterations + 1)}


# ----------------------------------------------------------------------------- table columns
# Every Parquet table the pipeline writes, with its columns in the order written and each
# column's kind: "str", "int", "float" (ints accepted), "bool", "list[str]", "list[float]"; a
# trailing "?" allows nulls. The writers build these rows; storage.read_table checks a table
# against its schema when a stage reads it, and tests/test_layout.py checks a real run's files.
SCHEMAS: dict[str, dict[str, str]] = {
    "prepared": {"id": "str", "question": "str", "answer": "str", "solution": "str",
                 "prompt": "str"},
    "samples": {"question_id": "str", "path_id": "str", "text": "str", "steps": "list[str]",
                "answer": "str?", "outcome": "bool?", "iteration": "int", "generator": "str"},
    "rollouts": {"path_id": "str", "question_id": "str", "step_index": "int",
                 "rollout_index": "int", "completion": "str", "answer": "str?", "correct": "bool"},
    "step_labels": {"path_id": "str", "question_id": "str", "step_index": "int", "step": "str",
                    "n_correct": "int", "k": "int", "hard": "bool", "soft": "float"},
    "scores": {"question_id": "str", "path_id": "str", "text": "str", "outcome": "bool?",
               "step_scores": "list[float]", "reward": "float", "iteration": "int"},
    "prefs": {"question_id": "str", "prompt": "str", "chosen": "str", "rejected": "str",
              "chosen_path_id": "str", "rejected_path_id": "str?", "chosen_reward": "float",
              "rejected_reward": "float?", "chosen_outcome": "bool?", "rejected_outcome": "bool?",
              "iteration": "int"},
    "predictions": {"split": "str", "id": "str", "question": "str", "prompt": "str",
                    "gold_answer": "str", "completion": "str", "predicted_answer": "str?",
                    "correct": "bool", "new_tokens": "int"},
}
# Columns some tasks add: code tasks' record (JSON), the step oracle's verdict where there is one.
OPTIONAL_COLUMNS: dict[str, dict[str, str]] = {"prepared": {"code": "str"},
                                               "step_labels": {"oracle": "bool"}}
TABLES: dict[str, tuple[str, ...]] = {name: tuple(columns) for name, columns in SCHEMAS.items()}
ITERATION_TABLES = ("samples", "rollouts", "step_labels", "scores", "prefs")  # data/it<k>/
ITERATION_DIR = re.compile(r"it(\d+)")  # the folder name of Iteration(k).data, .models, .metrics


def iteration_tables(name: str) -> str:
    """The glob of table ``name`` over every iteration (``sipf query``'s views)."""
    return (DATA / "it*" / f"{name}.parquet").as_posix()
