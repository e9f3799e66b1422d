"""How far folding a parent LoRA adapter into 4-bit weights moves a stacked policy's logits.

    PYTHONPATH=. python benchmarks/qlora_stacking.py [--project DIR] [--lr 0.01]

An iteration's policy is two adapters on the base: M0's (SFT) and the iteration's (ORPO),
trained on top of M0. Before, ``load_policy`` folded M0's adapter into the weights
(``merge_and_unload``) and put the iteration's on top; generation folded that one too
(``merged=True``). On 4-bit weights each fold dequantizes, adds and quantizes again. This
loads the same adapters three ways and compares logits at every position of the test
questions' prompts followed by their gold solutions:

- **stack**: both adapters unmerged and active (``load_policy`` now, on 4-bit weights);
- **fold parent**: M0's adapter folded, the iteration's on top (``load_policy`` before);
- **fold both**: both folded (``load_policy(..., merged=True)`` before: sample, simulate,
  evaluate, score).

and the same on the base loaded in float32 (no quantization), where folding is exact up to
float rounding. Without ``--project`` it builds one: the QLoRA test's tiny pretrained Llama
(tests.helpers.tiny_pretrained) through prepare, base, sft (QLoRA) and align (ORPO on
hand-made pairs), at learning rate ``--lr`` for both (the adapters must move off their zero
start for folding to matter). One JSON line per comparison.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click
import torch

from sipf import layout
from sipf.config import ModelConfig, load_params
from sipf.models import (adapter_chain, load_base_model, load_policy, load_tokenizer,
                         stack_adapters)
from sipf.storage import read_parquet


def _build(project: Path, lr: float) -> None:
    from tests.helpers import labelled_project, run, tiny_pretrained

    tiny = tiny_pretrained(project / "tiny-llama")
    labelled_project(project, model={"policy": str(tiny), "load_in_4bit": True, "lora": True,
                                     "lora_params": {"r": 8, "alpha": 16, "dropout": 0.0}},
                     sft={"learning_rate": lr, "max_steps": 12},
                     align={"learning_rate": lr, "max_steps": 12, "batch_size": 4,
                            "logging_steps": 1, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}})
    here = Path.cwd()
    os.chdir(project)
    try:
        result = run("align", "--iteration", "1", "--policy", "models/sft")
        assert result.exit_code == 0, result.output
    finally:
        os.chdir(here)


def _folded(policy: Path, base: Path, cfg: ModelConfig, both: bool) -> torch.nn.Module:
    """The policy as load_policy built it before: every parent adapter folded in, and with
    ``both`` this one too."""
    from peft import PeftModel

    chain, _ = adapter_chain(policy, base)
    model = load_base_model(base, cfg)
    for adapter in reversed(chain):
        if isinstance(model, PeftModel):
            model = model.merge_and_unload()
        model = PeftModel.from_pretrained(model, str(adapter))
    return model.merge_and_unload() if both else model


def _stacked(policy: Path, base: Path, cfg: ModelConfig) -> torch.nn.Module:
    """Every adapter unmerged and active, on ``cfg``'s weights (the 4-bit path of load_policy,
    here for float32 weights too)."""
    chain, _ = adapter_chain(policy, base)
    return stack_adapters(load_base_model(base, cfg), chain)


@torch.inference_mode()
def _logits(model: torch.nn.Module, batches: list[dict]) -> torch.Tensor:
    model.eval()
    out = []
    for batch in batches:
        logits = model(**batch).logits.float()
        out.append(logits[batch["attention_mask"].bool()])
    return torch.cat(out)


def _compare(name: str, a: torch.Tensor, b: torch.Tensor) -> dict:
    diff = (a - b).abs()
    return {"comparison": name, "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "logit_scale": float(a.abs().mean()),
            "argmax_agreement": float((a.argmax(-1) == b.argmax(-1)).float().mean())}


@click.command()
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A project with models/it1/policy trained under 4-bit (default: build one).")
@click.option("--lr", default=0.01, show_default=True, help="SFT and ORPO learning rate.")
def main(project: Path | None, lr: float) -> None:
    if project is None:
        project = Path(tempfile.mkdtemp(prefix="qlora-stacking-"))
        _build(project, lr)
    os.chdir(project)
    params = load_params("params.yaml")
    cfg, base, policy = params.model, layout.BASE, layout.Iteration(1).policy
    tokenizer = load_tokenizer(base)
    tokenizer.padding_side = "right"
    rows = read_parquet(layout.split_file("test"))
    texts = [r["prompt"] + r["solution"] for r in rows]
    batches = [dict(tokenizer(texts[i:i + 8], return_tensors="pt", padding=True,
                              add_special_tokens=False)) for i in range(0, len(texts), 8)]
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    float_cfg = ModelConfig(**{**vars(cfg), "load_in_4bit": False})
    for label, model_cfg in (("4-bit", cfg), ("float32", float_cfg)):
        stack = _logits(_stacked(policy, base, model_cfg), batches)
        if label == "4-bit":  # load_policy itself must give the stack
            assert torch.equal(_logits(load_policy(policy, base, cfg, merged=True), batches),
                               stack)
        for both in (False, True):
            folded = _logits(_folded(policy, base, model_cfg, both), batches)
            what = "fold both" if both else "fold parent"
            print(json.dumps({"weights": label, **_compare(f"{what} vs stack", folded, stack),
                              "positions": tokens}))


if __name__ == "__main__":
    main()
