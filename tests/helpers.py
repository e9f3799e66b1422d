"""Tiny models and params for fast tests (a from-scratch Llama with one small layer)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from sipf.config import ScratchModelParams, merge_params
from sipf.models import build_char_tokenizer, build_scratch_model

TINY_ARCH = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
             "max_position": 512}
# bitsandbytes' CPU kernels quantize in blocks of 64 inputs: hidden_size 32 fails with
# "RuntimeError: shape '[32, 0]' is invalid for input of size 16" (docs/scale.md).
TINY_4BIT_ARCH = {**TINY_ARCH, "hidden_size": 64, "intermediate_size": 128}


def tiny_model(texts: list[str] | None = None, seed: int = 0):
    tokenizer = build_char_tokenizer(texts or ["Q: 1+1\nA:\nThe answer is 2"])
    return build_scratch_model(ScratchModelParams(**TINY_ARCH), tokenizer, seed), tokenizer


def tiny_params(path: Path, **overrides: dict) -> Path:
    """A complete params.yaml (defaults plus these) for a pipeline that runs in seconds."""
    tiny = {
        "prepare": {"arith": {"n_train": 48, "n_test": 6, "n_ood": 4}},
        "model": {"scratch": TINY_ARCH},
        "sft": {"max_steps": 6, "batch_size": 8, "logging_steps": 2, "learning_rate": 0.01,
                "accuracy_every": 0.5, "accuracy_limit": 3, "stop_at_accuracy": 0.0},
        "evaluate": {"batch_size": 4, "max_new_tokens": 24},
    }
    for section, values in overrides.items():
        tiny.setdefault(section, {}).update(values)
    from sipf.stages.preset import defaults

    path.write_text(yaml.safe_dump(merge_params(defaults(), tiny)))
    return path


def run(*args: str):
    """A `sipf` command in-process; the click Result (exit_code, output)."""
    from click.testing import CliRunner

    from sipf.cli import main

    return CliRunner().invoke(main, list(args))


def corrupt(solution: str) -> str:
    """Wrong arithmetic in the first step, carried to the answer."""
    from sipf.tasks.base import split_steps

    steps = split_steps(solution)
    first = steps[0].replace("=<<", "=<<1+", 1)
    return "\n".join([first, *steps[1:], "The answer is 12345"])


def hand_sampled_project(questions: int = 8) -> None:
    """In the current directory (with its params.yaml): prepare, base and sft, then
    data/it1/samples.parquet by hand, since a model trained for seconds never answers right:
    for each of the first ``questions`` training questions its gold solution (correct) and a
    copy with a wrong first step (wrong)."""
    from sipf.storage import read_parquet, write_parquet
    from sipf.tasks.base import split_steps

    for command in (["prepare"], ["base"], ["sft"]):
        result = run(*command)
        assert result.exit_code == 0, result.output
    samples = []
    for q in read_parquet("data/prepared/train.parquet")[:questions]:
        for n, (text, outcome) in enumerate([(q["solution"], True),
                                             (corrupt(q["solution"]), False)]):
            samples.append({"question_id": q["id"], "path_id": f"{q['id']}/it1/{n:03d}",
                            "text": text, "steps": split_steps(text),
                            "answer": q["answer"] if outcome else "12345",
                            "outcome": outcome, "iteration": 1, "generator": "hand"})
    write_parquet(samples, "data/it1/samples.parquet")


WALL_TIME = re.compile(r"second|runtime|timestamp")


def wall_time_keys(metrics_dir: Path) -> list[str]:
    """Every key of a JSON file and every TSV column (or file) under ``metrics_dir`` that
    measures wall time, which would make the file, and dvc.lock, differ from run to run."""
    def keys(obj: object, prefix: str) -> list[str]:
        if isinstance(obj, dict):
            return [k for key, value in obj.items()
                    for k in [f"{prefix}{key}", *keys(value, f"{prefix}{key}.")]]
        if isinstance(obj, list):
            return [k for item in obj for k in keys(item, prefix)]
        return []

    found = []
    for path in sorted(metrics_dir.rglob("*")):
        name = path.relative_to(metrics_dir).as_posix()
        if path.suffix == ".json":
            found += [f"{name}: {key}" for key in keys(json.loads(path.read_text()), "")]
        elif path.suffix == ".tsv":
            found += [f"{name}: {column}"
                      for column in [name, *path.read_text().splitlines()[0].split("\t")]]
    return [key for key in found if WALL_TIME.search(key.split(": ")[-1])]


# Settings under which one process and several take the same optimizer steps
# (tests/test_distributed.py, benchmarks/distributed_training.py): whole global batches
# (SFT: 48 questions in 6 batches of 8; the PRM: 12 training paths in 3 batches of 4 an
# epoch; ORPO: 8 pairs in 2 batches of 4) and no dropout, whose draws differ per process.
DISTRIBUTED_LOOP = {
    "sft": {"logging_steps": 1},
    "prm": {"epochs": 3, "batch_size": 4, "val_fraction": 0.25, "learning_rate": 3e-3},
    "align": {"max_steps": 6, "batch_size": 4, "logging_steps": 1, "learning_rate": 3e-3,
              "lora": {"dropout": 0.0}}}


def labelled_project(root: Path, **overrides: dict) -> None:
    """In ``root``: a tiny project (DISTRIBUTED_LOOP, then ``overrides`` by section) with M0,
    iteration 1's hand-made samples (:func:`hand_sampled_project`), and their step labels and
    preference pairs by hand: every gold step right, every step of the corrupted path wrong;
    gold over corrupted."""
    import os

    from sipf.storage import read_parquet, write_parquet
    from sipf.tasks.base import split_steps

    here = Path.cwd()
    os.chdir(root)
    try:
        tiny_params(root / "params.yaml", **{**DISTRIBUTED_LOOP, **overrides})
        hand_sampled_project()
        samples = read_parquet("data/it1/samples.parquet")
        prompts = {r["id"]: r["prompt"] for r in read_parquet("data/prepared/train.parquet")}
        labels = [{"path_id": s["path_id"], "question_id": s["question_id"], "step_index": i,
                   "step": step, "n_correct": 2 * bool(s["outcome"]), "k": 2,
                   "hard": bool(s["outcome"]), "soft": float(s["outcome"])}
                  for s in samples for i, step in enumerate(split_steps(s["text"]))]
        by_question: dict[str, dict[bool, dict]] = {}
        for s in samples:
            by_question.setdefault(s["question_id"], {})[bool(s["outcome"])] = s
        pairs = [{"question_id": q, "prompt": prompts[q], "chosen": paths[True]["text"],
                  "rejected": paths[False]["text"], "chosen_path_id": paths[True]["path_id"],
                  "rejected_path_id": paths[False]["path_id"], "chosen_reward": 1.0,
                  "rejected_reward": 0.0, "chosen_outcome": True, "rejected_outcome": False,
                  "iteration": 1} for q, paths in sorted(by_question.items())]
        write_parquet(labels, "data/it1/step_labels.parquet")
        write_parquet(pairs, "data/it1/prefs.parquet")
        # The PRM's head reads its input through dropout (0.1 unless the backbone's config
        # says otherwise).
        config_file = Path("models/sft/config.json")  # none beside an adapter
        if config_file.is_file():
            config = json.loads(config_file.read_text())
            config_file.write_text(json.dumps({**config, "classifier_dropout": 0.0}))
    finally:
        os.chdir(here)


def with_processes(params_file: Path, nproc: int) -> None:
    """``params_file`` with ``distributed.nproc_per_node`` set to ``nproc``."""
    params = yaml.safe_load(params_file.read_text())
    params["distributed"]["nproc_per_node"] = nproc
    params_file.write_text(yaml.safe_dump(params))


def logged_curve(tsv: Path) -> list[float]:
    """The values of one DVCLive metric file (step and value columns), in step order."""
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:]]
    return [float(row[-1]) for row in rows]


def tiny_pretrained(path: Path, arch: dict = TINY_4BIT_ARCH, seed: int = 0) -> Path:
    """A tiny Llama and its character tokenizer saved as a local pretrained model: what
    `model.policy` may name with `load_in_4bit` (which 'scratch' refuses)."""
    tokenizer = build_char_tokenizer(["Q: 1+1\nA:\nThe answer is 2"])
    build_scratch_model(ScratchModelParams(**arch), tokenizer, seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
