"""Sampling on Ray: N workers against 1 worker and the local engine, side by side in one run.

    python benchmarks/ray_workers.py /work/run --questions 100 --paths 8 --workers 1,2

The argument is a project directory after `sft` (its params.yaml, data/prepared, models/base,
models/sft; it needs the `ray` extra). One realistic generation call, sampling's: ``--paths``
paths for each of the first ``--questions`` training questions with the project's sample
settings (temperature, top_p, max_new_tokens, batch_size) and the task's stop strings. It is
timed, ``--rounds`` times in turn, on the local engine (this process, all cores as torch
threads) and on a local Ray instance with each worker count (the cores split among the
workers). Start-up (Ray, then each worker's imports and model load) is timed apart from the
call (a Ray engine is started anew each round: each reserves all the cores). Every engine's completions must equal the local engine's, else the script fails.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import click
import torch

from sipf import layout
from sipf.config import GenerationConfig, load_params
from sipf.engines import ModelRef, open_generator
from sipf.generation import SamplingParams
from sipf.stages.common import read_split
from sipf.tasks.registry import task_named


@click.command()
@click.argument("project", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--questions", default=100)
@click.option("--paths", default=8)
@click.option("--workers", default="1,2", help="Ray worker counts, comma-separated.")
@click.option("--rounds", default=2, help="Timed calls per engine, interleaved.")
@click.option("--model", "model_dir", default=str(layout.M0))
def main(project: Path, questions: int, paths: int, workers: str, rounds: int,
         model_dir: str) -> None:
    import ray

    from sipf.engines.ray import _start

    started = time.perf_counter()
    _start(ray, "")  # before chdir: a project clone's own sipf/ must not shadow this one
    ray_init = time.perf_counter() - started
    os.chdir(project)  # adapters name their parent relative to the project (workers follow)
    params = load_params("params.yaml")
    cfg, task = params.sample, task_named(params.prepare.task)
    _, prompts = read_split("train")
    prompts = prompts[:questions]
    sampling = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                              top_p=cfg.top_p, n=paths, seed=cfg.seed,
                              stop=tuple(task.stop(params.prepare.prompt_style)))
    ref = ModelRef.policy(model_dir, layout.BASE, params.model)
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)

    started = time.perf_counter()
    local = open_generator(GenerationConfig(), ref, cfg.batch_size)
    local_load = time.perf_counter() - started
    counts = [int(w) for w in workers.split(",")]
    names = ["local", *(f"ray x{n}" for n in counts)]
    startup: dict[str, list[float]] = {name: [] for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, list] = {}
    for _ in range(rounds):  # engines in turn, so a busy spell on the machine hits each
        for name, n in zip(names, [0, *counts]):
            started = time.perf_counter()
            # One Ray engine at a time: each reserves all the cores.
            engine = local if not n else open_generator(
                GenerationConfig(engine="ray", workers=n), ref, cfg.batch_size)
            startup[name].append(time.perf_counter() - started if n else local_load)
            started = time.perf_counter()
            out = engine.generate(prompts, sampling)
            seconds[name].append(time.perf_counter() - started)
            if outputs.setdefault(name, out) != out:
                raise SystemExit(f"{name}: a round's completions differ from its first round's")
            if n:
                engine.close()
    tokens = sum(c.num_tokens for cs in outputs["local"] for c in cs)
    for name in names:
        median = statistics.median(seconds[name])
        click.echo(json.dumps({
            "engine": name, "startup_s": [round(s, 1) for s in startup[name]],
            "call_s": [round(s, 1) for s in seconds[name]], "median_s": round(median, 1),
            "tokens_per_s": round(tokens / median, 1),
            "speedup_vs_local": round(statistics.median(seconds["local"]) / median, 2),
            f"speedup_vs_{names[1]}": round(statistics.median(seconds[names[1]]) / median, 2),
            "identical_to_local": outputs[name] == outputs["local"]}))
    click.echo(json.dumps({"cores": cores, "sequences": len(prompts) * paths,
                           "new_tokens": tokens, "batch_size": cfg.batch_size,
                           "ray.init_s": round(ray_init, 1)}))
    ray.shutdown()
    different = [name for name in names if outputs[name] != outputs["local"]]
    if different:
        raise SystemExit(f"completions differ from the local engine's: {', '.join(different)}")


if __name__ == "__main__":
    main()
