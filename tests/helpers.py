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
