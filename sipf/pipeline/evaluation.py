"""Greedy evaluation: decode every test question once, extract the answer, score it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sipf.generation import Generator, SamplingParams
from sipf.tasks.kinds import MathKind, Question, TaskKind


def pass_at_k_split(generator: Generator, records: Sequence[Question], prompts: Sequence[str],
                    params: SamplingParams, ks: Sequence[int], kind: TaskKind = MathKind()
                    ) -> dict[str, float]:
    """``{"pass@k": ...}`` from ``params.n`` samples per question (Chen et al.'s unbiased
    estimator, averaged over questions)."""
    from sipf.code.judge import mean_pass_at_k

    if params.temperature <= 0 or params.n < max(ks):
        raise ValueError(f"pass@k needs sampling and n >= {max(ks)} samples per question")
    outputs = generator.generate(list(prompts), params)
    flat = [(record, c.text) for record, completions in zip(records, outputs)
            for c in completions]
    verdicts = iter(kind.judge([r for r, _ in flat], [t for _, t in flat]))
    counts = [(params.n, sum(next(verdicts)[0] for _ in range(params.n))) for _ in outputs]
    return {f"pass@{k}": mean_pass_at_k(counts, k) for k in ks}


@dataclass(frozen=True)
class SplitResult:
    split: str
    accuracy: float
    correct: int
    total: int
    mean_new_tokens: float


def evaluate_split(generator: Generator, records: Sequence[Question], prompts: Sequence[str],
                   split: str, params: SamplingParams, kind: TaskKind = MathKind()
                   ) -> tuple[SplitResult, list[dict]]:
    """Accuracy (code: greedy pass@1) on ``records`` and one prediction row per question;
    ``predicted_answer`` is the extracted number, or for code the sandbox's verdict."""
    if params.temperature != 0 or params.n != 1:
        raise ValueError("evaluation decodes greedily, one completion per question")
    outputs = generator.generate(list(prompts), params)
    verdicts = kind.judge(records, [completion.text for (completion,) in outputs])
    rows = []
    for record, prompt, (completion,), (correct, predicted) in zip(records, prompts, outputs,
                                                                    verdicts):
        rows.append({"split": split, "id": record.id, "question": record.question,
                     "prompt": prompt, "gold_answer": record.answer, "completion": completion.text,
                     "predicted_answer": predicted,
                     "correct": correct,
                     "new_tokens": completion.num_tokens})
    correct = sum(row["correct"] for row in rows)
    total = len(rows)
    tokens = sum(row["new_tokens"] for row in rows)
    return SplitResult(split, correct / total if total else 0.0, correct, total,
                       tokens / total if total else 0.0), rows
