"""Generation in problems per second, for several trained projects side by side in one run.

    OMP_NUM_THREADS=2 python benchmarks/generation_problems.py /work/run-char /work/run-bpe

Each argument is a project directory after `sft` (its params.yaml, data/prepared, models/base
and models/sft). For each, in this process one after another, with the project's own
evaluate/sample settings: **greedy evaluation** of the test split (``evaluate.batch_size``,
``evaluate.max_new_tokens``, the task's stop strings) and **sampling** ``--paths`` paths for
``--questions`` training questions (``sample.temperature``, ``sample.top_p``,
``sample.batch_size``). Problems per second is the unit because a tokenizer change makes
tokens per second incomparable; accuracy on the greedy pass is printed beside it, so a faster
model that answers worse shows.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click
import torch

from sipf import layout
from sipf.config import load_params
from sipf.generation import HFGenerator, SamplingParams
from sipf.models import load_policy, load_tokenizer
from sipf.stages.common import read_split
from sipf.tasks.registry import task_named


def _kind(tokenizer) -> str:  # noqa: ANN001
    """The saved tokenizer's kind: a project's params.yaml may predate the tokenizer param
    (its default changed), so the model decides, not the file."""
    return "bpe" if type(tokenizer.backend_tokenizer.model).__name__ == "BPE" else "char"


def _measure(project: Path, questions: int, paths: int) -> dict:
    params = load_params(project / "params.yaml")
    task = task_named(params.prepare.task)
    stop = task.stop(params.prepare.prompt_style)
    model = load_policy(project / layout.M0, project / layout.BASE, params.model, merged=True)
    tokenizer = load_tokenizer(project / layout.BASE)
    records, prompts = read_split("test", project / layout.PREPARED)
    evaluator = HFGenerator(model, tokenizer, batch_size=params.evaluate.batch_size)
    started = time.perf_counter()
    out = evaluator.generate(prompts, SamplingParams(
        max_new_tokens=params.evaluate.max_new_tokens, stop=stop))
    greedy_s = time.perf_counter() - started
    texts = [completions[0].text for completions in out]
    correct = sum(ok for ok, _ in task.kind.judge(records, texts))
    _, train_prompts = read_split("train", project / layout.PREPARED)
    cfg = params.sample
    sampler = HFGenerator(model, tokenizer, batch_size=cfg.batch_size)
    started = time.perf_counter()
    sampled = sampler.generate(train_prompts[:questions], SamplingParams(
        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        n=paths, seed=cfg.seed, stop=stop))
    sample_s = time.perf_counter() - started
    return {"project": str(project), "tokenizer": _kind(tokenizer),
            "test_problems": len(prompts), "greedy_seconds": round(greedy_s, 1),
            "greedy_problems_per_second": round(len(prompts) / greedy_s, 2),
            "greedy_accuracy": round(correct / len(prompts), 4),
            "greedy_new_tokens": sum(c[0].num_tokens for c in out),
            "sampled_questions": questions, "paths_per_question": paths,
            "sample_seconds": round(sample_s, 1),
            "sample_questions_per_second": round(questions / sample_s, 3),
            "sample_new_tokens": sum(c.num_tokens for cs in sampled for c in cs),
            "threads": torch.get_num_threads()}


@click.command()
@click.argument("projects", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--questions", default=300, show_default=True)
@click.option("--paths", default=8, show_default=True)
def main(projects: tuple[str, ...], questions: int, paths: int) -> None:
    results = []
    for project in projects:
        here = os.getcwd()
        os.chdir(project)  # read_split and load_policy take relative layout paths too
        try:
            results.append(_measure(Path("."), questions, paths))
        finally:
            os.chdir(here)
        results[-1]["project"] = project
        click.echo(json.dumps(results[-1]))
    first = results[0]
    click.echo("\n| project | tokenizer | greedy problems/s | accuracy | sampling questions/s "
               "(x paths) | vs first |")
    click.echo("|---|---|---|---|---|---|")
    for r in results:
        click.echo(f"| {r['project']} | {r['tokenizer']} | {r['greedy_problems_per_second']} | "
                   f"{100 * r['greedy_accuracy']:.1f}% | {r['sample_questions_per_second']} "
                   f"(x{r['paths_per_question']}) | greedy "
                   f"{r['greedy_problems_per_second'] / first['greedy_problems_per_second']:.2f}x,"
                   f" sampling {r['sample_questions_per_second'] / first['sample_questions_per_second']:.2f}x |")


if __name__ == "__main__":
    main()
