"""How much a reward model knows, next to the trivial baselines that would fake it.

A PRM that learned only where a step sits in a path (later steps are wrong more often) beats
"every step is correct" on step accuracy and still cannot rank two paths of one question. So
every number here comes with what a baseline gets on the same steps and paths:

- step AUC against the oracle over all steps, and **within one (question, step index)**, where
  position and question carry no information: only knowing the step itself helps;
- the **step-index-only** predictor (each step scored by how often steps at its index are right
  in these paths: in-sample, so generous to it);
- **right above wrong**: over every (right, wrong) pair of paths of one question, how often the
  right one gets the higher reward; for the PRM, for the **policy's own likelihood** (mean
  token log-prob of the path, no training), and for the **oracle's labels** aggregated the same
  way (the ceiling of the metric);
- **length bias**: over pairs of a question's paths with different step counts and different
  rewards, how often the shorter one wins.

No model here: ``score`` feeds it lists (the likelihoods from
:func:`sipf.pipeline.prm.mean_log_probs`).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

from sipf.pipeline.prm import aggregate, ranking_accuracy


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """P(score of a positive > score of a negative), ties half (Mann-Whitney); None without
    both classes."""
    return grouped_auc(scores, labels, [0] * len(scores))


def grouped_auc(scores: Sequence[float], labels: Sequence[bool],
                groups: Sequence[Hashable]) -> float | None:
    """AUC over (positive, negative) pairs taken only within the same group, pooled over
    groups; None when no group holds both classes. Ranks by sorting, O(n log n) a group."""
    by_group: dict[Hashable, list[tuple[float, bool]]] = defaultdict(list)
    for score, label, group in zip(scores, labels, groups, strict=True):
        by_group[group].append((score, bool(label)))
    pairs = wins = 0.0
    for items in by_group.values():
        positives = sum(label for _, label in items)
        negatives = len(items) - positives
        if not positives or not negatives:
            continue
        items.sort(key=lambda item: item[0])
        rank_sum, start = 0.0, 0
        while start < len(items):  # average ranks over ties
            end = start
            while end < len(items) and items[end][0] == items[start][0]:
                end += 1
            rank = (start + 1 + end) / 2
            rank_sum += rank * sum(label for _, label in items[start:end])
            start = end
        wins += rank_sum - positives * (positives + 1) / 2
        pairs += positives * negatives
    return wins / pairs if pairs else None


def step_index_scores(labels: Sequence[Sequence[float]]) -> list[list[float]]:
    """Each step scored by the fraction of right steps at its index over all paths."""
    totals: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for path in labels:
        for j, label in enumerate(path):
            totals[j][0] += float(label > 0.5)
            totals[j][1] += 1
    return [[totals[j][0] / totals[j][1] for j in range(len(path))] for path in labels]


def shorter_path_wins(question_ids: Sequence[Any], lengths: Sequence[int],
                      rewards: Sequence[float]) -> float | None:
    """Over pairs of one question's paths with different lengths and different rewards, the
    fraction where the shorter path has the higher reward (0.5: no length bias)."""
    by_question: dict[Any, list[tuple[int, float]]] = defaultdict(list)
    for question, length, reward in zip(question_ids, lengths, rewards, strict=True):
        by_question[question].append((length, reward))
    pairs = wins = 0
    for paths in by_question.values():
        for i, (length_a, reward_a) in enumerate(paths):
            for length_b, reward_b in paths[i + 1:]:
                if length_a == length_b or reward_a == reward_b:
                    continue
                pairs += 1
                wins += (length_a < length_b) == (reward_a > reward_b)
    return wins / pairs if pairs else None


def ranking_difference(a: dict[Any, list[float]], b: dict[Any, list[float]], draws: int = 2000,
                       seed: int = 0) -> tuple[float, float, float]:
    """Right-above-wrong of reward ``a`` minus reward ``b`` over the same pairs (both as
    :func:`sipf.pipeline.prm.pair_wins` gives them), and a percentile bootstrap 95% interval
    that resamples questions, since a question's pairs are not independent."""
    questions = sorted(a)

    def difference(sample: list[Any]) -> float:
        pairs = sum(len(a[q]) for q in sample)
        return (sum(map(sum, (a[q] for q in sample)))
                - sum(map(sum, (b[q] for q in sample)))) / pairs

    rng = random.Random(seed)
    spread = sorted(difference(rng.choices(questions, k=len(questions))) for _ in range(draws))
    return difference(questions), spread[int(0.025 * draws)], spread[int(0.975 * draws) - 1]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def reward_report(question_ids: Sequence[Any], outcomes: Sequence[bool],
                  step_scores: Sequence[Sequence[float]], rewards: Sequence[float],
                  how: str, oracle: Sequence[Sequence[float]] | None = None,
                  likelihoods: Sequence[float] | None = None) -> dict[str, float | None]:
    """Every metric of the module docs that the inputs allow (``oracle``: the task's step
    labels; ``likelihoods``: the policy's mean token log-prob of each path)."""
    lengths = [len(steps) for steps in step_scores]
    report: dict[str, float | None] = {
        "right_above_wrong": ranking_accuracy(question_ids, outcomes, rewards),
        "shorter_path_wins": shorter_path_wins(question_ids, lengths, rewards),
    }
    if likelihoods is not None:
        report["likelihood_right_above_wrong"] = ranking_accuracy(question_ids, outcomes,
                                                                  likelihoods)
    if oracle is not None:
        flat_scores = [s for path in step_scores for s in path]
        flat_labels = [y > 0.5 for path in oracle for y in path]
        groups = [(q, j) for q, path in zip(question_ids, oracle) for j in range(len(path))]
        by_index = [s for path in step_index_scores(oracle) for s in path]
        report.update({
            "step_auc_vs_oracle": auc(flat_scores, flat_labels),
            "step_auc_within_question_and_index": grouped_auc(flat_scores, flat_labels, groups),
            "step_index_only_auc": auc(by_index, flat_labels),
            "step_index_only_accuracy": (sum((s > 0.5) == y for s, y in zip(by_index, flat_labels))
                                         / len(flat_labels)) if flat_labels else None,
            "oracle_right_above_wrong": ranking_accuracy(
                question_ids, outcomes, [aggregate(path, how) for path in oracle]),
        })
    return {key: _rounded(value) for key, value in report.items()}
