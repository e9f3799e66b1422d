"""`sipf query "SQL"`: DuckDB over the Parquet outputs of every iteration."""

from __future__ import annotations

from pathlib import Path

import click

from sipf.analysis.query import FORMATS, run_query
from sipf.stages.common import clear_errors


@click.command("query")
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--root", type=click.Path(file_okay=False), default=".", show_default=True,
              help="The project whose data/ to read.")
@clear_errors
def main(sql: str, fmt: str, root: str) -> None:
    """Run SQL over the views samples, rollouts, step_labels, scores, prefs and predictions
    (each with an iteration column)."""
    click.echo(run_query(sql, Path(root), fmt))
