"""The `sipf` command: one subcommand per DVC stage.

Each subcommand's module is imported only when that subcommand runs: a stage pays for its
own imports (torch, transformers, trl: seconds each) and not for every other stage's. DVC
starts one `sipf` process per stage, ~30 per `dvc repro`, so this saves minutes.
"""

from __future__ import annotations

import importlib

import click

STAGES = ("inputs", "prepare", "base", "sft", "verifier", "evaluate", "sample", "simulate", "train_prm", "score",
          "prefs", "align", "control", "query", "preset", "report")


class LazyStages(click.Group):
    """A group whose commands are ``sipf.stages.<name>.main``, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(STAGES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in STAGES:
            return None
        return importlib.import_module(f"sipf.stages.{cmd_name}").main


@click.group(cls=LazyStages, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sipf")
def main() -> None:
    """Self-iterative process feedback for small language models (DVC pipeline stages)."""


if __name__ == "__main__":  # `python -m sipf.cli`: how a training stage starts its processes
    main()
