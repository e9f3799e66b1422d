"""Stage `control@itk`: the SFT control that SIPF iteration k must beat.

A model trained from scratch improves with any extra training, so SIPF is compared with
M0 trained for exactly as many extra steps on gold data: the same questions as the
iteration's preference pairs (one gold solution per pair), the same LoRA adapter,
learning rate, batch size and epochs as `align`, NLL only, into a fresh adapter on M0
as `align` does by default, so control k and M_k differ only in what they train on.
"""

from __future__ import annotations

import click

from sipf.pipeline.alignment import control_config, with_adapter
from sipf.config import load_params
from sipf.errors import ConfigError
from sipf.models import load_policy, load_tokenizer, save_policy
from sipf.pipeline.sft import train_sft
from sipf.storage import atomic_path, read_parquet, write_json
from sipf.stages.common import (BASE, M0, data_dir, loop_stage, metrics_dir, model_dir,
                           seed_everything, skipped, train_records_by_id)


@loop_stage("control", needs_policy=False)
def main(params_path: str, k: int) -> None:
    """Gold-data SFT with the alignment's budget -> models/it<k>/control."""
    params = load_params(params_path)
    if skipped(params.method, "control", k, model_dir(k) / "control",
               metrics_dir(k) / "control.json"):
        return
    cfg = params.align
    if cfg.init != "sft":  # its chain of adapters would be one more DVC dependency per stage
        raise ConfigError("align.init: the control stage supports only 'sft' (a fresh "
                          "adapter on M0 every iteration)")
    seed_everything(cfg.seed + k)
    pairs = read_parquet(data_dir(k) / "prefs.parquet", required=("question_id",))
    records, prompts = train_records_by_id()
    gold = [(prompts[p["question_id"]], records[p["question_id"]].solution) for p in pairs]
    tokenizer = load_tokenizer(BASE)
    model = with_adapter(load_policy(M0, BASE, params.model), cfg, adapter_dir=None)
    model = train_sft(model, tokenizer, [g[0] for g in gold], [g[1] for g in gold],
                      control_config(cfg))
    with atomic_path(model_dir(k) / "control", directory=True) as tmp:
        save_policy(model, tokenizer, tmp, parent=M0)
    write_json({"examples": len(gold), "questions": len({p["question_id"] for p in pairs})},
               metrics_dir(k) / "control.json")
    click.echo(f"control@it{k}: gold SFT on {len(gold)} solutions -> {model_dir(k) / 'control'}")
