"""QLoRA on the CPU (docs/scale.md): bitsandbytes' 4-bit NF4 weights under the SFT adapter,
the PRM's adapter, an iteration's adapter on top of M0's, and evaluation, through the stages.

`model.policy: scratch` refuses 4-bit, so the policy is a tiny Llama saved as a local
pretrained model (tests.helpers.tiny_pretrained; hidden size 64, the least bitsandbytes'
CPU blocks take). The adapters stay unmerged on 4-bit weights (sipf.models.load_policy):
folding one in quantizes the sum again.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from sipf.config import load_params
from sipf.models import STACKED, load_base_model, load_policy, load_tokenizer
from sipf.storage import read_parquet
from tests.helpers import labelled_project, run, tiny_pretrained

pytest.importorskip("bitsandbytes")

ADAPTER = {"r": 8, "alpha": 16, "dropout": 0.0}
# The adapters must move off their zero start for folding to matter: a high learning rate.
QLORA = {"model": {"load_in_4bit": True, "lora": True, "lora_params": ADAPTER},
         "sft": {"learning_rate": 0.01},
         "prm": {"lora": True, "epochs": 1, "batch_size": 4},
         "align": {"learning_rate": 0.01, "max_steps": 6, "batch_size": 4, "lora": ADAPTER}}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("qlora")
    tiny = tiny_pretrained(root / "tiny-llama")
    labelled_project(root, **{**QLORA, "model": {**QLORA["model"], "policy": str(tiny)}})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for args in (["train_prm", "--iteration", "1", "--policy", "models/sft"],
                     ["score", "--iteration", "1", "--policy", "models/sft"],
                     ["align", "--iteration", "1", "--policy", "models/sft"],
                     ["evaluate", "--model", "models/it1/policy", "--name", "it1"]):
            result = run(*args)
            assert result.exit_code == 0, f"{args[0]}: {result.output}"
        yield root


def test_sft_prm_and_the_iteration_train_adapters_on_4bit_weights_and_evaluate(project):
    for adapter, parent in (("models/sft", "models/base"), ("models/it1/policy", "models/sft")):
        assert json.loads((project / adapter / "parent.json").read_text()) == {"parent": parent}
        # Only the adapter trained there: M0's, active under it, is saved in models/sft.
        assert sorted(p.name for p in (project / adapter).iterdir()
                      if "adapter" in p.name or p.is_dir()) == ["adapter_config.json",
                                                                "adapter_model.safetensors"]
    # The PRM: a LoRA and a full-precision head on the 4-bit backbone, which scores paths.
    assert json.loads((project / "models/it1/prm/prm.json").read_text())["load_in_4bit"]
    assert len(read_parquet(project / "data/it1/scores.parquet")) == 16
    evaluation = json.loads((project / "metrics/eval/it1.json").read_text())
    assert (evaluation["test"]["total"], evaluation["ood"]["total"]) == (6, 4)


def _dequantized_base(cfg):
    """The base in float32 holding exactly the values its 4-bit weights stand for."""
    import bitsandbytes as bnb

    quantized = load_base_model("models/base", cfg)
    plain = load_base_model("models/base", dataclasses.replace(cfg, load_in_4bit=False))
    with torch.no_grad():
        for name, module in quantized.named_modules():
            if isinstance(module, bnb.nn.Linear4bit):
                weight = bnb.functional.dequantize_4bit(module.weight.data,
                                                        module.weight.quant_state)
                plain.get_submodule(name).weight.copy_(weight)
    return plain


def _on(model, adapters, fold_last):
    """``adapters`` put on ``model`` one by one, each folded in before the next."""
    from peft import PeftModel

    for adapter in adapters:
        if isinstance(model, PeftModel):
            model = model.merge_and_unload()
        model = PeftModel.from_pretrained(model, adapter)
    return model.merge_and_unload() if fold_last else model


@torch.inference_mode()
def _logits(model, batch):
    # Training mode (no dropout here): bitsandbytes then multiplies in float32, as it does
    # while training; in eval mode a CPU with AVX512-BF16 multiplies 4-bit weights in bf16
    # (~5e-3 off the float32 sum here, whichever way the adapters sit).
    return model.train()(**batch).logits


def test_unmerged_4bit_stack_computes_what_was_trained_and_folding_does_not(project,
                                                                            monkeypatch):
    """The policy as load_policy gives it (4-bit base, both adapters unmerged) against the
    exact sum: the dequantized 4-bit weights in float32 plus both adapters, folded there
    (exact). Folding M0's adapter into the 4-bit weights, as load_policy did, quantizes the
    sum again and lands far off it."""
    monkeypatch.chdir(project)
    cfg = load_params().model
    tokenizer = load_tokenizer("models/base")
    rows = read_parquet("data/prepared/test.parquet")
    batch = tokenizer([r["prompt"] + r["solution"] for r in rows], return_tensors="pt",
                      padding=True, add_special_tokens=False)
    adapters = ["models/sft", "models/it1/policy"]

    policy = load_policy("models/it1/policy", "models/base", cfg, merged=True)
    assert policy.base_model.active_adapters == [STACKED.format(0), STACKED.format(1)]
    assert not any(p.requires_grad for p in policy.parameters())
    stack = _logits(policy, batch)
    exact = _logits(_on(_dequantized_base(cfg), adapters, fold_last=True), batch)
    folded = _logits(_on(load_base_model("models/base", cfg), adapters, fold_last=False), batch)
    mask = batch["attention_mask"].bool()
    stack_error = (stack - exact).abs()[mask].max().item()
    folded_error = (folded - exact).abs()[mask].max().item()
    assert stack_error < 1e-5 < 1e-3 < folded_error, (stack_error, folded_error)


def test_full_precision_policies_still_fold_their_adapters_exactly_enough(project,
                                                                          monkeypatch):
    """On float32 weights load_policy folds the parent as before: within float rounding of
    the unmerged stack."""
    monkeypatch.chdir(project)
    cfg = dataclasses.replace(load_params().model, load_in_4bit=False)
    tokenizer = load_tokenizer("models/base")
    batch = tokenizer([r["prompt"] for r in read_parquet("data/prepared/test.parquet")],
                      return_tensors="pt", padding=True, add_special_tokens=False)
    policy = load_policy("models/it1/policy", "models/base", cfg)
    assert policy.active_adapters == ["default"]  # M0's adapter is in the weights
    from peft import PeftModel

    stack = PeftModel.from_pretrained(load_base_model("models/base", cfg), "models/sft",
                                      adapter_name="m0")
    stack.load_adapter("models/it1/policy", adapter_name="it1")
    stack.base_model.set_adapter(["m0", "it1"])
    difference = (_logits(policy, batch) - _logits(stack, batch)).abs()
    assert difference[batch["attention_mask"].bool()].max().item() < 1e-5
