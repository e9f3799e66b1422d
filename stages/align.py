"""Stage `align@itk`: ORPO on the preference pairs into a LoRA adapter (model M_k)."""

from __future__ import annotations

from pathlib import Path

import click

from sipf.alignment import starting_adapter, train_orpo
from sipf.config import load_params
from sipf.models import load_policy, load_tokenizer, save_policy
from sipf.storage import atomic_path, read_parquet
from stages.common import (BASE, M0, data_dir, loop_stage, metrics_dir, model_dir,
                           seed_everything)


@loop_stage("align")
def main(params_path: str, k: int, policy: str) -> None:
    """ORPO into a LoRA adapter (M_k) -> models/it<k>/policy."""
    params = load_params(params_path)
    cfg = params.align
    seed_everything(cfg.seed + k)
    pairs = read_parquet(data_dir(k) / "prefs.parquet", required=("prompt", "chosen", "rejected"))
    # init=sft: a fresh adapter on M0 (the authors'); init=previous: continue M_{k-1}'s.
    adapter = starting_adapter(cfg, Path(policy) if k > 1 else None)
    tokenizer = load_tokenizer(BASE)
    model = train_orpo(load_policy(M0, BASE, params.model), tokenizer, pairs, params.or_weight,
                       cfg, live_dir=metrics_dir(k) / "align", adapter_dir=adapter)
    with atomic_path(model_dir(k) / "policy", directory=True) as tmp:
        save_policy(model, tokenizer, tmp, parent=M0)
    click.echo(f"align@it{k}: ORPO (λ={params.or_weight}) on {len(pairs)} pairs -> "
               f"{model_dir(k) / 'policy'}")
