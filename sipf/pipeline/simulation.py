"""Step 2 of an iteration: label each step of a path by inference simulation (docs/method.md §2).

The simulator continues the prefix ``q, s_1..s_j`` K times; the step's soft label is the
fraction of those rollouts that reach the gold answer, its hard label whether more than
δ of them do (Math-Shepherd's hard estimate with δ = 0). That is the reference labeller,
and the default. Cheaper ones (``simulate.early_stop``, ``simulate.search``; measured in
benchmarks/simulation_cost.py) change how many rollouts are drawn, never how one is judged:

- early stop draws a prefix's rollouts in rounds (1, 1, 2, 4 ... up to K) and stops once
  its hard label is decided; with δ = 0 that is its first success;
- a search (binary, or linear from the first step) rolls out only the prefixes a search for
  the path's first wrong step visits, and labels the others by assuming steps are right up
  to it and wrong from it on.

Identical prefixes (paths of one question often open alike) are rolled out once. Every
generation round goes to the generator as one batched call over all the prefixes that
need rollouts in it, with a seed derived from ``simulate.seed`` and the round.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sipf.config import SimulateConfig
from sipf.generation import Completion, Generator, SamplingParams
from sipf.tasks.kinds import MathKind, Question, TaskKind


# ----------------------------------------------------------------------------- paths
def select_paths(paths: Sequence[dict], cfg: SimulateConfig) -> list[dict]:
    """The paths to simulate: all of them, or ``cfg.max_paths`` drawn with ``cfg.seed``.

    With ``cfg.paths_per_question`` (n > 0) the draw goes question by question: questions
    with both a right and a wrong path first, then the rest, each in a seeded order, and
    from each up to n paths, half right and half wrong where it has them. The PRM then sees
    right and wrong siblings of one question, whose steps differ where the path went wrong
    (drawn over the whole pool, a question almost never has two simulated paths). With
    n = 0 the draw is over all paths, half right and half wrong. Either way, when one outcome
    runs short the other fills the gap, and the subset keeps the input order.
    """
    if not cfg.max_paths or len(paths) <= cfg.max_paths:
        return list(paths)
    rng = random.Random(f"sipf.simulate/{cfg.seed}")
    if cfg.paths_per_question:
        chosen = _siblings(paths, cfg.max_paths, cfg.paths_per_question, rng)
    else:
        chosen = _balanced(range(len(paths)), paths, cfg.max_paths, rng)
    return [paths[i] for i in sorted(chosen)]


def _balanced(indices: Iterable[int], paths: Sequence[dict], n: int,
              rng: random.Random) -> list[int]:
    """``n`` of ``indices`` (all, if fewer), half right and half wrong where they allow."""
    correct = [i for i in indices if paths[i]["outcome"]]
    wrong = [i for i in indices if not paths[i]["outcome"]]
    rng.shuffle(correct)
    rng.shuffle(wrong)
    n_wrong = min(len(wrong), n - min(len(correct), n // 2))
    return correct[:n - n_wrong] + wrong[:n_wrong]


def _siblings(paths: Sequence[dict], n: int, per_question: int,
              rng: random.Random) -> list[int]:
    by_question: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        by_question.setdefault(path["question_id"], []).append(i)
    questions = sorted(by_question)
    rng.shuffle(questions)
    mixed = {q for q in questions if len({paths[i]["outcome"] for i in by_question[q]}) == 2}
    chosen: list[int] = []
    for q in sorted(questions, key=lambda q: q not in mixed):  # stable: the seeded order kept
        chosen += _balanced(by_question[q], paths, min(per_question, n - len(chosen)), rng)
        if len(chosen) == n:
            break
    return chosen


def prefix_prompt(prompt: str, steps: Sequence[str], j: int) -> str:
    """The policy prompt and steps 0..j, one per line: the simulator writes the rest,
    the next step or the closing 'The answer is N'."""
    return prompt + "".join(step + "\n" for step in steps[:j + 1])


# ----------------------------------------------------------------------------- rollouts
def rollout_rounds(k: int) -> list[int]:
    """Early stopping's round sizes: 1, then as many as were drawn so far (1, 1, 2, 4 for
    k = 8), the last one cut so that they add up to k. Doubling keeps the rounds (and so the
    generate calls) at ~log2(k) while a prefix that succeeds at once costs one rollout."""
    sizes: list[int] = []
    while sum(sizes) < k:
        sizes.append(min(max(1, sum(sizes)), k - sum(sizes)))
    return sizes


def round_seed(seed: int, call: int) -> int:
    """The sampling seed of generate call ``call`` (0, 1, ...) of one simulation: ``seed``
    itself for the first (the reference labeller's only call), then a hash of both, so
    every round samples its own stream and a rerun samples the same ones."""
    if call == 0:
        return seed
    digest = hashlib.sha256(f"sipf.simulate/{seed}/{call}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(eq=False)  # compared and hashed by identity: one object per distinct prefix
class _Prefix:
    """One distinct step prefix of one question, and the rollouts drawn from it."""

    prompt: str
    record: Question
    steps: Sequence[str]
    rollouts: list[tuple[Completion, bool, str | None]] = field(default_factory=list)

    @property
    def n_correct(self) -> int:
        return sum(correct for _, correct, _ in self.rollouts)


class _Estimator:
    """Rolls out prefixes on request, each exactly once.

    A prefix asked for again (by a second path, or a later step of a search) gets its
    first estimate back: no rollouts are drawn or counted twice. (OpenR's OmegaPRM ran
    the estimate of a new state twice, doubling its rollouts and its counts: openr#54.)
    """

    def __init__(self, generator: Generator, cfg: SimulateConfig, stop: Sequence[str],
                 kind: TaskKind) -> None:
        self.generator, self.cfg, self.stop, self.kind = generator, cfg, tuple(stop), kind
        self.calls = 0

    def estimate(self, prefixes: Sequence[_Prefix]) -> None:
        todo = [p for p in dict.fromkeys(prefixes) if not p.rollouts]  # each prefix once
        for size in rollout_rounds(self.cfg.k) if self.cfg.early_stop else [self.cfg.k]:
            if not todo:
                break
            self._roll_out(todo, size)
            todo = [p for p in todo if not self._decided(p)]

    def _decided(self, p: _Prefix) -> bool:
        """Whether the hard label (n_correct > δ) is settled: more rollouts could not
        change it."""
        left = self.cfg.k - len(p.rollouts)
        return p.n_correct > self.cfg.delta or p.n_correct + left <= self.cfg.delta

    def _roll_out(self, prefixes: list[_Prefix], n: int) -> None:
        cfg = self.cfg
        params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                top_p=cfg.top_p, n=n, seed=round_seed(cfg.seed, self.calls),
                                stop=self.stop)
        self.calls += 1
        outputs = self.generator.generate([p.prompt for p in prefixes], params)
        # Every rollout of the round judged in one call (math: the continuation's answer;
        # code: the program of prefix + continuation, run in the sandbox's worker pool).
        verdicts = iter(self.kind.judge(
            [p.record for p, completions in zip(prefixes, outputs) for _ in completions],
            [self.kind.rollout_text(p.steps, c.text)
             for p, completions in zip(prefixes, outputs) for c in completions]))
        for p, completions in zip(prefixes, outputs):
            p.rollouts.extend((c, *next(verdicts)) for c in completions)


def _first_wrong_steps(prefixes_by_path: Sequence[Sequence[_Prefix]], estimator: _Estimator,
                       delta: int, search: str) -> list[int]:
    """Each path's first wrong step (its length when none is), by a search over its prefixes.

    Under the assumption that a wrong step leaves every later one wrong, a correct prefix
    at j means steps 0..j are right and a wrong one means steps j.. are wrong. 'binary'
    probes the middle of the open interval (~log2(n+1) estimates); 'linear' probes its first
    step (right ones until the first wrong: with early stop a right prefix costs ~1 rollout
    and a wrong one all k, so one wrong probe a path is the cheaper trade on short paths).
    All paths search together: each search step rolls out every open search's probe in one
    batch.
    """
    bounds = [[0, len(prefixes)] for prefixes in prefixes_by_path]
    while True:
        probes = [(b, prefixes, (b[0] + b[1]) // 2 if search == "binary" else b[0])
                  for b, prefixes in zip(bounds, prefixes_by_path) if b[0] < b[1]]
        if not probes:
            return [lo for lo, _ in bounds]
        estimator.estimate([prefixes[j] for _, prefixes, j in probes])
        for b, prefixes, j in probes:
            if prefixes[j].n_correct > delta:
                b[0] = j + 1
            else:
                b[1] = j


# ----------------------------------------------------------------------------- simulation
def simulate(generator: Generator, paths: Sequence[dict], records_by_id: Mapping[str, Question],
             prompts_by_id: Mapping[str, str], cfg: SimulateConfig, *,
             stop: Sequence[str] = (), kind: TaskKind = MathKind()
             ) -> tuple[list[dict], list[dict]]:
    """Rollout rows and step-label rows for every step of ``paths`` (rows of
    :func:`sipf.pipeline.sampling.sample_paths`; pass them through :func:`select_paths` first).

    Paths of one question often open with the same steps; an identical prefix is
    rolled out once and its rollouts are shared, which saves compute and gives equal
    prefixes equal labels.

    A label row's ``n_correct`` successes are out of its ``k`` rollouts and ``soft`` is
    ``n_correct / k``: k is ``cfg.k``, or with early stop the rollouts drawn before the hard
    label was decided (so soft, a fraction of a sample stopped at a success, leans high).
    A step a search (``cfg.search``) inferred has ``k = n_correct = 0``, ``soft = float(hard)`` and
    no rollout rows; a step whose prefix was rolled out (for this path's search or
    another's) keeps that estimate's label.
    """
    prefixes: dict[tuple[str, str], _Prefix] = {}  # distinct prefixes, in first-seen order
    jobs = []  # (path, step index, its prefix)
    for path in paths:
        qid, steps = path["question_id"], path["steps"]
        for j in range(len(steps)):
            text = prefix_prompt(prompts_by_id[qid], steps, j)
            prefix = prefixes.setdefault((qid, text), _Prefix(text, records_by_id[qid],
                                                              list(steps[:j + 1])))
            jobs.append((path, j, prefix))
    if not jobs:
        return [], []
    estimator = _Estimator(generator, cfg, stop, kind)
    if cfg.search != "all":
        by_path: dict[str, list[_Prefix]] = {}
        for path, _, prefix in jobs:
            by_path.setdefault(path["path_id"], []).append(prefix)
        first_wrong = dict(zip(by_path, _first_wrong_steps(list(by_path.values()), estimator,
                                                           cfg.delta, cfg.search)))
    else:
        estimator.estimate(list(prefixes.values()))

    rollouts, labels = [], []
    for path, j, prefix in jobs:
        ids = {"path_id": path["path_id"], "question_id": path["question_id"], "step_index": j}
        if not prefix.rollouts:  # inferred by the search
            hard = j < first_wrong[path["path_id"]]
            labels.append({**ids, "step": path["steps"][j], "n_correct": 0, "k": 0,
                           "hard": hard, "soft": float(hard)})
            continue
        for t, (completion, correct, answer) in enumerate(prefix.rollouts):
            rollouts.append({**ids, "rollout_index": t, "completion": completion.text,
                             "answer": answer, "correct": correct})
        n_correct, k = prefix.n_correct, len(prefix.rollouts)
        labels.append({**ids, "step": path["steps"][j], "n_correct": n_correct, "k": k,
                       "hard": n_correct > cfg.delta, "soft": n_correct / k})
    return rollouts, labels


def simulation_cost(paths: Sequence[dict], step_label_rows: Sequence[dict]) -> dict[str, float]:
    """What a labelling cost, from its step-label rows and the paths they label: steps
    labelled, distinct prefixes among them (identical ones are rolled out once), prefixes
    rolled out, and rollouts drawn (each distinct prefix's ``k``, counted once)."""
    steps_by_path = {path["path_id"]: path["steps"] for path in paths}
    k_by_prefix = {(row["question_id"],
                    tuple(steps_by_path[row["path_id"]][:row["step_index"] + 1])): row["k"]
                   for row in step_label_rows}
    drawn = sum(k_by_prefix.values())
    return {"steps": len(step_label_rows), "distinct_prefixes": len(k_by_prefix),
            "estimated_prefixes": sum(k > 0 for k in k_by_prefix.values()),
            "rollouts_drawn": drawn,
            "rollouts_per_step": drawn / len(step_label_rows) if step_label_rows else 0.0}


def outcome_labels(paths: Sequence[dict]) -> list[dict]:
    """An outcome reward model's training labels (SIOF, and the ORM of the PRM-vs-ORM
    comparison): every step of a path gets the path's outcome, in ``simulate``'s columns
    (``n_correct`` and ``k`` are 0: nothing was rolled out)."""
    return [{"path_id": path["path_id"], "question_id": path["question_id"], "step_index": j,
             "step": step, "n_correct": 0, "k": 0, "hard": bool(path["outcome"]),
             "soft": float(bool(path["outcome"]))}
            for path in paths for j, step in enumerate(path["steps"])]


# ----------------------------------------------------------------------------- agreement
def _confusion(predicted: Sequence[bool], truth: Sequence[bool], prefix: str) -> dict[str, float]:
    """Accuracy and confusion counts; 'positive' means 'the step is correct'."""
    pairs = list(zip(predicted, truth))
    counts = {"tp": sum(p and t for p, t in pairs), "fp": sum(p and not t for p, t in pairs),
              "tn": sum(not p and not t for p, t in pairs),
              "fn": sum(not p and t for p, t in pairs)}
    accuracy = (counts["tp"] + counts["tn"]) / len(pairs) if pairs else 0.0
    return {f"{prefix}_accuracy": accuracy, **{f"{prefix}_{k}": v for k, v in counts.items()}}


def label_agreement(step_label_rows: Sequence[dict],
                    oracle_labels: Mapping[str, Sequence[bool]]) -> dict[str, float]:
    """How well the Monte-Carlo labels match exact ones (the arith task's oracle).

    ``oracle_labels`` maps a path id to one boolean per step, as
    :func:`sipf.tasks.arith.step_labels` returns for that path. The soft label counts
    as 'correct' at >= 0.5.
    """
    truth = [bool(oracle_labels[row["path_id"]][row["step_index"]]) for row in step_label_rows]
    hard = [row["hard"] for row in step_label_rows]
    soft = [row["soft"] >= 0.5 for row in step_label_rows]
    return {"steps": len(truth), "oracle_correct": sum(truth),
            **_confusion(hard, truth, "hard"), **_confusion(soft, truth, "soft")}
