"""Stage `sample@itk`: M_{k-1} samples reasoning paths for the training questions."""

from __future__ import annotations

from sipf import layout
from sipf.engines import ModelRef, open_generator
from sipf.methods import method_named
from sipf.pipeline.sampling import grow_pool, sample_paths
from sipf.stages.common import (LoopStage, check_ids, loop_stage, read_rows, read_split,
                                seed_everything)
from sipf.storage import write_json, write_parquet
from sipf.tasks.registry import task_named


@loop_stage("sample")
def main(stage: LoopStage) -> None:
    """M_{k-1} samples reasoning paths -> data/it<k>/samples.parquet (the pool D_k)."""
    params, k, it = stage.params, stage.k, stage.it
    cfg = method_named(params.method).sample_config(params.sample)  # STaR: greedy
    task = task_named(params.prepare.task)
    seed_everything(cfg.seed + k)
    records, prompts = read_split("train")  # sample_paths applies sample.question_limit
    # D_{k-1} is read before sampling, so a missing or broken pool fails in seconds, not after.
    pool = layout.Iteration(k - 1).samples
    previous = read_rows(pool, "samples") if cfg.grow_pool and k > 1 else None
    if previous is not None:
        check_ids(previous, {r.id for r in records}, pool, unique="path_id")
    generator = open_generator(params.generation,
                               ModelRef.policy(stage.policy, layout.BASE, params.model),
                               cfg.batch_size)
    rows, report = sample_paths(generator, records, prompts, cfg, k, generator_name=stage.policy,
                                stop=task.stop(params.prepare.prompt_style), kind=task.kind)
    summary = report.summary()
    summary["new_paths"] = len(rows)
    if previous is not None:
        rows = grow_pool(previous, rows, task.kind)
    summary["pool_paths"] = len(rows)
    write_parquet(rows, it.samples)
    write_json(summary, it.stage_metrics("sample"))
    stage.say(f"{summary['new_paths']} new paths ({summary['paths_correct']} right, "
              f"{summary['paths_wrong']} wrong) from {summary['attempts']} samples of "
              f"{summary['questions']} questions in {report.seconds:.0f} s; dropped "
              f"{summary['invalid']} invalid and {summary['duplicates']} duplicates; "
              f"pool {len(rows)} paths")
