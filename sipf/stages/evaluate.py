"""Stage `evaluate`: greedy accuracy of one model on every prepared test split."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import click

from sipf import layout
from sipf.config import Params, load_params
from sipf.pipeline.evaluation import evaluate_split, pass_at_k_split
from sipf.engines import ModelRef, open_generator
from sipf.generation import SamplingParams
from sipf.storage import outputs_together, read_json, write_json, write_parquet
from sipf.stages.common import clear_errors, params_option, read_split
from sipf.tasks.registry import task_named


@click.command("evaluate")
@params_option
@click.option("--model", "model_dir", type=click.Path(file_okay=False), required=True,
              help="A model directory (checkpoint or LoRA adapter).")
@click.option("--name", required=True, help="Name of the metrics and predictions files.")
@click.option("--base", "base_dir", type=click.Path(file_okay=False), default=str(layout.BASE),
              show_default=True)
@clear_errors
def main(params_path: str, model_dir: str, name: str, base_dir: str) -> None:
    """Write metrics/eval/<name>.json and data/predictions/<name>.parquet."""
    params = load_params(params_path)
    predictions, metrics_file = layout.predictions(name), layout.eval_metrics(name)
    with outputs_together(predictions, metrics_file):
        _evaluate(params, model_dir, name, base_dir, predictions, metrics_file)


def _evaluate(params: Params, model_dir: str, name: str, base_dir: str, predictions: Path,
              metrics_file: Path) -> None:
    if (Path(model_dir) / layout.SKIPPED).is_file():  # a stage the method does not run
        write_parquet([], predictions)
        write_json(read_json(Path(model_dir) / layout.SKIPPED), metrics_file)
        click.echo(f"evaluate {name}: skipped, {model_dir} is a placeholder")
        return
    cfg, task = params.evaluate, task_named(params.prepare.task)
    generator = open_generator(params.generation,
                               ModelRef.policy(model_dir, base_dir, params.model), cfg.batch_size)
    sampling = SamplingParams(max_new_tokens=cfg.max_new_tokens,
                              stop=task.stop(params.prepare.prompt_style))
    metrics: dict = {}
    all_rows: list[dict] = []
    for split in layout.TEST_SPLITS:
        if not layout.split_file(split).is_file():
            continue
        records, prompts = read_split(split)
        if cfg.limit:
            records, prompts = records[:cfg.limit], prompts[:cfg.limit]
        started = time.perf_counter()
        result, rows = evaluate_split(generator, records, prompts, split, sampling,
                                      task.kind)
        seconds = time.perf_counter() - started
        tokens = sum(row["new_tokens"] for row in rows)
        # Wall time goes to the log line only: a tracked metric must be the same every run.
        metrics[split] = asdict(result)
        if cfg.pass_k_samples:
            metrics[split].update(pass_at_k_split(
                generator, records, prompts,
                replace(sampling, temperature=cfg.pass_k_temperature, n=cfg.pass_k_samples,
                        seed=params.seed), cfg.pass_k, task.kind))
        all_rows.extend(rows)
        click.echo(f"evaluate {name}: {split} {result.correct}/{result.total} = "
                   f"{100 * result.accuracy:.2f}% ({seconds:.1f} s, "
                   f"{tokens / seconds:.0f} new tokens/s)")
    write_parquet(all_rows, predictions)
    write_json(metrics, metrics_file)
