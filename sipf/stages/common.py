"""What every stage shares: a params option, one clear error instead of a traceback, the
prepared splits, and the loop stages' context (iteration, policy, declared outputs)."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sipf import layout
from sipf.config import Params, load_params
from sipf.distributed import launched, torchrun_command
from sipf.errors import ConfigError, DataError, OutputError
from sipf.methods import method_named
from sipf.storage import (atomic_path, outputs_together, read_table, write_json,
                          write_parquet)
from sipf.tasks.base import MathRecord
from sipf.tasks.kinds import CodeQuestion, Question

params_option = click.option("--params", "params_path", default="params.yaml", show_default=True,
                             type=click.Path(dir_okay=False), help="The params file to read.")


def clear_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the pipeline's own errors, and a file that cannot be read or written, into one
    line on stderr and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ConfigError, DataError, OutputError) as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)
        except OSError as err:
            if err.filename is None:
                raise  # not about a file: a bug to see whole
            click.echo(f"error: {err.filename}: {err.strerror or err}", err=True)
            sys.exit(1)

    return wrapper


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def read_split(split: str, prepared: Path = layout.PREPARED) -> tuple[list[Question], list[str]]:
    """Records and their formatted prompts of one prepared split (code tasks carry a
    ``code`` column and come back as CodeQuestion)."""
    rows = read_rows(layout.split_file(split, prepared), "prepared")
    records: list[Question] = [
        CodeQuestion.from_row(r) if r.get("code") else
        MathRecord(r["id"], r["question"], r["answer"], r["solution"]) for r in rows]
    return records, [r["prompt"] for r in rows]


def read_rows(path: Path, table: str) -> list[dict[str, Any]]:
    """The rows of pipeline table ``table`` (a name in ``layout.SCHEMAS``) at ``path``, each
    column checked for its kind and nulls (one DataError naming file, row and field)."""
    return read_table(path, layout.SCHEMAS[table], layout.OPTIONAL_COLUMNS.get(table))


def check_ids(rows: list[dict[str, Any]], known: Any, path: Path,
              field: str = "question_id", unique: str | None = None) -> None:
    """Every row's ``field`` names a record in ``known`` (the prepared training split), and
    with ``unique`` no two rows share that column's value: a DataError at the first that
    does not."""
    seen: dict[Any, int] = {}
    for number, row in enumerate(rows, start=1):
        if row[field] not in known:
            raise DataError(f"unknown id {row[field]!r} (not in the prepared training split)",
                            file=path, row=number, field=field)
        if unique is not None:
            first = seen.setdefault(row[unique], number)
            if first != number:
                raise DataError(f"duplicate {row[unique]!r} (first in row {first})", file=path,
                                row=number, field=unique)


def train_records_by_id() -> tuple[dict[str, Question], dict[str, str]]:
    records, prompts = read_split("train")
    return {r.id: r for r in records}, {r.id: p for r, p in zip(records, prompts)}


def run_distributed(params: Params) -> bool:
    """With ``distributed.nproc_per_node`` N > 1, outside torchrun: run this stage's command
    again as N processes under torchrun, with the same options, and exit with their status;
    True when they succeeded (the caller then returns: rank 0 wrote the outputs). False when
    this process is to train: one process, or one of torchrun's."""
    nproc = params.distributed.nproc_per_node
    if nproc <= 1 or launched():
        return False
    ctx = click.get_current_context()
    args = [ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Option) and value is not None:
            args += [param.opts[0], str(value)]
    code = subprocess.call(torchrun_command(nproc, ["sipf.cli", *args]))
    if code:
        # The processes printed their own error; torchrun adds which rank failed.
        sys.exit(code)
    return True


# ----------------------------------------------------------------------------- loop stages
@dataclass(frozen=True)
class LoopStage:
    """What a loop stage of iteration k works with: its params, its iteration's paths, the
    policy M_{k-1} (stages that sample or train from it) and the outputs it must write."""

    name: str
    params: Params
    it: layout.Iteration
    policy: str | None

    @property
    def k(self) -> int:
        return self.it.k

    @property
    def outputs(self) -> tuple[Path, ...]:
        return self.it.outputs(self.name)

    def say(self, message: str) -> None:
        """The stage's one summary line, prefixed with its DVC name (sample@it1: ...)."""
        click.echo(f"{self.name}@it{self.k}: {message}")


def write_placeholders(stage: LoopStage, reason: str) -> None:
    """A stage that ``params.method`` does not run still writes every declared output (DVC
    needs them all): an empty Parquet table, a JSON ``{"skipped": why}``, or a directory
    holding that JSON as SKIPPED.json (evaluate reads it)."""
    for out in stage.outputs:
        if out.suffix == ".parquet":
            write_parquet([], out)
        elif out.suffix == ".json":
            write_json({"skipped": reason}, out)
        else:
            with atomic_path(out, directory=True) as tmp:
                write_json({"skipped": reason}, tmp / layout.SKIPPED)
    stage.say(f"skipped ({reason})")


def check_loop_entry(params: Params, k: int) -> None:
    """params.yaml's ``loop.it<k>`` (what dvc.yaml's foreach made this stage depend on) must
    name the policy and pool that iteration k reads."""
    entry = params.loop.get(f"it{k}")
    if entry is None:
        return
    for key, expected in layout.loop_entry(k).items():
        if getattr(entry, key) != expected:
            raise ConfigError(f"loop.it{k}.{key}: iteration {k} needs {expected}, "
                              f"got {getattr(entry, key)}")


iteration_option = click.option("--iteration", "k", type=click.IntRange(min=1), required=True,
                                help="Iteration k of the loop.")
policy_option = click.option("--policy", type=click.Path(file_okay=False), required=True,
                             help="M_{k-1}: the model that samples (a checkpoint or adapter).")


def loop_stage(name: str, needs_policy: bool = True, trains: bool = False
               ) -> Callable[[Callable[[LoopStage], None]], Any]:
    """The click command of loop stage ``name``: --params, --iteration (and --policy), clear
    errors, and the method's skip rule: a stage the method does not run writes placeholders
    for its outputs (``layout.Iteration.outputs``) and the command body never runs. A stage
    that ``trains`` runs as ``distributed.nproc_per_node`` processes (:func:`run_distributed`)."""

    def decorate(body: Callable[[LoopStage], None]) -> Any:
        @functools.wraps(body)
        def command(params_path: str, k: int, policy: str | None = None) -> None:
            params = load_params(params_path)
            check_loop_entry(params, k)
            stage = LoopStage(name, params, layout.Iteration(k), policy)
            reason = method_named(params.method).skip_reason(name, k)
            if trains and reason is None and run_distributed(params):
                return
            with outputs_together(*stage.outputs):
                if reason is not None:
                    write_placeholders(stage, reason)
                else:
                    body(stage)

        command = clear_errors(command)
        if needs_policy:
            command = policy_option(command)
        return click.command(name)(params_option(iteration_option(command)))

    return decorate
