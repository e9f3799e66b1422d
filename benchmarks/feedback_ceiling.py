"""The loop's ceiling under exact feedback (arith only): iteration k's path rewards from the
arith oracle instead of a trained PRM, written where `score` writes them, so `prefs`, `align`
and the rest of the iteration run unchanged on them.

    python benchmarks/feedback_ceiling.py --iteration 1 --feedback process   # oracle step labels
    python benchmarks/feedback_ceiling.py --iteration 1 --feedback outcome   # the path's outcome

``process``: each step's exact label (the task's step oracle: arith checks its
``<<expr=value>>``), the path's reward their ``prm.aggregate`` (mean by default): the best any
PRM could say. ``outcome``: 1 for a right
answer, 0 for a wrong one: the best any ORM (SIOF) could say. Run in a scratch clone, in place
of ``simulate``, ``train_prm`` and ``score`` (not a stage: it writes a stage's output outside
DVC). One iteration, after ``sipf sample --iteration K --policy P``::

    python benchmarks/feedback_ceiling.py --iteration K --feedback process
    sipf prefs --iteration K && sipf align --iteration K --policy P
    sipf evaluate --model models/itK/policy --name itK
    sipf control --iteration K && sipf evaluate --model models/itK/control --name itK_control
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import click

from sipf.config import load_params
from sipf.errors import DataError
from sipf.layout import Iteration
from sipf.pipeline.prm import aggregate
from sipf.stages.common import check_ids, read_rows, train_records_by_id
from sipf.stages.score import score_row
from sipf.storage import write_parquet
from sipf.tasks.registry import StepOracle, task_named


def exact_rewards(paths: Iterable[dict], records: Mapping[str, object], oracle: StepOracle,
                  feedback: str, how: str, iteration: int) -> list[dict]:
    """``score``'s rows for ``paths``: the oracle's step labels, and as the reward their
    aggregate ``how`` (``process``) or the path's outcome (``outcome``) instead of a PRM's."""
    rows = []
    for p in paths:
        steps = [float(x) for x in oracle(records[p["question_id"]], list(p["steps"]))]
        reward = float(bool(p["outcome"])) if feedback == "outcome" else aggregate(steps, how)
        rows.append(score_row(p, steps, reward, iteration))
    return rows


@click.command()
@click.option("--iteration", type=int, required=True)
@click.option("--feedback", type=click.Choice(["process", "outcome"]), required=True)
def main(iteration: int, feedback: str) -> None:
    params = load_params()
    oracle = task_named(params.prepare.task).step_oracle
    if oracle is None:
        raise click.ClickException(f"task {params.prepare.task!r} has no step oracle")
    it = Iteration(iteration)
    records, _ = train_records_by_id()
    try:
        paths = read_rows(it.samples, "samples")
        check_ids(paths, records, it.samples, unique="path_id")
    except DataError as error:  # one line naming the file, row and field, nothing written
        raise click.ClickException(str(error)) from error
    rows = exact_rewards(paths, records, oracle, feedback, params.prm.aggregate, iteration)
    write_parquet(rows, it.scores)
    right = [r["reward"] for r in rows if r["outcome"]]
    wrong = [r["reward"] for r in rows if not r["outcome"]]
    click.echo(f"{feedback} rewards it{iteration}: {len(rows)} paths, mean reward right "
               f"{sum(right) / max(1, len(right)):.3f} ({len(right)}), wrong "
               f"{sum(wrong) / max(1, len(wrong)):.3f} ({len(wrong)}) -> {it.scores}")


if __name__ == "__main__":
    main()
