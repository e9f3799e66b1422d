"""The `sipf` command: one subcommand per DVC stage."""

from __future__ import annotations

import click

from stages import (align, base, control, evaluate, prefs, prepare, preset, query, report,
                    sample, score, sft, simulate, train_prm)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sipf")
def main() -> None:
    """Self-iterative process feedback for small language models (DVC pipeline stages)."""


for stage in (prepare, base, sft, evaluate, sample, simulate, train_prm, score, prefs, align,
              control, query, preset, report):
    main.add_command(stage.main)
