"""PRM kinds and training recipes side by side, on one project's iteration-1 step labels.

Run inside a project directory where `sample` and `simulate` of iteration 1 have run (an
arith task: the step oracle judges every step), e.g.:

    cd /tmp/prmbench && PYTHONPATH=/work/wt-prmkind OMP_NUM_THREADS=2 \\
        python /work/wt-prmkind/benchmarks/prm_kinds.py --out /tmp/prm-kinds

Every variant trains (or, kind likelihood, does not) on the same labelled paths,
data/it1/step_labels.parquet, from the policy models/sft, with params.yaml's `prm` section
under the variant's overrides; then scores every path of data/it1/samples.parquet, as the
`score` stage does. Variants whose name ends in `@oracle` train on the arith oracle's exact
labels of the same paths instead (the ceiling of that kind and recipe). Reported per variant
(sipf.pipeline.reward_metrics): step AUC against the oracle within one (question, step index)
and over all steps, how often a question's right path gets the higher reward (mean and min
aggregates), how often the shorter of two paths wins, and the train wall time; over all pool
paths, and over `unseen` paths, those of questions with no labelled path. Writes
``--out``/results.json and prints a Markdown table.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import click

from sipf import layout
from sipf.config import load_params, prm_prompt_style
from sipf.models import load_policy, load_tokenizer
from sipf.pipeline.prm import (aggregate, build_examples, likelihood_step_scores, load_prm,
                               mean_log_probs, score_steps, train_prm)
from sipf.pipeline.reward_metrics import reward_report
from sipf.stages.common import read_rows, seed_everything, train_records_by_id
from sipf.stages.train_prm import labelled_paths
from sipf.tasks import arith

PAPER = {"lora": True, "learning_rate": 5e-5, "epochs": 10, "batch_size": 40}
VARIANTS: dict[str, dict[str, Any]] = {
    "classifier": {"kind": "classifier"},
    "lm_head": {"kind": "lm_head"},
    "classifier paper": {"kind": "classifier", **PAPER},
    "lm_head paper": {"kind": "lm_head", **PAPER},
    "lm_head lora 1e-3": {"kind": "lm_head", **PAPER, "learning_rate": 1e-3},
    "likelihood min": {"kind": "likelihood", "likelihood": "min"},
    "likelihood mean": {"kind": "likelihood", "likelihood": "mean"},
    "likelihood min_digit": {"kind": "likelihood", "likelihood": "min_digit"},
    "classifier@oracle": {"kind": "classifier"},
    "lm_head@oracle": {"kind": "lm_head"},
}
COLUMNS = ("step_auc_within_question_and_index", "step_auc_vs_oracle", "right_above_wrong",
           "right_above_wrong_min", "shorter_path_wins")


def _report(paths: list[dict], scores: list[list[float]], oracle: list[list[float]],
            how: str, keep: list[bool]) -> dict[str, Any]:
    chosen = [i for i, k in enumerate(keep) if k]
    questions = [paths[i]["question_id"] for i in chosen]
    outcomes = [bool(paths[i]["outcome"]) for i in chosen]
    step_scores = [scores[i] for i in chosen]
    report = reward_report(questions, outcomes, step_scores,
                           [aggregate(s, how) for s in step_scores], how,
                           oracle=[oracle[i] for i in chosen])
    report["right_above_wrong_min"] = reward_report(
        questions, outcomes, step_scores, [aggregate(s, "min") for s in step_scores],
        "min")["right_above_wrong"]
    return report


@click.command()
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Where the trained PRMs and results.json go.")
@click.option("--only", default="", help="Comma-separated variant names (default: all).")
def main(out: str, only: str) -> None:
    params = load_params("params.yaml")
    names = [n.strip() for n in only.split(",") if n.strip()] or list(VARIANTS)
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise click.BadParameter(f"unknown variants {sorted(unknown)} (known: {list(VARIANTS)})")
    records, prompts = train_records_by_id()
    labelled = labelled_paths(1, params.prm.label, records)
    seen = {p["question_id"] for p in labelled}
    pool = read_rows(layout.Iteration(1).samples, "samples")
    steps = [list(p["steps"]) for p in pool]
    oracle = [[float(x) for x in arith.step_labels(records[p["question_id"]], s)]
              for p, s in zip(pool, steps)]
    unseen = [p["question_id"] not in seen for p in pool]
    style = prm_prompt_style(params)
    tokenizer = load_tokenizer(layout.BASE)
    policy = load_policy(layout.M0, layout.BASE, params.model, merged=True)
    how = params.prm.aggregate
    likelihoods = mean_log_probs(policy, tokenizer, [prompts[p["question_id"]] for p in pool],
                                 [p["text"] for p in pool], batch_size=params.prm.batch_size)
    baseline = reward_report([p["question_id"] for p in pool], [bool(p["outcome"]) for p in pool],
                             steps, [0.0] * len(pool), how, oracle=oracle,
                             likelihoods=likelihoods)
    results: dict[str, Any] = {
        "labelled_paths": len(labelled), "labelled_questions": len(seen),
        "pool_paths": len(pool), "unseen_paths": sum(unseen),
        "baselines": {k: baseline[k] for k in ("likelihood_right_above_wrong",
                                               "oracle_right_above_wrong",
                                               "step_index_only_auc")},
        "variants": {}}
    Path(out).mkdir(parents=True, exist_ok=True)
    for name in names:
        cfg = dataclasses.replace(params.prm, **VARIANTS[name])
        rows = labelled
        if name.endswith("@oracle"):
            rows = [dict(r, labels=[float(x) for x in arith.step_labels(
                records[r["question_id"]], r["steps"])]) for r in labelled]
        seed_everything(cfg.seed)
        directory = Path(out) / name.replace(" ", "_")
        started = time.perf_counter()
        metrics = train_prm(layout.M0, tokenizer, build_examples(rows, style), cfg, directory,
                            model_cfg=params.model)
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        if cfg.kind == "likelihood":
            scores = likelihood_step_scores(policy, tokenizer,
                                            [prompts[p["question_id"]] for p in pool], steps,
                                            batch_size=cfg.batch_size, reduce=cfg.likelihood)
        else:
            model, prm_tokenizer = load_prm(directory)
            scores = score_steps(model, prm_tokenizer,
                                 [records[p["question_id"]].question for p in pool], steps,
                                 batch_size=cfg.batch_size, prompt_style=style)
        score_s = time.perf_counter() - started
        result = {"train_s": round(train_s, 1), "score_s": round(score_s, 1),
                  "best_epoch": metrics["best_epoch"],
                  "val_step_accuracy": metrics["val_step_accuracy"],
                  "all": _report(pool, scores, oracle, how, [True] * len(pool)),
                  "unseen": _report(pool, scores, oracle, how, unseen)}
        results["variants"][name] = result
        click.echo(json.dumps({name: result}), err=True)
        (Path(out) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    click.echo(table(results))


def table(results: dict[str, Any]) -> str:
    """The side-by-side table in Markdown (all paths / unseen questions' paths)."""
    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}"

    head = ("| variant | step AUC within (q, index) | step AUC | right above wrong (mean) | "
            "right above wrong (min) | shorter path wins | train s |")
    lines = [head, "|" + "---|" * 7]
    for name, r in results["variants"].items():
        cells = [f"{cell(r['all'][c])} / {cell(r['unseen'][c])}" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['train_s']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
