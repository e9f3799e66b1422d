"""`sipf report`: the paper's tables and figures from this repository's experiments, or the
accuracy of every evaluated model over run directories (one per seed)."""

from __future__ import annotations

from pathlib import Path

import click

from sipf.errors import DataError
from sipf.analysis.report import collect, experiment_runs, markdown, tables
from sipf.storage import atomic_path
from sipf.stages.common import clear_errors


@click.command("report")
@click.argument("runs", nargs=-1, type=click.Path(file_okay=False, exists=True))
@click.option("--out", default="reports", show_default=True, type=click.Path(file_okay=False),
              help="Where the experiments' report goes: results.md and the PNG figures.")
@click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False),
              help="The repository whose `dvc exp` experiments are reported.")
@click.option("--all-commits", is_flag=True,
              help="Also experiments based on other commits than the one checked out.")
@clear_errors
def main(runs: tuple[str, ...], out: str, repo: str, all_commits: bool) -> None:
    """Tables (printed, and in OUT/results.md) and figures of every finished experiment.

    With RUNS (project directories, one per seed): one table of every evaluated model.
    """
    if runs:
        click.echo(markdown(collect([Path(r) for r in runs])))
        return
    from sipf.analysis.figures import draw_all  # matplotlib: only for this command

    experiments = experiment_runs(Path(repo), all_commits)
    if not experiments:
        raise DataError("no finished experiment (`dvc exp show` lists none with an evaluated "
                        "M0): queue them first (docs/experiments.md)", file=Path(repo).resolve())
    text = tables(experiments)
    figures = draw_all(experiments, Path(out))
    results = text + "\n\n" + "\n".join(f"![{f.stem}]({f.name})" for f in figures) + "\n"
    with atomic_path(Path(out) / "results.md") as tmp:
        tmp.write_text(results)
    click.echo(text)
    click.echo(f"\nwrote {Path(out) / 'results.md'} and {len(figures)} figures")
