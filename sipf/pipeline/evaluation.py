"""Greedy evaluation: decode every test question once, extract the answer, score it; and
pass@k from n samples per question, with Chen et al.'s (2021) unbiased estimator
``1 - C(n-c, k) / C(n, k)`` in its numerically stable product form."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sipf.generation import Generator, SamplingParams
from sipf.tasks.kinds import MathKind, Question, TaskKind


def pass_at_k(n: int, c: int, k: int) -> float:
    """The probability that at least one of ``k`` samples drawn without replacement from ``n``
    (``c`` of them correct) is correct: ``1 - prod_{i=n-c+1..n} (1 - k / i)``."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean of :func:`pass_at_k` over problems given as ``(n, c)`` pairs."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("no problems")
    return sum(values) / len(values)


def pass_at_k_split(generator: Generator, records: Sequence[Question], prompts: Sequence[str],
                    params: SamplingParams, ks: Sequence[int], kind: TaskKind = MathKind()
                    ) -> dict[str, float]:
    """``{"pass@k": ...}`` from ``params.n`` samples per question (Chen et al.'s unbiased
    estimator, averaged over questions)."""
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
