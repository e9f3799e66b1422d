"""Stage `simulate@itk`: Monte-Carlo step labels by rolling out every step prefix K times."""

from __future__ import annotations

import click

from sipf.config import load_params
from sipf.generation import HFGenerator
from sipf.models import load_policy, load_simulator, load_tokenizer
from sipf.methods import method_named
from sipf.pipeline.simulation import label_agreement, outcome_labels, select_paths, simulate
from sipf.storage import read_parquet, write_json, write_parquet
from sipf.tasks import arith
from sipf.tasks.kinds import task_kind
from sipf.tasks.prompts import stop_strings
from sipf.stages.common import (BASE, data_dir, loop_stage, metrics_dir, seed_everything, skipped,
                           train_records_by_id)


@loop_stage("simulate")
def main(params_path: str, k: int, policy: str) -> None:
    """Monte-Carlo step labels -> data/it<k>/{rollouts,step_labels}.parquet.

    Outcome feedback (SIOF) labels every step with its path's outcome instead: no rollouts.
    """
    params = load_params(params_path)
    if skipped(params.method, "simulate", k, data_dir(k) / "rollouts.parquet",
               data_dir(k) / "step_labels.parquet", metrics_dir(k) / "simulate.json"):
        return
    cfg = params.simulate
    seed_everything(cfg.seed + k)
    paths = select_paths(read_parquet(data_dir(k) / "samples.parquet",
                                      required=("question_id", "path_id", "steps", "outcome")), cfg)
    records, prompts = train_records_by_id()
    if method_named(params.method).feedback == "outcome":
        rollouts, labels = [], outcome_labels(paths)
    else:
        if cfg.simulator == "self":
            model = load_policy(policy, BASE, params.model, merged=True)
            tokenizer = load_tokenizer(BASE)
        else:
            model, tokenizer = load_simulator(cfg.simulator, params.model)
        rollouts, labels = simulate(HFGenerator(model, tokenizer, batch_size=cfg.batch_size),
                                    paths, records, prompts, cfg,
                                    stop=stop_strings(params.prepare.prompt_style),
                                    kind=task_kind(params.prepare.task))
    metrics: dict = {"paths": len(paths), "steps": len(labels), "rollouts": len(rollouts)}
    if params.prepare.task == "arith":  # the task knows the truth: measure the labels against it
        oracle = {p["path_id"]: arith.step_labels(records[p["question_id"]], list(p["steps"]))
                  for p in paths}
        for row in labels:
            row["oracle"] = oracle[row["path_id"]][row["step_index"]]
        metrics["against_oracle"] = label_agreement(labels, oracle)
    write_parquet(rollouts, data_dir(k) / "rollouts.parquet")
    write_parquet(labels, data_dir(k) / "step_labels.parquet")
    write_json(metrics, metrics_dir(k) / "simulate.json")
    click.echo(f"simulate@it{k}: {metrics}")
