"""Step 5 of an iteration: preference pairs from scored paths (docs/method.md §4, Eq. 6).

``D_pref = {(q, τ_w, τ_l) : r(τ_w) − r(τ_l) ≥ η}`` over the paths of one question. The
paper leaves open how many pairs a question gives and whether the outcome must agree with
the reward; both are settings here. Pairs are picked deterministically so a rerun of the
stage reproduces its Parquet file byte for byte.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sipf.config import PrefsConfig
from sipf import layout
from sipf.errors import DataError

PAIR_COLUMNS = layout.TABLES["prefs"]
_PATH_FIELDS = ("question_id", "path_id", "text", "reward", "outcome")


@dataclass(frozen=True)
class _Candidate:
    chosen: dict[str, Any]
    rejected: dict[str, Any]
    gap: float
    tie_break: bytes


def build_pairs(scored_paths: Sequence[dict], prompts_by_id: Mapping[str, str],
                cfg: PrefsConfig, iteration: int) -> list[dict]:
    """Preference rows (columns ``PAIR_COLUMNS``), question by question in id order.

    ``scored_paths`` rows need ``question_id, path_id, text, reward, outcome``. Paths are
    only ever paired within their own question. Raises DataError, with counts that say
    which setting to loosen, when no pair qualifies.
    """
    by_question = _group_by_question(scored_paths)
    rows = []
    for question_id in sorted(by_question):
        pairs = _select(_candidates(by_question[question_id], cfg), cfg.max_pairs_per_question)
        if pairs and question_id not in prompts_by_id:
            raise DataError(f"question {question_id!r} has scored paths but no prompt")
        rows.extend(_row(pair, prompts_by_id[question_id], iteration) for pair in pairs)
    if not rows:
        raise DataError(_empty_message(by_question, cfg))
    return rows


def keep_top_correct(scored_paths: Sequence[dict], fraction: float) -> list[dict]:
    """pRFT / pSRF's filter: of each question's correct paths keep the ``fraction`` with the
    highest reward (at least one; ties by path id); wrong and unjudged paths all stay."""
    kept_ids = set()
    for paths in _group_by_question(scored_paths).values():
        correct = sorted(filter(_is_correct, paths), key=lambda p: (-p["reward"], p["path_id"]))
        kept_ids.update(p["path_id"] for p in correct[:max(1, math.ceil(fraction * len(correct)))])
    return [p for p in scored_paths if not _is_correct(p) or p["path_id"] in kept_ids]


def with_outcome_reward(scored_paths: Sequence[dict]) -> list[dict]:
    """Paths whose reward is their outcome (1 right, 0 wrong): pairs by margin then pair a
    correct path with a wrong one, as SRF and RPO do, whatever a reward model said."""
    return [{**p, "reward": float(_is_correct(p))} for p in scored_paths]


def correct_path_rows(scored_paths: Sequence[dict], prompts_by_id: Mapping[str, str],
                      iteration: int) -> list[dict]:
    """SFT data of RFT, STaR and pRFT in the pairs' columns: every distinct correct path as
    ``chosen`` (``rejected`` empty), question by question, then by path id."""
    rows = []
    by_question = _group_by_question(scored_paths)
    for question_id in sorted(by_question):
        for path in sorted(filter(_is_correct, by_question[question_id]),
                           key=lambda p: p["path_id"]):
            if question_id not in prompts_by_id:
                raise DataError(f"question {question_id!r} has scored paths but no prompt")
            rows.append({"question_id": question_id, "prompt": prompts_by_id[question_id],
                         "chosen": path["text"], "rejected": "",
                         "chosen_path_id": path["path_id"], "rejected_path_id": None,
                         "chosen_reward": path["reward"], "rejected_reward": None,
                         "chosen_outcome": path["outcome"], "rejected_outcome": None,
                         "iteration": iteration})
    if not rows:
        raise DataError(f"no correct path among {len(scored_paths)} scored paths: nothing to "
                        f"fine-tune on (sample more paths)")
    return rows


def _group_by_question(scored_paths: Sequence[dict]) -> dict[Any, list[dict]]:
    """Paths per question, each distinct text once (the method pairs deduplicated samples;
    the same text as chosen and rejected would teach nothing)."""
    groups: dict[Any, dict[str, dict]] = defaultdict(dict)
    for index, path in enumerate(scored_paths):
        missing = [name for name in _PATH_FIELDS if name not in path]
        if missing:
            raise DataError("scored path lacks a column", row=index + 1, field=missing[0])
        kept = groups[path["question_id"]].get(path["text"])
        if kept is None or path["path_id"] < kept["path_id"]:
            groups[path["question_id"]][path["text"]] = path
    return {question_id: list(texts.values()) for question_id, texts in groups.items()}


def _is_correct(path: dict) -> bool:
    return path["outcome"] is not None and path["outcome"] == 1


def _is_wrong(path: dict) -> bool:
    return path["outcome"] is not None and path["outcome"] == 0


def _eligible(chosen: dict, rejected: dict, require_outcome: bool) -> bool:
    if chosen is rejected:
        return False
    return not require_outcome or (_is_correct(chosen) and _is_wrong(rejected))


def _candidates(paths: list[dict], cfg: PrefsConfig) -> list[_Candidate]:
    """Every ordered pair of one question's paths that meets the margin (and outcomes)."""
    found = []
    for chosen in paths:
        for rejected in paths:
            if not _eligible(chosen, rejected, cfg.require_outcome):
                continue
            gap = chosen["reward"] - rejected["reward"]
            if gap >= cfg.margin:
                key = f"{cfg.seed}/{chosen['path_id']}/{rejected['path_id']}".encode()
                found.append(_Candidate(chosen, rejected, gap, hashlib.sha256(key).digest()))
    return found


def _select(candidates: list[_Candidate], limit: int) -> list[_Candidate]:
    """Up to ``limit`` pairs, greedily: the pair whose paths have been used least so far,
    then the largest gap, then a seeded hash of the path ids.

    Spreading pairs over many paths gives ORPO more distinct chosen and rejected texts
    than taking the top gaps, which all tend to share the single best and worst path.
    """
    uses: dict[Any, int] = defaultdict(int)

    def priority(c: _Candidate) -> tuple:
        used = (uses[c.chosen["path_id"]], uses[c.rejected["path_id"]])
        return (max(used), sum(used), -c.gap, c.tie_break)

    picked: list[_Candidate] = []
    remaining = list(candidates)
    while remaining and len(picked) < limit:
        best = min(remaining, key=priority)
        remaining.remove(best)
        picked.append(best)
        uses[best.chosen["path_id"]] += 1
        uses[best.rejected["path_id"]] += 1
    return picked


def _row(pair: _Candidate, prompt: str, iteration: int) -> dict:
    return {"question_id": pair.chosen["question_id"], "prompt": prompt,
            "chosen": pair.chosen["text"], "rejected": pair.rejected["text"],
            "chosen_path_id": pair.chosen["path_id"], "rejected_path_id": pair.rejected["path_id"],
            "chosen_reward": pair.chosen["reward"], "rejected_reward": pair.rejected["reward"],
            "chosen_outcome": pair.chosen["outcome"], "rejected_outcome": pair.rejected["outcome"],
            "iteration": iteration}


def _empty_message(by_question: dict[Any, list[dict]], cfg: PrefsConfig) -> str:
    """Why nothing qualified: the counts that tell the user which setting to loosen."""
    n_paths = sum(len(paths) for paths in by_question.values())
    mixed = sum(any(map(_is_correct, paths)) and any(map(_is_wrong, paths))
                for paths in by_question.values())
    gaps = [c["reward"] - w["reward"] for paths in by_question.values()
            for c in paths for w in paths if _eligible(c, w, cfg.require_outcome)]
    kind = "a correct and a wrong path" if cfg.require_outcome else "two paths"
    largest = f"{max(gaps):.4g}" if gaps else "none (no such pair)"
    return (f"no preference pairs: no pair of one question's paths has a reward gap >= "
            f"margin {cfg.margin} ({len(by_question)} questions, {n_paths} paths; {mixed} "
            f"questions have both a correct and a wrong path; largest gap between {kind} of "
            f"one question: {largest}; require_outcome={cfg.require_outcome}). Lower "
            f"prefs.margin, set prefs.require_outcome: false, or sample more paths.")
