"""SFT tokens per epoch and training throughput, side by side, for each scratch tokenizer.

    OMP_NUM_THREADS=2 python benchmarks/sft_throughput.py --steps 80 --tokenizers char,bpe

For each tokenizer (``model.scratch.tokenizer``) on the offline default's training split:
tokens an epoch (prompt + solution + EOS), then two trainers on the same initial weights,
data order, batch size and thread count, ``--steps`` optimizer steps each:

- **plain**: an eager PyTorch loop (AdamW, the loss on the solution tokens only), the floor
  of what any trainer can do per token;
- **sipf**: ``sipf.pipeline.sft.train_sft`` (TRL's SFTTrainer with our arguments), no probes.

Throughput is real (non-padding) tokens per second (sipf: the same count, as TRL draws its own
order of the same data); the ratio sipf / plain is the trainer's
overhead. One JSON line per (tokenizer, trainer), then a summary table.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time

import click
import torch

from sipf.config import load_params
from sipf.models import build_scratch_model, build_scratch_tokenizer
from sipf.pipeline.sft import hold_out, train_sft
from sipf.stages.common import read_split


def _batches(tokenizer, prompts: list[str], solutions: list[str], batch_size: int, steps: int,
             seed: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(input ids, attention mask, labels) per step: right-padded, prompt tokens masked."""
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    order = (order * (1 + steps * batch_size // len(order)))[:steps * batch_size]
    batches = []
    for start in range(0, len(order), batch_size):
        rows = []
        for i in order[start:start + batch_size]:
            prompt = tokenizer(prompts[i])["input_ids"]
            solution = tokenizer(solutions[i])["input_ids"] + [tokenizer.eos_token_id]
            rows.append((prompt + solution, [-100] * len(prompt) + solution))
        width = max(len(ids) for ids, _ in rows)
        pad = tokenizer.pad_token_id
        ids = torch.tensor([r[0] + [pad] * (width - len(r[0])) for r in rows])
        mask = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows])
        labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
        batches.append((ids, mask, labels))
    return batches


def _plain(model, batches, learning_rate: float) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    model.train()
    started = time.perf_counter()
    for ids, mask, labels in batches:
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--steps", default=80, show_default=True)
@click.option("--tokenizers", default="char,bpe", show_default=True)
def main(params_path: str, steps: int, tokenizers: str) -> None:
    params = load_params(params_path)
    (records, prompts), _ = hold_out(*read_split("train"), params.sft)
    all_records, all_prompts = read_split("train")
    texts = all_prompts + [r.solution for r in all_records]  # what `base` builds the vocab of
    solutions = [r.solution for r in records]
    cfg = dataclasses.replace(params.sft, max_steps=steps, accuracy_every=0.0,
                              stop_at_accuracy=0.0)
    rows = []
    for name in tokenizers.split(","):
        scratch = dataclasses.replace(params.model.scratch, tokenizer=name)
        tokenizer = build_scratch_tokenizer(scratch, texts)
        per_epoch = sum(len(tokenizer(p + s)["input_ids"]) + 1 for p, s in zip(prompts, solutions))
        batches = _batches(tokenizer, list(prompts), solutions, cfg.batch_size, steps, cfg.seed)
        trained = int(sum(mask.sum() for _, mask, _ in batches))
        for trainer in ("plain", "sipf"):
            torch.manual_seed(params.seed)
            model = build_scratch_model(scratch, tokenizer, params.seed)
            if trainer == "plain":
                seconds = _plain(model, batches, cfg.learning_rate)
            else:
                started = time.perf_counter()
                train_sft(model, tokenizer, list(prompts), solutions, cfg)
                seconds = time.perf_counter() - started
            rows.append({"tokenizer": name, "vocab": len(tokenizer), "trainer": trainer,
                         "tokens_per_epoch": per_epoch, "steps": steps,
                         "tokens": trained, "seconds": round(seconds, 1),
                         "tokens_per_second": round(trained / seconds),
                         "threads": torch.get_num_threads()})
            click.echo(json.dumps(rows[-1]))
    click.echo("\n| tokenizer | tokens an epoch | trainer | tokens/s | sipf / plain |")
    click.echo("|---|---|---|---|---|")
    for row in rows:
        plain = next(r for r in rows if r["tokenizer"] == row["tokenizer"]
                     and r["trainer"] == "plain")
        click.echo(f"| {row['tokenizer']} | {row['tokens_per_epoch']:,} | {row['trainer']} | "
                   f"{row['tokens_per_second']:,} | "
                   f"{row['tokens_per_second'] / plain['tokens_per_second']:.2f} |")


if __name__ == "__main__":
    main()
