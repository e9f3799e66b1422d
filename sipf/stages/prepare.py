"""Stage `prepare`: task records (with their prompts) to Parquet under data/prepared/."""

from __future__ import annotations

from pathlib import Path

import click

from sipf import layout
from sipf.config import load_params
from sipf.storage import atomic_path, outputs_together, write_json, write_parquet
from sipf.tasks.registry import load_task
from sipf.tasks.prompts import format_prompt
from sipf.stages.common import clear_errors, params_option


@click.command("prepare")
@params_option
@click.option("--out", type=click.Path(file_okay=False), default=str(layout.PREPARED), show_default=True)
@clear_errors
def main(params_path: str, out: str) -> None:
    """Load the task named in params (arith, gsm8k, jsonl) and write train/test/ood Parquet."""
    cfg = load_params(params_path).prepare
    splits = load_task(cfg)
    with outputs_together(out), atomic_path(out, directory=True) as tmp:
        for split, records in splits.items():
            rows = [{**r.to_dict(), "prompt": format_prompt(r.question, cfg.prompt_style)}
                    for r in records]
            write_parquet(rows, Path(tmp) / f"{split}.parquet")
        write_json({"task": cfg.task, "prompt_style": cfg.prompt_style,
                    "counts": {split: len(records) for split, records in splits.items()}},
                   Path(tmp) / "meta.json")
    counts = ", ".join(f"{split} {len(records)}" for split, records in splits.items())
    click.echo(f"prepare: {cfg.task} -> {out} ({counts})")
