"""How well can the PRM rank paths when its labels are perfect? (arith only)

Trains the PRM of a finished run on the arith ORACLE step labels of up to ``--paths`` sampled
paths of ``--pool`` (no Monte-Carlo noise, and more paths than `simulate` labels), holding out
``--held-out`` questions, then scores the held-out questions' paths:

    python benchmarks/prm_oracle_ceiling.py --paths 1000 --epochs 4 --out /tmp/prm-oracle

(``--kind lm_head`` trains that kind of PRM instead of params.yaml's ``prm.kind``.)

Prints step accuracy against the oracle (and the all-"correct" baseline) and how often a
question's right path gets a higher reward than its wrong one (mean, min, last aggregates).
If that stays at chance with oracle labels, no amount of simulation will make the PRM rank.
"""

from __future__ import annotations

import dataclasses
import json
import random

import click

from sipf.config import load_params, prm_prompt_style
from sipf.models import load_tokenizer
from sipf.pipeline.prm import (aggregate, build_examples, load_prm, ranking_accuracy, score_steps,
                      step_accuracy, train_prm)
from sipf.storage import read_parquet
from sipf.tasks import arith
from sipf.layout import BASE, M0
from sipf.stages.common import seed_everything, train_records_by_id


@click.command()
@click.option("--pool", default="data/it2/samples.parquet", show_default=True)
@click.option("--backbone", default=str(M0), show_default=True)
@click.option("--paths", "n_paths", default=1000, show_default=True)
@click.option("--held-out", default=100, show_default=True, help="Questions scored, not trained on.")
@click.option("--epochs", default=4, show_default=True)
@click.option("--kind", type=click.Choice(["classifier", "lm_head"]), default=None,
              help="prm.kind to train (default: params.yaml's; likelihood trains nothing).")
@click.option("--out", required=True, type=click.Path(file_okay=False))
def main(pool: str, backbone: str, n_paths: int, held_out: int, epochs: int, kind: str | None,
         out: str) -> None:
    params = load_params("params.yaml")
    cfg = dataclasses.replace(params.prm, epochs=epochs, kind=kind or params.prm.kind)
    if cfg.kind == "likelihood":
        raise click.UsageError("prm.kind likelihood trains nothing: pass --kind")
    seed_everything(cfg.seed)
    records, _ = train_records_by_id()
    paths = read_parquet(pool)
    questions = sorted({p["question_id"] for p in paths})
    random.Random(0).shuffle(questions)
    scored = set(questions[:held_out])
    train = [p for p in paths if p["question_id"] not in scored]
    random.Random(1).shuffle(train)

    def oracle(path: dict) -> list[float]:
        return [float(x) for x in arith.step_labels(records[path["question_id"]],
                                                    list(path["steps"]))]

    rows = [{"path_id": p["path_id"], "question_id": p["question_id"],
             "question": records[p["question_id"]].question, "steps": list(p["steps"]),
             "labels": oracle(p)} for p in train[:n_paths]]
    style = prm_prompt_style(params)
    metrics = train_prm(backbone, load_tokenizer(BASE), build_examples(rows, style), cfg, out,
                        model_cfg=params.model)
    model, tokenizer = load_prm(out)
    test = [p for p in paths if p["question_id"] in scored]
    scores = score_steps(model, tokenizer, [records[p["question_id"]].question for p in test],
                         [list(p["steps"]) for p in test], batch_size=cfg.batch_size,
                         prompt_style=style)
    truth = [oracle(p) for p in test]
    result = {"kind": cfg.kind, "train_paths": len(rows), "epochs": epochs, "best_epoch": metrics["best_epoch"],
              "scored_paths": len(test), "step_accuracy_vs_oracle": step_accuracy(scores, truth),
              "all_correct_baseline": sum(map(sum, truth)) / sum(map(len, truth))}
    for how in ("mean", "min", "last"):
        result[f"right_above_wrong_{how}"] = ranking_accuracy(
            [p["question_id"] for p in test], [p["outcome"] for p in test],
            [aggregate(s, how) for s in scores])
    click.echo(json.dumps(result))


if __name__ == "__main__":
    main()
