"""Stage `simulate@itk`: Monte-Carlo step labels by rolling out every step prefix K times
(or fewer: simulate.early_stop, simulate.search)."""

from __future__ import annotations

from sipf import layout
from sipf.engines import ModelRef, open_generator
from sipf.methods import method_named
from sipf.pipeline.simulation import (label_agreement, outcome_labels, select_paths, simulate,
                                      simulation_cost)
from sipf.stages.common import (LoopStage, check_ids, loop_stage, read_rows, seed_everything,
                                train_records_by_id)
from sipf.storage import write_json, write_parquet
from sipf.tasks.registry import task_named


@loop_stage("simulate")
def main(stage: LoopStage) -> None:
    """Monte-Carlo step labels -> data/it<k>/{rollouts,step_labels}.parquet.

    Outcome feedback (SIOF) labels every step with its path's outcome instead: no rollouts.
    """
    params, it = stage.params, stage.it
    cfg, task = params.simulate, task_named(params.prepare.task)
    seed_everything(cfg.seed + stage.k)
    pool = read_rows(it.samples, "samples")
    records, prompts = train_records_by_id()
    check_ids(pool, records, it.samples, unique="path_id")
    paths = select_paths(pool, cfg)
    if method_named(params.method).feedback == "outcome":
        rollouts, labels = [], outcome_labels(paths)
    else:
        ref = (ModelRef.policy(stage.policy, layout.BASE, params.model)
               if cfg.simulator == "self" else ModelRef.other(cfg.simulator, params.model))
        rollouts, labels = simulate(open_generator(params.generation, ref, cfg.batch_size),
                                    paths, records, prompts, cfg,
                                    stop=task.stop(params.prepare.prompt_style), kind=task.kind)
    # rollouts: rollout rows (a shared prefix's rows repeat for each path); rollouts_drawn:
    # what was generated, each distinct prefix once
    metrics: dict = {"paths": len(paths), **simulation_cost(paths, labels),
                     "rollouts": len(rollouts)}
    if task.step_oracle is not None:  # the task knows the truth: measure the labels against it
        oracle = {p["path_id"]: task.step_oracle(records[p["question_id"]], list(p["steps"]))
                  for p in paths}
        for row in labels:
            row["oracle"] = oracle[row["path_id"]][row["step_index"]]
        metrics["against_oracle"] = label_agreement(labels, oracle)
    write_parquet(rollouts, it.rollouts)
    write_parquet(labels, it.step_labels)
    write_json(metrics, it.stage_metrics("simulate"))
    stage.say(_summary(metrics, paths))


def _summary(metrics: dict, paths: list[dict]) -> str:
    """One line: what was labelled, what it cost, and how it agrees with the truth."""
    line = (f"{metrics['paths']} paths of {len({p['question_id'] for p in paths})} questions, "
            f"{metrics['steps']} steps labelled with {metrics['rollouts_drawn']} rollouts "
            f"({metrics['rollouts_per_step']:.1f} a step)")
    if "against_oracle" in metrics:
        agree = metrics["against_oracle"]["hard_accuracy"]
        line += f"; hard labels agree with the oracle on {agree:.1%}"
    return line
