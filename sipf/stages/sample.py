"""Stage `sample@itk`: M_{k-1} samples reasoning paths for the training questions."""

from __future__ import annotations

import click

from sipf.config import load_params
from sipf.generation import HFGenerator
from sipf.models import load_policy, load_tokenizer
from sipf.pipeline.sampling import grow_pool, sample_paths
from sipf.storage import read_parquet, write_json, write_parquet
from sipf.tasks.kinds import task_kind
from sipf.tasks.prompts import stop_strings
from sipf.methods import method_named
from sipf.stages.common import (BASE, data_dir, loop_stage, metrics_dir, read_split, seed_everything,
                           skipped)


@loop_stage("sample")
def main(params_path: str, k: int, policy: str) -> None:
    """M_{k-1} samples reasoning paths -> data/it<k>/samples.parquet (the pool D_k)."""
    params = load_params(params_path)
    if skipped(params.method, "sample", k, data_dir(k) / "samples.parquet",
               metrics_dir(k) / "sample.json"):
        return
    cfg = method_named(params.method).sample_config(params.sample)  # STaR: greedy
    kind = task_kind(params.prepare.task)
    seed_everything(cfg.seed + k)
    records, prompts = read_split("train")  # sample_paths applies sample.question_limit
    # D_{k-1} is read before sampling, so a missing or broken pool fails in seconds, not after.
    previous = (read_parquet(data_dir(k - 1) / "samples.parquet",
                             required=("question_id", "steps"))
                if cfg.grow_pool and k > 1 else None)
    generator = HFGenerator(load_policy(policy, BASE, params.model, merged=True), load_tokenizer(BASE),
                            batch_size=cfg.batch_size)
    rows, report = sample_paths(generator, records, prompts, cfg, k, generator_name=policy,
                                stop=stop_strings(params.prepare.prompt_style), kind=kind)
    summary = report.summary()
    summary["new_paths"] = len(rows)
    if previous is not None:
        rows = grow_pool(previous, rows, kind)
    summary["pool_paths"] = len(rows)
    write_parquet(rows, data_dir(k) / "samples.parquet")
    write_json(summary, metrics_dir(k) / "sample.json")
    click.echo(f"sample@it{k}: {len(rows)} paths {summary}")
