"""Stage `inputs`: fingerprints of the files params.yaml names -> data/inputs/<stage>.json.

DVC runs it on every `dvc repro` (always_changed); each stage that reads such a file depends
on its JSON, so a changed input reruns that stage and an unchanged one keeps it cached.
"""

from __future__ import annotations

import click

from sipf import layout
from sipf.config import load_params
from sipf.sources import fingerprint, stage_inputs
from sipf.stages.common import clear_errors, params_option
from sipf.storage import outputs_together, write_json


@click.command("inputs")
@params_option
@clear_errors
def main(params_path: str) -> None:
    """Hash every file that prepare, base, simulate and train_prm read by parameter."""
    inputs = stage_inputs(load_params(params_path))
    files = {stage: layout.inputs_file(stage) for stage in layout.INPUT_STAGES}
    prints = {stage: fingerprint(inputs[stage]) for stage in files}
    with outputs_together(*files.values()):
        for stage, path in files.items():
            write_json(prints[stage], path)
    hashed = sum(len(found) for p in prints.values() for found in p.values()
                 if isinstance(found, dict))
    click.echo(f"inputs: {hashed} files hashed for {', '.join(files)} -> {layout.INPUTS}")
