"""Stage `align@itk`: train M_k, a LoRA adapter on M0, on iteration k's alignment data.

SIPF: ORPO on the preference pairs. The baselines (sipf.methods) swap the objective: DPO
(SRF, pSRF), DPO + NLL (RPO), or SFT on the chosen paths (RFT, STaR, pRFT, the ablations).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sipf import layout
from sipf.methods import method_named
from sipf.models import load_policy, load_tokenizer, save_policy
from sipf.pipeline.alignment import (control_config, starting_adapter, train_dpo, train_orpo,
                                     with_adapter)
from sipf.pipeline.sft import train_sft
from sipf.stages.common import LoopStage, loop_stage, read_rows, seed_everything
from sipf.storage import atomic_path

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@loop_stage("align", trains=True)
def main(stage: LoopStage) -> None:
    """Align M0 into a LoRA adapter (M_k) -> models/it<k>/policy."""
    params, it = stage.params, stage.it
    seed_everything(params.align.seed + stage.k)
    pairs = read_rows(it.prefs, "prefs")
    tokenizer = load_tokenizer(layout.BASE)
    m0 = load_policy(layout.M0, layout.BASE, params.model)
    with atomic_path(it.live_dir("align"), directory=True) as live_dir:  # with the adapter
        model, how = _train(stage, pairs, tokenizer, m0, live_dir)
        with atomic_path(it.policy, directory=True) as tmp:
            save_policy(model, tokenizer, tmp, parent=layout.M0)
    stage.say(f"{how} on {len(pairs)} rows -> {it.policy}")


def _train(stage: LoopStage, pairs: list[dict], tokenizer: PreTrainedTokenizerBase,
           m0: PreTrainedModel, live_dir: Path) -> tuple[PreTrainedModel, str]:
    """M_k trained from M0 on ``pairs`` by the method's objective, and how, in words."""
    params, k = stage.params, stage.k
    cfg, objective = params.align, method_named(params.method).objective
    if objective == "orpo":
        # init=sft: a fresh adapter on M0 (the authors'); init=previous: continue M_{k-1}'s.
        adapter = starting_adapter(cfg, Path(stage.policy) if k > 1 else None)
        model = train_orpo(m0, tokenizer, pairs, params.or_weight, cfg, live_dir=live_dir,
                           adapter_dir=adapter)
        how = f"ORPO (λ={params.or_weight})"
    elif objective in ("dpo", "rpo"):
        nll = cfg.rpo_alpha if objective == "rpo" else 0.0
        model = train_dpo(m0, tokenizer, pairs, cfg, nll_weight=nll, live_dir=live_dir)
        how = f"{objective.upper()} (β={cfg.dpo_beta}{f', NLL x{nll}' if nll else ''})"
    else:  # sft: the same budget as ORPO, NLL on the chosen paths only
        model = train_sft(with_adapter(m0, cfg, adapter_dir=None), tokenizer,
                          [p["prompt"] for p in pairs], [p["chosen"] for p in pairs],
                          control_config(cfg), live_dir=live_dir)
        how = "SFT on the chosen paths"
    return model, how
