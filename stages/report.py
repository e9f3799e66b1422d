"""`sipf report`: accuracy of every evaluated model, mean ± sd over runs (seeds)."""

from __future__ import annotations

from pathlib import Path

import click

from sipf.report import collect, markdown
from stages.common import clear_errors


@click.command("report")
@click.argument("runs", nargs=-1, type=click.Path(file_okay=False, exists=True))
@clear_errors
def main(runs: tuple[str, ...]) -> None:
    """Markdown table over RUNS (project directories, one per seed; default: this one)."""
    click.echo(markdown(collect([Path(r) for r in runs] or [Path(".")])))
