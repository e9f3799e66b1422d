"""The cheaper step labellers against the reference one, side by side on the same paths.

    cd <a project with data/prepared, models/base and data/it1/samples.parquet>
    OMP_NUM_THREADS=1 python <repo>/benchmarks/simulation_cost.py --iteration 1 \\
        --policy models/sft --paths 100,300

For each path count, ``select_paths`` draws that many of the iteration's samples (half right,
half wrong, seed simulate.seed) and each labeller labels them with the policy as simulator and
params.yaml's simulate section (k, δ, temperature ...): the reference (all k rollouts of every
distinct prefix), the reference again with another seed (how much two reference runs disagree:
the noise floor of any agreement below), early stop, binary search, and each search with early
stop. For each: the
rollouts drawn (and per labelled step), the generated tokens, the generate calls, wall and CPU
seconds, agreement of its hard labels with the reference's, and accuracy against the arith
task's exact step oracle. One JSON line per labeller, then a Markdown table.

    ... simulation_cost.py --iteration 1 --paths 300 --replay data/it1/rollouts.parquet

replays a finished ``simulate`` run's rollouts instead of generating: each prefix's stored
rollouts are served in order (early stop gets the first ones), so the reference's labels are
the stored ones and a cheaper labeller's disagreement comes from its own rule alone (binary
search's assumption), not from fresh samples. No tokens or time to compare then; the paths
must be the ones that run labelled (same simulate.seed and max_paths).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import click
import torch

from sipf import layout
from sipf.config import SimulateConfig, load_params
from sipf.engines import ModelRef, local_generator
from sipf.generation import Completion, Generator, SamplingParams
from sipf.pipeline.simulation import (label_agreement, prefix_prompt, select_paths, simulate,
                                      simulation_cost)
from sipf.stages.common import read_rows, train_records_by_id
from sipf.tasks.registry import task_named

LABELLERS = {  # name: SimulateConfig changes; each names early_stop and search, whatever
    # params.yaml's defaults (the reference is the naive labeller even where early stop is on)
    "reference": {"early_stop": False, "search": "all"},
    "early stop": {"early_stop": True, "search": "all"},
    "binary search": {"early_stop": False, "search": "binary"},
    "binary + early stop": {"early_stop": True, "search": "binary"},
    "linear + early stop": {"early_stop": True, "search": "linear"},
    "reference (seed+1)": {"early_stop": False, "search": "all", "seed": 1},  # + simulate.seed
}


class CountingGenerator:
    """Passes calls through, counting calls, sequences and new tokens."""

    def __init__(self, inner: Generator) -> None:
        self.inner = inner
        self.calls = self.sequences = self.tokens = 0

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        out = self.inner.generate(prompts, params)
        self.calls += 1
        self.sequences += sum(len(cs) for cs in out)
        self.tokens += sum(c.num_tokens for cs in out for c in cs)
        return out


class ReplayGenerator:
    """Serves each prefix prompt the stored completions of a simulate run, in rollout order,
    the next ``n`` on each request (the stream a fresh labeller would have drawn)."""

    def __init__(self, streams: dict[str, list[str]]) -> None:
        self.streams, self.drawn = streams, dict.fromkeys(streams, 0)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        out = []
        for prompt in prompts:
            start = self.drawn[prompt]
            self.drawn[prompt] += params.n
            out.append([Completion(text, 0)
                        for text in self.streams[prompt][start:start + params.n]])
        return out


def _replay_streams(rollouts_path: str, paths: Sequence[dict],
                    prompts: dict[str, str]) -> dict[str, list[str]]:
    by_step = {}
    for row in sorted(read_rows(Path(rollouts_path), "rollouts"), key=lambda r: r["rollout_index"]):
        by_step.setdefault((row["path_id"], row["step_index"]), []).append(row["completion"])
    streams = {}
    for path in paths:
        for j in range(len(path["steps"])):
            if (path["path_id"], j) not in by_step:
                raise SystemExit(f"{rollouts_path}: no rollouts for {path['path_id']} step {j}: "
                                 "not the paths that run labelled")
            streams[prefix_prompt(prompts[path["question_id"]], path["steps"], j)] = \
                by_step[(path["path_id"], j)]
    return streams


def _agreement(rows: Sequence[dict], reference: Sequence[dict]) -> dict[str, float]:
    """Share of steps whose hard label is the reference's, overall and on the steps the
    reference calls right / wrong."""
    assert [(r["path_id"], r["step_index"]) for r in rows] == \
        [(r["path_id"], r["step_index"]) for r in reference]
    pairs = [(r["hard"], ref["hard"]) for r, ref in zip(rows, reference)]

    def share(kept: list[tuple[bool, bool]]) -> float:
        return sum(a == b for a, b in kept) / len(kept) if kept else 1.0

    return {"agree": share(pairs), "agree_on_right": share([p for p in pairs if p[1]]),
            "agree_on_wrong": share([p for p in pairs if not p[1]])}


@click.command()
@click.option("--params", "params_path", default="params.yaml")
@click.option("--iteration", "k", default=1, help="Label data/it<k>/samples.parquet.")
@click.option("--policy", default="models/sft", help="The simulator (the iteration's policy).")
@click.option("--paths", default="100,300", help="Path counts, comma-separated.")
@click.option("--only", default="", help="Labellers to run, in this order, comma-separated "
              "(default: all; the first is the one the others are compared with).")
@click.option("--replay", default="", help="A simulate run's rollouts.parquet to replay.")
def main(params_path: str, k: int, policy: str, paths: str, only: str, replay: str) -> None:
    params = load_params(params_path)
    task = task_named(params.prepare.task)
    pool = read_rows(layout.Iteration(k).samples, "samples")
    records, prompts = train_records_by_id()
    if not replay:
        generator = CountingGenerator(local_generator(
            "hf", ModelRef.policy(policy, layout.BASE, params.model), params.simulate.batch_size))
    stop = task.stop(params.prepare.prompt_style)
    chosen = [n for n in (only.split(",") if only else LABELLERS)  # the first is the reference
              if not (replay and "seed" in LABELLERS[n])]  # a replay has one stream
    table = []
    for n_paths in (int(n) for n in paths.split(",")):
        base: SimulateConfig = replace(params.simulate, max_paths=n_paths)
        selected = select_paths(pool, base)
        oracle = {p["path_id"]: task.step_oracle(records[p["question_id"]], list(p["steps"]))
                  for p in selected} if task.step_oracle is not None else None
        reference = None
        streams = _replay_streams(replay, selected, prompts) if replay else {}
        for name in chosen:
            if replay:
                generator = CountingGenerator(ReplayGenerator(streams))
            changes = dict(LABELLERS[name])
            if "seed" in changes:
                changes["seed"] += base.seed
            cfg = replace(base, **changes)
            generator.calls = generator.sequences = generator.tokens = 0
            wall, cpu = time.perf_counter(), time.process_time()
            _, labels = simulate(generator, selected, records, prompts, cfg, stop=stop,
                                 kind=task.kind)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            cost = simulation_cost(selected, labels)
            assert cost["rollouts_drawn"] == generator.sequences
            if reference is None:
                reference = {"labels": labels, "cost": cost, "tokens": generator.tokens,
                             "wall": wall, "cpu": cpu}
            row = {"paths": len(selected), "labeller": name, **cost,
                   "tokens": generator.tokens, "generate_calls": generator.calls,
                   "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                   "rollouts_x": cost["rollouts_drawn"] / reference["cost"]["rollouts_drawn"],
                   "tokens_x": generator.tokens / max(reference["tokens"], 1),
                   "wall_x": wall / reference["wall"], "cpu_x": cpu / max(reference["cpu"], 1e-9),
                   **_agreement(labels, reference["labels"]),
                   "inferred_steps": sum(r["k"] == 0 for r in labels)}
            if oracle is not None:
                against = label_agreement(labels, oracle)
                differ = [r for r, ref in zip(labels, reference["labels"])
                          if r["hard"] != ref["hard"]]
                row |= {"differ_oracle_sides_with_it": sum(
                            r["hard"] == oracle[r["path_id"]][r["step_index"]] for r in differ
                        ) / len(differ) if differ else float("nan"),
                        "oracle_hard_accuracy": against["hard_accuracy"],
                        "oracle_soft_accuracy": against["soft_accuracy"],
                        "oracle_right_steps": against["oracle_correct"]}
            click.echo(json.dumps(row), err=True)
            table.append(row)
    click.echo(f"\nthreads {torch.get_num_threads()}, simulate: k={params.simulate.k}, "
               f"δ={params.simulate.delta}, T={params.simulate.temperature}, "
               f"seed={params.simulate.seed}, policy {Path(policy)}\n")
    click.echo("| paths (steps) | labeller | rollouts drawn | per step | × reference | tokens × "
               "| wall s (×) | CPU s (×) | agree with reference | on its right / wrong steps | "
               "where they differ, the oracle sides with it | oracle accuracy (hard) |")
    click.echo("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        click.echo(f"| {r['paths']} ({r['steps']}) | {r['labeller']} | {r['rollouts_drawn']:,} "
                   f"| {r['rollouts_per_step']:.2f} | {r['rollouts_x']:.2f} | "
                   f"{r['tokens_x']:.2f} | {r['wall_s']:.0f} ({r['wall_x']:.2f}) | "
                   f"{r['cpu_s']:.1f} ({r['cpu_x']:.2f}) | "
                   f"{100 * r['agree']:.1f}% | {100 * r['agree_on_right']:.1f}% / "
                   f"{100 * r['agree_on_wrong']:.1f}% | "
                   f"{100 * r.get('differ_oracle_sides_with_it', float('nan')):.0f}% | "
                   f"{100 * r.get('oracle_hard_accuracy', float('nan')):.1f}% |")


if __name__ == "__main__":
    main()
