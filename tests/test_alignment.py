import json

import pytest
import torch
from peft import PeftModel

from sipf.config import AlignConfig, LoraParams
from sipf.errors import ConfigError, DataError
from sipf.pipeline.alignment import build_trainer, starting_adapter, train_orpo
from tests.helpers import tiny_model

TEXTS = ["Q: 1+1\nA:\nThe answer is 2", "Q: 2+3\nA:\nThe answer is 5"]
PAIRS = [{"prompt": f"Q: {a}+{b}\nA:", "chosen": f"\n{a}+{b}={a + b}\nThe answer is {a + b}",
          "rejected": f"\n{a}+{b}={a + b + 1}\nThe answer is {a + b + 1}"}
         for a in range(1, 5) for b in (2, 3)]  # 8 pairs
# Few, large steps: the tiny model must visibly move in two optimizer steps.
FAST = AlignConfig(epochs=1.0, batch_size=4, learning_rate=0.05, warmup_ratio=0.0,
                   lora=LoraParams(r=4, alpha=8), logging_steps=1)


def logits(model, text: str, tokenizer) -> torch.Tensor:
    model.eval()
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        return model(**ids).logits


def lora_weights(model) -> dict[str, torch.Tensor]:
    return {name.replace(".default", ""): p.detach().clone()
            for name, p in model.named_parameters() if "lora_" in name}


def test_trains_an_adapter_that_saves_logs_and_reloads(tmp_path):
    model, tokenizer = tiny_model(TEXTS)
    trained = train_orpo(model, tokenizer, PAIRS, or_weight=0.1, cfg=FAST,
                         live_dir=tmp_path / "live")
    assert isinstance(trained, PeftModel)
    assert any(w.abs().sum() > 0 for n, w in lora_weights(trained).items() if "lora_B" in n)

    trained.save_pretrained(tmp_path / "adapter")
    base, _ = tiny_model(TEXTS)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    text = PAIRS[0]["prompt"] + PAIRS[0]["chosen"]
    assert torch.equal(logits(trained, text, tokenizer), logits(reloaded, text, tokenizer))
    assert not torch.equal(logits(trained, text, tokenizer),
                           logits(tiny_model(TEXTS)[0], text, tokenizer))

    # The paper's Figure 3: chosen and rejected log-likelihoods over training.
    plots = tmp_path / "live" / "plots" / "metrics"
    for name in ("logps/chosen", "logps/rejected", "nll_loss", "log_odds_ratio"):
        rows = (plots / f"{name}.tsv").read_text().splitlines()
        assert len(rows) >= 2, name  # header + the first step at least
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert summary["logps"]["chosen"] <= 0 and summary["logps"]["rejected"] <= 0


def test_pairs_are_encoded_like_sft_and_generation(tmp_path):
    # The char tokenizer has a BOS that SFT and generation never use, and EOS must end
    # both completions so the model learns to stop.
    model, tokenizer = tiny_model(TEXTS)
    trainer = build_trainer(model, tokenizer, PAIRS, 0.1, FAST, tmp_path)
    row = trainer.train_dataset[0]
    prompt_ids = tokenizer(PAIRS[0]["prompt"], add_special_tokens=False)["input_ids"]
    assert row["prompt_input_ids"] == prompt_ids
    for side in ("chosen", "rejected"):
        text_ids = tokenizer(PAIRS[0]["prompt"] + PAIRS[0][side],
                             add_special_tokens=False)["input_ids"]
        assert row[f"{side}_input_ids"] == text_ids + [tokenizer.eos_token_id]
        assert row[f"{side}_labels"] == [-100] * len(prompt_ids) + \
            text_ids[len(prompt_ids):] + [tokenizer.eos_token_id]
        assert len(row[f"{side}_attention_mask"]) == len(row[f"{side}_input_ids"])
    assert trainer.args.beta == 0.1 and not trainer.args.gradient_checkpointing


def test_previous_init_continues_from_the_saved_adapter(tmp_path):
    model, tokenizer = tiny_model(TEXTS)
    first = train_orpo(model, tokenizer, PAIRS, 0.1, FAST)
    first.save_pretrained(tmp_path / "m1")
    saved = lora_weights(first)

    cfg = AlignConfig(init="previous", epochs=1.0, batch_size=4, learning_rate=0.0,
                      lora=LoraParams(r=4, alpha=8))
    start = starting_adapter(cfg, tmp_path / "m1")
    assert start == tmp_path / "m1"
    # A zero learning rate leaves the starting point untouched: it must be m1's weights.
    second = train_orpo(tiny_model(TEXTS)[0], tokenizer, PAIRS, 0.1, cfg, adapter_dir=start)
    continued = lora_weights(second)
    assert continued.keys() == saved.keys()
    assert all(torch.equal(continued[k], saved[k]) for k in saved)
    assert all(p.requires_grad for n, p in second.named_parameters() if "lora_" in n)


def test_starting_adapter_follows_init(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    assert starting_adapter(AlignConfig(), tmp_path / "adapter") is None
    assert starting_adapter(AlignConfig(init="previous"), None) is None
    assert starting_adapter(AlignConfig(init="previous"), tmp_path) is None  # a full model


def test_bad_inputs_are_named(tmp_path):
    model, tokenizer = tiny_model(TEXTS)
    with pytest.raises(DataError, match="no preference pairs"):
        train_orpo(model, tokenizer, [], 0.1, FAST)
    with pytest.raises(DataError, match="not a LoRA adapter"):
        train_orpo(model, tokenizer, PAIRS, 0.1, FAST, adapter_dir=tmp_path)
    with pytest.raises(ConfigError, match="align.init"):
        AlignConfig(init="base")
    with pytest.raises(ConfigError, match="align.lora.dropout"):
        AlignConfig(lora=LoraParams(dropout=1.0))


def test_nll_term_covers_the_chosen_response_only(tmp_path):
    """The ORPO NLL is -mean log p(response | prompt): prompt tokens carry no loss."""
    model, tokenizer = tiny_model([p["prompt"] + p["chosen"] for p in PAIRS])
    trainer = build_trainer(model, tokenizer, PAIRS, 0.1, FAST, tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    chosen_logps, _, _, _, nll = trainer.concatenated_forward(trainer.model, batch)[:5]
    assert nll.item() == pytest.approx(-chosen_logps.mean().item())
    assert nll.item() < 10  # per-token scale, not a sum
