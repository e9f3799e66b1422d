"""Stage `control@itk`: the SFT control that SIPF iteration k must beat.

A model trained from scratch improves with any extra training, so SIPF is compared with
M0 trained for exactly as many extra steps on gold data: the same questions as the
iteration's preference pairs (one gold solution per pair), the same LoRA adapter,
learning rate, batch size and epochs as `align`, NLL only, into a fresh adapter on M0
as `align` does by default, so control k and M_k differ only in what they train on.
"""

from __future__ import annotations

from sipf import layout
from sipf.errors import ConfigError
from sipf.models import load_policy, load_tokenizer, save_policy
from sipf.pipeline.alignment import control_config, with_adapter
from sipf.pipeline.sft import train_sft
from sipf.stages.common import (LoopStage, check_ids, loop_stage, read_rows, seed_everything,
                                train_records_by_id)
from sipf.storage import atomic_path, write_json


@loop_stage("control", needs_policy=False, trains=True)
def main(stage: LoopStage) -> None:
    """Gold-data SFT with the alignment's budget -> models/it<k>/control."""
    params, it = stage.params, stage.it
    cfg = params.align
    if cfg.init != "sft":  # its chain of adapters would be one more DVC dependency per stage
        raise ConfigError("align.init: the control stage supports only 'sft' (a fresh "
                          "adapter on M0 every iteration)")
    seed_everything(cfg.seed + stage.k)
    pairs = read_rows(it.prefs, "prefs")
    records, prompts = train_records_by_id()
    check_ids(pairs, records, it.prefs)
    gold = [(prompts[p["question_id"]], records[p["question_id"]].solution) for p in pairs]
    tokenizer = load_tokenizer(layout.BASE)
    model = with_adapter(load_policy(layout.M0, layout.BASE, params.model), cfg, adapter_dir=None)
    model = train_sft(model, tokenizer, [g[0] for g in gold], [g[1] for g in gold],
                      control_config(cfg))
    with atomic_path(it.control, directory=True) as tmp:
        save_policy(model, tokenizer, tmp, parent=layout.M0)
    write_json({"examples": len(gold), "questions": len({p["question_id"] for p in pairs})},
               it.stage_metrics("control"))
    stage.say(f"gold SFT on {len(gold)} solutions -> {it.control}")
