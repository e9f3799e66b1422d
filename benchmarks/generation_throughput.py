"""Generation throughput (new tokens per second) of a model at several batch sizes.

    python benchmarks/generation_throughput.py --base models/base --batch-sizes 1,64

Prompts are the first questions of data/prepared/test.parquet in the prepared prompt style;
every sequence is forced to run the full ``--max-new-tokens`` (EOS disabled), so the number
measures the engine, not how early a model happens to stop.
"""

from __future__ import annotations

import json
import time

import click
import torch

from sipf.config import load_params
from sipf.generation import HFGenerator, SamplingParams
from sipf.models import load_policy, load_tokenizer
from sipf.stages.common import read_split


@click.command()
@click.option("--params", "params_path", default="params.yaml")
@click.option("--base", "base_dir", default="models/base")
@click.option("--model", "model_dir", default=None, help="Defaults to --base.")
@click.option("--batch-sizes", default="1,64")
@click.option("--max-new-tokens", default=64)
@click.option("--batches", default=1, help="Batches timed per batch size.")
def main(params_path: str, base_dir: str, model_dir: str | None, batch_sizes: str,
         max_new_tokens: int, batches: int) -> None:
    params = load_params(params_path)
    model = load_policy(model_dir or base_dir, base_dir, params.model)
    tokenizer = load_tokenizer(base_dir)
    _, prompts = read_split("test")
    results = []
    for batch_size in (int(b) for b in batch_sizes.split(",")):
        generator = HFGenerator(model, tokenizer, batch_size=batch_size)
        chosen = (prompts * (1 + batch_size * batches // len(prompts)))[:batch_size * batches]
        generator.generate(chosen[:1], SamplingParams(max_new_tokens=2))  # warm-up
        started = time.perf_counter()
        out = generator.generate(chosen, SamplingParams(max_new_tokens=max_new_tokens,
                                                        temperature=1.0, ignore_eos=True))
        seconds = time.perf_counter() - started
        tokens = sum(c.num_tokens for cs in out for c in cs)
        results.append({"batch_size": batch_size, "sequences": len(chosen), "new_tokens": tokens,
                        "seconds": round(seconds, 2), "tokens_per_second": round(tokens / seconds, 1),
                        "threads": torch.get_num_threads()})
        click.echo(json.dumps(results[-1]))


if __name__ == "__main__":
    main()
