"""The loop's ceiling under exact feedback (arith only): iteration k's path rewards from the
arith oracle instead of a trained PRM, written where `score` writes them, so `prefs`, `align`
and the rest of the iteration run unchanged on them.

    python benchmarks/feedback_ceiling.py --iteration 1 --feedback process   # oracle step labels
    python benchmarks/feedback_ceiling.py --iteration 1 --feedback outcome   # the path's outcome

``process``: each step's exact label (its ``<<expr=value>>`` checked), the path's reward their
mean (``prm.aggregate``'s default): the best any PRM could say. ``outcome``: 1 for a right
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

from sipf.layout import Iteration
from sipf.pipeline.prm import aggregate
from sipf.stages.common import read_rows, train_records_by_id
from sipf.storage import write_parquet
from sipf.tasks.arith import step_labels


def exact_rewards(paths: Iterable[dict], records: Mapping[str, dict], feedback: str,
                  iteration: int) -> list[dict]:
    """``score``'s rows for ``paths``, the rewards from the oracle (``process``) or the
    outcome (``outcome``) instead of a PRM."""
    rows = []
    for p in paths:
        steps = [float(x) for x in step_labels(records[p["question_id"]], list(p["steps"]))]
        reward = float(bool(p["outcome"])) if feedback == "outcome" else aggregate(steps, "mean")
        rows.append({"question_id": p["question_id"], "path_id": p["path_id"], "text": p["text"],
                     "outcome": p["outcome"], "step_scores": steps, "reward": reward,
                     "iteration": iteration})
    return rows


@click.command()
@click.option("--iteration", type=int, required=True)
@click.option("--feedback", type=click.Choice(["process", "outcome"]), required=True)
def main(iteration: int, feedback: str) -> None:
    it = Iteration(iteration)
    records, _ = train_records_by_id()
    rows = exact_rewards(read_rows(it.samples, "samples"), records, feedback, iteration)
    write_parquet(rows, it.scores)
    right = [r["reward"] for r in rows if r["outcome"]]
    wrong = [r["reward"] for r in rows if not r["outcome"]]
    click.echo(f"{feedback} rewards it{iteration}: {len(rows)} paths, mean reward right "
               f"{sum(right) / max(1, len(right)):.3f} ({len(right)}), wrong "
               f"{sum(wrong) / max(1, len(wrong)):.3f} ({len(wrong)}) -> {it.scores}")


if __name__ == "__main__":
    main()
