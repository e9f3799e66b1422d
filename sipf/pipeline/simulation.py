"""Step 2 of an iteration: label each step of a path by inference simulation (docs/method.md §2).

The simulator continues the prefix ``q, s_1..s_j`` K times; the step's soft label is the
fraction of those rollouts that reach the gold answer, its hard label whether more than
δ of them do (Math-Shepherd's hard estimate with δ = 0). Every rollout of every step of
every path goes to the generator in one batched call.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from sipf.config import SimulateConfig
from sipf.generation import Generator, SamplingParams
from sipf.tasks.kinds import MathKind, Question, TaskKind


# ----------------------------------------------------------------------------- paths
def select_paths(paths: Sequence[dict], cfg: SimulateConfig) -> list[dict]:
    """The paths to simulate: all of them, or ``cfg.max_paths`` drawn with ``cfg.seed``.

    Half the draw is correct and half wrong so that the verifier sees both kinds of
    step; when one outcome runs short the other fills the gap. The subset keeps the
    input order.
    """
    if not cfg.max_paths or len(paths) <= cfg.max_paths:
        return list(paths)
    rng = random.Random(f"sipf.simulate/{cfg.seed}")
    correct = [i for i, path in enumerate(paths) if path["outcome"]]
    wrong = [i for i, path in enumerate(paths) if not path["outcome"]]
    rng.shuffle(correct)
    rng.shuffle(wrong)
    n_wrong = min(len(wrong), cfg.max_paths - min(len(correct), cfg.max_paths // 2))
    n_correct = cfg.max_paths - n_wrong
    chosen = sorted(correct[:n_correct] + wrong[:n_wrong])
    return [paths[i] for i in chosen]


def prefix_prompt(prompt: str, steps: Sequence[str], j: int) -> str:
    """The policy prompt and steps 0..j, one per line: the simulator writes the rest,
    the next step or the closing 'The answer is N'."""
    return prompt + "".join(step + "\n" for step in steps[:j + 1])


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
    """
    prompt_index: dict[str, int] = {}  # unique prefix prompts, in first-seen order
    jobs = []  # (path, step index, index of its prefix prompt)
    for path in paths:
        prompt = prompts_by_id[path["question_id"]]
        for j in range(len(path["steps"])):
            text = prefix_prompt(prompt, path["steps"], j)
            jobs.append((path, j, prompt_index.setdefault(text, len(prompt_index))))
    if not jobs:
        return [], []
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                            top_p=cfg.top_p, n=cfg.k, seed=cfg.seed, stop=tuple(stop))
    outputs = generator.generate(list(prompt_index), params)

    # Every rollout judged in one call (math: the continuation's answer; code: the program
    # of prefix + continuation, run in the sandbox's worker pool).
    judged = kind.judge(
        [records_by_id[path["question_id"]] for path, _, index in jobs for _ in outputs[index]],
        [kind.rollout_text(path["steps"][:j + 1], completion.text)
         for path, j, index in jobs for completion in outputs[index]])
    verdicts = iter(judged)
    rollouts, labels = [], []
    for path, j, index in jobs:
        n_correct = 0
        for t, completion in enumerate(outputs[index]):
            correct, answer = next(verdicts)
            n_correct += correct
            rollouts.append({"path_id": path["path_id"], "question_id": path["question_id"],
                             "step_index": j, "rollout_index": t, "completion": completion.text,
                             "answer": answer, "correct": correct})
        labels.append({"path_id": path["path_id"], "question_id": path["question_id"],
                       "step_index": j, "step": path["steps"][j], "n_correct": n_correct,
                       "k": cfg.k, "hard": n_correct > cfg.delta, "soft": n_correct / cfg.k})
    return rollouts, labels


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
