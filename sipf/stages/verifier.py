"""Stage `verifier`: the PRM's backbone when `prm.backbone` is 'verifier' (models/verifier).

The paper initialises its verifier from a stronger math model than the policy. Offline there
is none, so this trains one: M0's SFT run again (same recipe, seed and held-out questions, so
the same steps up to M0's stop), carried on to `verifier.stop_at_accuracy` or the end of its
schedule. With any other `prm.backbone` the stage writes a placeholder in a second, since DVC
needs its output either way.
"""

from __future__ import annotations

import click

from sipf import layout
from sipf.config import load_params
from sipf.stages.common import clear_errors, params_option, run_distributed
from sipf.storage import atomic_path, outputs_together, write_json


@click.command("verifier")
@params_option
@clear_errors
def main(params_path: str) -> None:
    """M0's SFT carried on -> models/verifier (with prm.backbone 'verifier')."""
    params = load_params(params_path)
    out, live_dir = layout.VERIFIER, layout.VERIFIER_METRICS
    if params.prm.backbone != "verifier":
        reason = f"prm.backbone is {params.prm.backbone!r}, not 'verifier'"
        with outputs_together(out, live_dir):
            with atomic_path(out, directory=True) as tmp:
                write_json({"skipped": reason}, tmp / layout.SKIPPED)
            with atomic_path(live_dir, directory=True) as tmp:  # dvc.yaml's metrics file
                write_json({"skipped": reason}, tmp / "metrics.json")
        click.echo(f"verifier: skipped ({reason})")
        return
    cfg = params.verifier.sft_config(params.sft)  # refuses before any process starts
    if run_distributed(params):
        return
    from sipf.stages.sft import train_on_gold  # torch: only when there is a model to train

    n = train_on_gold(params, cfg, str(layout.BASE), str(out), str(live_dir))
    click.echo(f"verifier: trained on {n} solutions (M0's run, on to validation accuracy "
               f"{cfg.stop_at_accuracy:g}) -> {out}")
