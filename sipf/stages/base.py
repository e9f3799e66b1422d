"""Stage `base`: the base checkpoint every later stage starts from (models/base)."""

from __future__ import annotations

import click

from sipf import layout
from sipf.config import load_params
from sipf.models import materialize_base
from sipf.storage import atomic_path, outputs_together
from sipf.stages.common import clear_errors, params_option, read_split, seed_everything


@click.command("base")
@params_option
@click.option("--out", type=click.Path(file_okay=False), default=str(layout.BASE),
              show_default=True)
@clear_errors
def main(params_path: str, out: str) -> None:
    """Build the from-scratch model, dequantize a GGUF file once, or point at a hub model."""
    params = load_params(params_path)
    seed_everything(params.seed)
    records, prompts = read_split("train")
    texts = prompts + [r.solution for r in records]  # the char vocabulary of a scratch model
    with outputs_together(out), atomic_path(out, directory=True) as tmp:
        materialize_base(params.model, texts, tmp, seed=params.seed)
    click.echo(f"base: {params.model.policy} -> {out}")
