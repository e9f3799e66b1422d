"""Does iteration k's PRM rank paths above the policy's own likelihood? A test with power.

`score@itk` compares the two on the iteration's own paths; on arith's iteration 1 those give
53 / 216 / 42 (right, wrong) pairs (seeds 0-2), so one pair moves the ranking by 0.5-2.4 points
and two reward models within a few points of each other cannot be told apart; and on seed 0
every one of those pairs is of a question the PRM trained on. This draws fresh paths, as `sample`
draws them, for training questions that no iteration sampled (those after
`sample.question_limit`, never seen by the PRM), scores every path with the iteration's PRM
and with the policy's mean token log-prob, and reports both rankings on the same pairs, the
paired difference with a bootstrap 95% interval over questions, and the step AUC within
(question, index) against the arith oracle. Run inside a project where `score@itk` ran:

    OMP_NUM_THREADS=2 python /work/main/benchmarks/prm_vs_likelihood.py --questions 300

Prints one Markdown row (and the header with ``--header``); writes nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import click

from sipf import layout
from sipf.config import load_params, prm_prompt_style
from sipf.engines import ModelRef, open_generator
from sipf.models import load_policy, load_tokenizer
from sipf.pipeline.prm import (aggregate, likelihood_step_scores, load_prm, mean_log_probs,
                               pair_wins, ranking_accuracy, score_steps)
from sipf.pipeline.reward_metrics import ranking_difference, reward_report
from sipf.pipeline.sampling import sample_paths
from sipf.stages.common import read_split, seed_everything
from sipf.tasks.registry import task_named

HEADER = ("| project | fresh paths (questions with both) | (right, wrong) pairs | PRM right "
          "above wrong | likelihood | PRM − likelihood [95% CI] | PRM step AUC within (q, "
          "index) | oracle labels: right above wrong | PRM right above wrong, path reward "
          "mean / min / prod / last | untrained start (likelihood kind, running min): right "
          "above wrong, step AUC within |\n|---|---|---|---|---|---|---|---|---|---|")


@click.command(help=__doc__.split("\n\n")[0])
@click.option("--iteration", default=1, show_default=True, help="whose PRM and policy")
@click.option("--questions", default=300, show_default=True,
              help="unseen training questions to sample (after sample.question_limit)")
@click.option("--per-question", default=16, show_default=True, help="samples a question")
@click.option("--draws", default=2000, show_default=True, help="bootstrap resamples")
@click.option("--header/--no-header", default=False)
def main(iteration: int, questions: int, per_question: int, draws: int, header: bool) -> None:
    params = load_params("params.yaml")
    task = task_named(params.prepare.task)
    it = layout.Iteration(iteration)
    policy_dir = layout.M0 if iteration == 1 else layout.Iteration(iteration - 1).policy
    records, prompts = read_split("train")
    start = params.sample.question_limit
    if not start or start + questions > len(records):
        raise click.UsageError(f"need {questions} training questions after "
                               f"sample.question_limit ({start}); the split has {len(records)}")
    records, prompts = records[start:start + questions], prompts[start:start + questions]
    # every distinct valid path, right or wrong, up to per_question each (quotas at the cap)
    cfg = dataclasses.replace(params.sample, question_limit=0, per_round=per_question,
                              max_rounds=1, n_correct=per_question, n_wrong=per_question,
                              seed=params.sample.seed + 1000)
    seed_everything(cfg.seed)
    generator = open_generator(params.generation,
                               ModelRef.policy(policy_dir, layout.BASE, params.model),
                               cfg.batch_size)
    paths, _ = sample_paths(generator, records, prompts, cfg, 1, generator_name=str(policy_dir),
                            stop=task.stop(params.prepare.prompt_style), kind=task.kind)
    del generator
    by_id = {r.id: r for r in records}
    prompt_of = {r.id: p for r, p in zip(records, prompts)}
    qids = [p["question_id"] for p in paths]
    outcomes = [bool(p["outcome"]) for p in paths]
    steps = [list(p["steps"]) for p in paths]

    model, tokenizer = load_prm(it.prm)
    scores = score_steps(model, tokenizer, [by_id[q].question for q in qids], steps,
                         batch_size=params.prm.batch_size, prompt_style=prm_prompt_style(params))
    del model
    policy = load_policy(policy_dir, layout.BASE, params.model, merged=True)
    policy_tokenizer = load_tokenizer(layout.BASE)
    likelihoods = mean_log_probs(policy, policy_tokenizer,
                                 [prompt_of[q] for q in qids], [p["text"] for p in paths],
                                 batch_size=params.prm.batch_size)
    # where the trained PRM starts: `prm.kind: likelihood` read the same way, untrained
    start = [list(itertools.accumulate(s, min)) for s in likelihood_step_scores(
        policy, policy_tokenizer, [prompt_of[q] for q in qids], steps,
        batch_size=params.prm.batch_size, reduce=params.prm.likelihood)]
    rewards = [aggregate(s, params.prm.aggregate) for s in scores]
    oracle = [[float(x) for x in task.step_oracle(by_id[q], s)] for q, s in zip(qids, steps)]
    report = reward_report(qids, outcomes, scores, rewards, params.prm.aggregate,
                           oracle=oracle, likelihoods=likelihoods)

    prm_pairs = pair_wins(qids, outcomes, rewards)
    lik_pairs = pair_wins(qids, outcomes, likelihoods)
    n_pairs = sum(map(len, prm_pairs.values()))
    diff, low, high = ranking_difference(prm_pairs, lik_pairs, draws, seed=0)
    # the paper's mean against the other path rewards, on the same step scores
    by_aggregate = {how: ranking_accuracy(qids, outcomes, [aggregate(s, how) for s in scores])
                    for how in ("mean", "min", "prod", "last")}
    untrained = reward_report(qids, outcomes, start,
                              [aggregate(s, params.prm.aggregate) for s in start],
                              params.prm.aggregate, oracle=oracle)
    if header:
        click.echo(HEADER)
    click.echo(f"| seed {params.seed}, it{iteration} | {len(paths)} ({len(prm_pairs)}) | "
               f"{n_pairs} | {100 * report['right_above_wrong']:.1f} | "
               f"{100 * report['likelihood_right_above_wrong']:.1f} | "
               f"{100 * diff:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] | "
               f"{100 * report['step_auc_within_question_and_index']:.1f} | "
               f"{100 * report['oracle_right_above_wrong']:.1f} | "
               + " / ".join(f"{100 * by_aggregate[how]:.1f}" for how in by_aggregate) + " | "
               f"{100 * untrained['right_above_wrong']:.1f}, "
               f"{100 * untrained['step_auc_within_question_and_index']:.1f} |")


if __name__ == "__main__":
    main()
