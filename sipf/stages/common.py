"""What every stage shares: a params option and one clear error instead of a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sipf.errors import ConfigError, DataError
from sipf.methods import method_named
from sipf.storage import atomic_path, read_parquet, write_json, write_parquet
from sipf.tasks.base import MathRecord
from sipf.tasks.kinds import CodeQuestion, Question

params_option = click.option("--params", "params_path", default="params.yaml", show_default=True,
                             type=click.Path(dir_okay=False), help="The params file to read.")
PREPARED = Path("data/prepared")
TEST_SPLITS = ("test", "ood")  # in-domain and out-of-domain; evaluated after every model
RECORD_COLUMNS = ("id", "question", "answer", "solution", "prompt")


def clear_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the pipeline's own errors into one line on stderr and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ConfigError, DataError) as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)

    return wrapper


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def read_split(split: str, prepared: Path = PREPARED) -> tuple[list[Question], list[str]]:
    """Records and their formatted prompts of one prepared split (code tasks carry a
    ``code`` column and come back as CodeQuestion)."""
    rows = read_parquet(prepared / f"{split}.parquet", required=RECORD_COLUMNS)
    records: list[Question] = [
        CodeQuestion.from_row(r) if r.get("code") else
        MathRecord(r["id"], r["question"], r["answer"], r["solution"]) for r in rows]
    return records, [r["prompt"] for r in rows]


BASE = "models/base"
M0 = "models/sft"  # the SFT policy: what iteration 1 samples with and ORPO adapters sit on
iteration_option = click.option("--iteration", "k", type=click.IntRange(min=1), required=True,
                                help="Iteration k of the loop.")
policy_option = click.option("--policy", type=click.Path(file_okay=False), required=True,
                             help="M_{k-1}: the model that samples (a checkpoint or adapter).")


def data_dir(k: int) -> Path:
    return Path(f"data/it{k}")


def metrics_dir(k: int) -> Path:
    return Path(f"metrics/it{k}")


def model_dir(k: int) -> Path:
    return Path(f"models/it{k}")


def train_records_by_id() -> tuple[dict[str, Question], dict[str, str]]:
    records, prompts = read_split("train")
    return {r.id: r for r in records}, {r.id: p for r, p in zip(records, prompts)}


SKIPPED = "SKIPPED.json"  # what a placeholder directory holds (evaluate reads it)


def skipped(method: str, stage: str, k: int, *outputs: Path) -> bool:
    """When ``method`` does not run ``stage`` at iteration ``k``, write a placeholder for each
    declared output (DVC needs them all) and return True: an empty Parquet table, a JSON
    ``{"skipped": why}``, or a directory holding that JSON as SKIPPED.json."""
    reason = method_named(method).skip_reason(stage, k)
    if reason is None:
        return False
    for out in map(Path, outputs):
        if out.suffix == ".parquet":
            write_parquet([], out)
        elif out.suffix == ".json":
            write_json({"skipped": reason}, out)
        else:
            with atomic_path(out, directory=True) as tmp:
                write_json({"skipped": reason}, tmp / SKIPPED)
    click.echo(f"{stage}@it{k}: skipped ({reason})")
    return True


def loop_stage(name: str, needs_policy: bool = True) -> Callable[[Callable[..., Any]], Any]:
    """The click command of a loop stage: --params, --iteration (and --policy), clear errors."""

    def decorate(command: Callable[..., Any]) -> Any:
        command = clear_errors(command)
        if needs_policy:
            command = policy_option(command)
        return click.command(name)(params_option(iteration_option(command)))

    return decorate
