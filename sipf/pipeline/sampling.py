"""Step 1 of an iteration: sample reasoning paths from the current policy (docs/method.md §1).

For every training question the policy writes solutions at temperature T until the
question holds its quota of distinct correct and distinct wrong paths, or its budget
(rounds, wall-clock seconds) is spent. A path whose calculator annotations do not check
out is dropped; paths with the same sequence of equations count once.

All unfinished questions are decoded together, one ``generate`` call per round, so a
batched engine stays full; a round only asks for more of what is still missing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sipf.config import SampleConfig
from sipf.generation import Generator, SamplingParams
from sipf.tasks.base import annotation_holds, annotations
from sipf.tasks.kinds import MathKind, Question, TaskKind, equation_key  # noqa: F401 (re-export)


# ----------------------------------------------------------------------------- path rules
def quota_for_iteration(n: int, iteration: int) -> int:
    """The paper's shrinking quota: ``n`` at iteration 1, then n/2 if n < 8 else n/4 per
    later iteration, never below 1 (a quota of 0, "keep none", stays 0)."""
    if iteration < 1:
        raise ValueError(f"iterations count from 1, got {iteration}")
    for _ in range(iteration - 1):
        if n == 0:
            break
        n = max(1, n // 2 if n < 8 else n // 4)
    return n


def annotations_hold(steps: Sequence[str]) -> bool:
    """Every ``<<expr=value>>`` in the path is true arithmetic (vacuously true with none)."""
    return all(annotation_holds(expr, value)
               for step in steps for expr, value in annotations(step))


def _round_seed(seed: int, iteration: int, round_index: int) -> int:
    """A 32-bit seed per (config seed, iteration, round); hashed so that neighbouring
    rounds or iterations never share a seed."""
    digest = hashlib.sha256(f"sipf.sample/{seed}/{iteration}/{round_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


# ----------------------------------------------------------------------------- sampling
_Path = tuple[str, list[str], str | None, bool]  # text, steps, answer, outcome


@dataclass
class QuestionStats:
    """What sampling one question cost and yielded."""

    question_id: str
    rounds: int = 0
    attempts: int = 0
    correct: int = 0  # kept correct paths
    wrong: int = 0  # kept wrong paths
    invalid: int = 0  # no steps, or an annotation that does not check out
    duplicates: int = 0  # same equations as an earlier sample
    seconds: float = 0.0  # share of generation time, by generated tokens


@dataclass(frozen=True)
class SamplingReport:
    quota_correct: int
    quota_wrong: int
    questions: list[QuestionStats]

    def met_quota(self, stats: QuestionStats) -> bool:
        return stats.correct >= self.quota_correct and stats.wrong >= self.quota_wrong

    @property
    def seconds(self) -> float:
        """Wall time spent generating: for the stage's log, never its metrics file."""
        return sum(s.seconds for s in self.questions)

    def summary(self) -> dict[str, float]:
        """Totals for a stage's log and metrics file (no wall time: the same every run)."""
        qs = self.questions
        return {
            "questions": len(qs),
            "quota_correct": self.quota_correct,
            "quota_wrong": self.quota_wrong,
            "attempts": sum(s.attempts for s in qs),
            "paths_correct": sum(s.correct for s in qs),
            "paths_wrong": sum(s.wrong for s in qs),
            "invalid": sum(s.invalid for s in qs),
            "duplicates": sum(s.duplicates for s in qs),
            "questions_met_quota": sum(self.met_quota(s) for s in qs),
            "questions_no_correct": sum(s.correct == 0 for s in qs),
        }


def sample_paths(generator: Generator, records: Sequence[Question], prompts: Sequence[str],
                 cfg: SampleConfig, iteration: int, generator_name: str, *,
                 stop: Sequence[str] = (), kind: TaskKind = MathKind(),
                 clock: Callable[[], float] = time.perf_counter,
                 ) -> tuple[list[dict], SamplingReport]:
    """Distinct correct and wrong paths for each question, and what it took to get them.

    ``prompts[i]`` is the policy prompt of ``records[i]``; ``stop`` the prompt style's stop
    strings; ``kind`` splits, judges and deduplicates (math or code); ``clock`` is only
    replaced by tests. Rows come question by question, each
    question's paths in generation order. Deterministic for fixed inputs unless
    ``cfg.max_seconds_per_question`` is set.
    """
    if len(records) != len(prompts):
        raise ValueError(f"{len(records)} records but {len(prompts)} prompts")
    if cfg.question_limit:
        records, prompts = records[:cfg.question_limit], prompts[:cfg.question_limit]
    report = SamplingReport(quota_for_iteration(cfg.n_correct, iteration),
                            quota_for_iteration(cfg.n_wrong, iteration),
                            [QuestionStats(record.id) for record in records])
    kept: list[list[_Path]] = [[] for _ in records]
    dedupers = [kind.deduper() for _ in records]

    def unfinished(i: int) -> bool:
        stats = report.questions[i]
        out_of_time = 0 < cfg.max_seconds_per_question < stats.seconds
        return not report.met_quota(stats) and not out_of_time

    for round_index in range(cfg.max_rounds):
        active = [i for i in range(len(records)) if unfinished(i)]
        if not active:
            break
        params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                top_p=cfg.top_p, n=cfg.per_round, stop=tuple(stop),
                                seed=_round_seed(cfg.seed, iteration, round_index))
        start = clock()
        outputs = generator.generate([prompts[i] for i in active], params)
        elapsed = clock() - start
        # A question's share of the round's time is its share of the generated tokens.
        tokens = [sum(c.num_tokens for c in completions) for completions in outputs]
        total = sum(tokens)
        new: list[tuple[int, str, list[str]]] = []  # valid, distinct samples of the round
        for i, completions, n_tokens in zip(active, outputs, tokens):
            stats = report.questions[i]
            stats.rounds += 1
            stats.attempts += len(completions)
            stats.seconds += elapsed * (n_tokens / total if total else 1 / len(active))
            for completion in completions:
                steps = _screen(completion.text, kind, stats, dedupers[i],
                                cfg.drop_false_annotations)
                if steps is not None:
                    new.append((i, completion.text, steps))
        # One judge call per round: a sandbox judges the round's programs in parallel.
        verdicts = kind.judge([records[i] for i, _, _ in new], [text for _, text, _ in new])
        for (i, text, steps), (outcome, answer) in zip(new, verdicts):
            _keep(text, steps, answer, outcome, report.questions[i], kept[i], report)

    rows = []
    for record, paths in zip(records, kept):
        for n, (text, steps, answer, outcome) in enumerate(paths):
            rows.append({"question_id": record.id, "path_id": f"{record.id}/it{iteration}/{n:03d}",
                         "text": text, "steps": steps, "answer": answer, "outcome": outcome,
                         "iteration": iteration, "generator": generator_name})
    return rows, report


def grow_pool(previous: Sequence[dict], fresh: Sequence[dict],
              kind: TaskKind = MathKind()) -> list[dict]:
    """``D_k = D_{k-1} ∪ Sample(M_{k-1})``: the earlier pool, then every fresh path that is
    new for its question (the same dedup rule as within one iteration)."""
    earlier: dict[str, list[Sequence[str]]] = {}
    for row in previous:
        earlier.setdefault(row["question_id"], []).append(row["steps"])
    dedupers: dict[str, object] = {}
    pool = list(previous)
    for row in fresh:
        qid = row["question_id"]
        if qid not in dedupers:
            dedupers[qid] = kind.deduper(earlier.get(qid, ()))
        if dedupers[qid].add(row["steps"]):  # type: ignore[attr-defined]
            pool.append(row)
    return pool


def _screen(text: str, kind: TaskKind, stats: QuestionStats, deduper: object,
            drop_false_annotations: bool) -> list[str] | None:
    """The sample's steps if it is valid and not a duplicate of an earlier one, else None."""
    steps = kind.steps(text)
    if not steps or (drop_false_annotations and not annotations_hold(steps)):
        stats.invalid += 1
        return None
    if not deduper.add(steps):  # type: ignore[attr-defined]
        stats.duplicates += 1
        return None
    return steps


def _keep(text: str, steps: list[str], answer: str | None, outcome: bool, stats: QuestionStats,
          kept: list[_Path], report: SamplingReport) -> None:
    """Keep a judged sample if its outcome's quota is not yet full."""
    if outcome and stats.correct < report.quota_correct:
        stats.correct += 1
    elif not outcome and stats.wrong < report.quota_wrong:
        stats.wrong += 1
    else:
        return
    kept.append((text, steps, answer, outcome))
