"""Stage `sft`: iteration 0, supervised fine-tuning on gold solutions (model M0)."""

from __future__ import annotations

from pathlib import Path

import click

from sipf import layout
from sipf.config import Params, SftConfig, load_params
from sipf.models import attach_lora, load_base_model, load_tokenizer, save_policy
from sipf.generation import SamplingParams
from sipf.pipeline.sft import VAL_SPLIT, accuracy_curve, hold_out, train_sft
from sipf.storage import atomic_path, outputs_together, write_json
from sipf.stages.common import (clear_errors, params_option, read_split, run_distributed,
                                seed_everything)
from sipf.tasks.registry import task_named


@click.command("sft")
@params_option
@click.option("--base", "base_dir", type=click.Path(file_okay=False), default=str(layout.BASE),
              show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=str(layout.M0),
              show_default=True)
@click.option("--live-dir", type=click.Path(file_okay=False), default=str(layout.SFT_METRICS),
              show_default=True, help="dvclive training curves.")
@clear_errors
def main(params_path: str, base_dir: str, out: str, live_dir: str) -> None:
    """Full fine-tuning for the from-scratch model, LoRA/QLoRA for pretrained ones."""
    params = load_params(params_path)
    if run_distributed(params):
        return
    n = train_on_gold(params, params.sft, base_dir, out, live_dir)
    click.echo(f"sft: trained on {n} solutions -> {out}")


def train_on_gold(params: Params, cfg: SftConfig, base_dir: str, out: str, live_dir: str) -> int:
    """SFT of ``base_dir`` on the gold solutions by ``cfg`` -> ``out``; how many it trained on."""
    seed_everything(cfg.seed)
    (records, prompts), val = hold_out(*read_split("train"), cfg)
    probes = {split: read_split(split) for split in layout.TEST_SPLITS
              if layout.split_file(split).is_file()}  # read first: a bad split fails at once
    tokenizer = load_tokenizer(base_dir)
    model = load_base_model(base_dir, params.model)
    if params.model.lora:
        model = attach_lora(model, params.model.lora_params, params.model.load_in_4bit)
    if val is not None:
        probes = {VAL_SPLIT: val, **probes}
    task = task_named(params.prepare.task)
    sampling = SamplingParams(max_new_tokens=cfg.accuracy_max_new_tokens,
                              stop=task.stop(params.prepare.prompt_style))
    curve = accuracy_curve(tokenizer, probes, len(records), cfg, sampling, kind=task.kind)
    # The checkpoint and the curves appear together, after training, or not at all.
    with outputs_together(out, live_dir), atomic_path(live_dir, directory=True) as live:
        model = train_sft(model, tokenizer, list(prompts), [r.solution for r in records],
                          cfg, live_dir=live, curve=curve)
        with atomic_path(out, directory=True) as tmp:
            save_policy(model, tokenizer, tmp, parent=base_dir)
        # Always written (empty when the probe is off): dvc.yaml declares it as a plot.
        write_json(curve.curve if curve is not None else [], live / "accuracy_curve.json")
    return len(records)
