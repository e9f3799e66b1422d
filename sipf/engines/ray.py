"""``generation.engine: ray``: a call's batches shared among Ray actors, on this machine or a cluster.

Each actor loads the model once (:func:`sipf.engines.local_generator`) and decodes whole
batches of :func:`sipf.generation.batch_plan`, which seeds each batch from the call's seed
and the batch's position: completions are the same for 1 or N workers and the same as the
local engine's. Actors take the next batch as they finish one (longest prompts first).

Actors are written by hand: Ray Data's LLM processors (``ray.data.llm``) drive vLLM, SGLang
or an HTTP endpoint, not transformers' ``generate`` on a CPU, and their map_batches blocks
would not keep the batches, and so the seeds, that make N workers agree with one.

On a cluster (``generation.ray_address``) every node needs this project installed and its
directory at the same path (models are read by path; a LoRA adapter names its parent
relative to it).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sipf.errors import ConfigError, DataError, OutputError
from sipf.generation import Completion, SamplingParams, batch_plan, place

if TYPE_CHECKING:
    from sipf.config import GenerationConfig
    from sipf.engines import ModelRef

INSTALL = "pip install -e '.[ray]'"


class _Worker:
    """One Ray actor: a generator in its own process, with its share of the CPU threads."""

    def __init__(self, backend: str, ref: ModelRef, batch_size: int, threads: int,
                 workdir: str) -> None:
        self.args = backend, ref, batch_size
        self.threads, self.workdir = threads, workdir

    def load(self) -> None:
        import torch
        from transformers.utils import logging as hf_logging

        from sipf.engines import local_generator

        hf_logging.disable_progress_bar()  # N workers' bars, interleaved, say nothing
        torch.set_num_threads(self.threads)
        if os.path.isdir(self.workdir):  # relative model paths, as the driver reads them
            os.chdir(self.workdir)
        self.generator = local_generator(*self.args)

    def prompt_lengths(self, prompts: list[str]) -> list[int]:
        return self.generator.prompt_lengths(prompts)

    def generate_batch(self, prompts: list[str], params: SamplingParams,
                       seed: int) -> list[Completion]:
        return self.generator.generate_batch(prompts, params, seed)


class RayGenerator:
    """The :class:`sipf.generation.Generator` of ``generation.engine: ray``."""

    def __init__(self, cfg: GenerationConfig, ref: ModelRef, batch_size: int) -> None:
        if cfg.backend != "hf":
            raise ConfigError(f"generation.engine: 'ray' shares transformers' batches among "
                              f"workers (generation.backend 'hf'); with generation.backend "
                              f"{cfg.backend!r} use generation.engine 'local'")
        ray = _import_ray()
        if not ray.is_initialized():  # else keep the caller's instance (a test, a notebook)
            _start(ray, cfg.ray_address)
        cpus = ray.cluster_resources().get("CPU", 1.0)
        # Each actor reserves its share of the CPUs (so N actors fit at once, spread over a
        # cluster's nodes) and runs that many torch threads: threads add up to the cores.
        threads = max(1, int(cpus // cfg.workers))
        worker = ray.remote(_Worker).options(num_cpus=cpus / cfg.workers,
                                              scheduling_strategy="SPREAD")
        self.batch_size = batch_size
        self.actors = [worker.remote("hf", ref, batch_size, threads, os.getcwd())
                       for _ in range(cfg.workers)]
        _get(ray, [actor.load.remote() for actor in self.actors])

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        import ray

        prompts = list(prompts)
        lengths = _get(ray, self.actors[0].prompt_lengths.remote(prompts))
        plan = batch_plan(lengths, params.n, self.batch_size, params.seed)
        outputs: list[list[Completion]] = [[] for _ in plan]
        todo = deque(range(len(plan)))
        running: dict[Any, tuple[int, Any]] = {}

        def submit(actor: Any) -> None:
            if todo:
                i = todo.popleft()
                batch = [prompts[p] for p, _ in plan[i].jobs]
                running[actor.generate_batch.remote(batch, params, plan[i].seed)] = i, actor

        for actor in self.actors:
            submit(actor)
        while running:
            [done], _ = ray.wait(list(running), num_returns=1)
            i, actor = running.pop(done)
            outputs[i] = _get(ray, done)
            submit(actor)
        return place(plan, outputs, len(prompts), params.n)

    def close(self) -> None:
        """End the actors now (else when this object is collected), freeing their CPUs."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"generation.engine: 'ray' needs Ray, which is not installed: "
                          f"{INSTALL} (or set generation.engine to 'local')") from None
    return ray


def _start(ray: Any, address: str) -> None:
    """Join the cluster at ``address``, or start a local instance with this machine's cores."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no prompt, no network call
    quiet = dict(logging_level=logging.WARNING, configure_logging=True)
    if address:
        ray.init(address=address, **quiet)
    else:  # no dashboard, a small object store: only prompts and completions travel
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ray.init(num_cpus=cores, include_dashboard=False,
                 object_store_memory=128 * 2**20, **quiet)


def _get(ray: Any, refs: Any) -> Any:
    """``ray.get``, with a worker's input error raised as itself (one line, no traceback)."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, (ConfigError, DataError, OutputError)):
            raise err.cause from None
        raise
