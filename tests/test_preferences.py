import random

import pytest

from sipf.config import PrefsConfig
from sipf.errors import ConfigError, DataError
from sipf.pipeline.preferences import PAIR_COLUMNS, build_pairs


def path(question: str, n: int, reward: float, outcome: bool | None) -> dict:
    return {"question_id": question, "path_id": f"{question}/{n}", "text": f"{question} text {n}",
            "reward": reward, "outcome": outcome}


PROMPTS = {"q1": "Q1?", "q2": "Q2?", "q3": "Q3?"}


def pairs_of(rows: list[dict]) -> list[tuple[str, str]]:
    return [(r["chosen_path_id"], r["rejected_path_id"]) for r in rows]


def test_rows_hold_every_column_and_the_question_prompt():
    rows = build_pairs([path("q1", 0, 0.9, True), path("q1", 1, 0.2, False)], PROMPTS,
                       PrefsConfig(), iteration=3)
    assert rows == [{"question_id": "q1", "prompt": "Q1?", "chosen": "q1 text 0",
                     "rejected": "q1 text 1", "chosen_path_id": "q1/0", "rejected_path_id": "q1/1",
                     "chosen_reward": 0.9, "rejected_reward": 0.2, "chosen_outcome": True,
                     "rejected_outcome": False, "iteration": 3}]
    assert tuple(rows[0]) == PAIR_COLUMNS


def test_margin_is_inclusive_and_excludes_smaller_gaps():
    paths = [path("q1", 0, 0.75, True), path("q1", 1, 0.5, False), path("q1", 2, 0.7, False)]
    rows = build_pairs(paths, PROMPTS, PrefsConfig(margin=0.25), 1)
    assert pairs_of(rows) == [("q1/0", "q1/1")]


def test_cap_per_question_spreads_pairs_over_paths():
    # Four correct and four wrong paths give 16 eligible pairs; a cap of 4 should use
    # every path once rather than pair the best path with everything.
    paths = [path("q1", i, 1.0 - 0.1 * i, True) for i in range(4)]
    paths += [path("q1", 4 + i, 0.3 - 0.1 * i, False) for i in range(4)]
    rows = build_pairs(paths, PROMPTS, PrefsConfig(max_pairs_per_question=4), 1)
    assert len(rows) == 4
    used = [p for pair in pairs_of(rows) for p in pair]
    assert len(set(used)) == 8
    # The first pair is the largest gap: best correct against worst wrong.
    assert pairs_of(rows)[0] == ("q1/0", "q1/7")


def test_cap_allows_reuse_once_paths_run_out():
    paths = [path("q1", 0, 0.9, True), path("q1", 1, 0.1, False), path("q1", 2, 0.0, False)]
    rows = build_pairs(paths, PROMPTS, PrefsConfig(max_pairs_per_question=5), 1)
    assert sorted(pairs_of(rows)) == [("q1/0", "q1/1"), ("q1/0", "q1/2")]


def test_require_outcome_pairs_only_correct_over_wrong():
    paths = [path("q1", 0, 0.9, True), path("q1", 1, 0.6, True), path("q1", 2, 0.3, False),
             path("q1", 3, 0.8, False), path("q1", 4, 0.0, None)]
    strict = build_pairs(paths, PROMPTS, PrefsConfig(margin=0.05, max_pairs_per_question=20), 1)
    assert sorted(pairs_of(strict)) == [("q1/0", "q1/2"), ("q1/0", "q1/3"), ("q1/1", "q1/2")]
    loose = build_pairs(paths, PROMPTS, PrefsConfig(margin=0.05, max_pairs_per_question=20,
                                                    require_outcome=False), 1)
    assert ("q1/1", "q1/0") not in pairs_of(loose)  # reward order still holds
    assert {("q1/3", "q1/1"), ("q1/1", "q1/4"), ("q1/2", "q1/4")} <= set(pairs_of(loose))
    assert all(r["chosen_reward"] - r["rejected_reward"] >= 0.05 for r in loose)


def test_pairs_never_cross_questions():
    # q2's only good path and q3's only bad path would pair well if questions mixed.
    paths = [path("q2", 0, 1.0, True), path("q3", 0, 0.0, False),
             path("q1", 0, 0.9, True), path("q1", 1, 0.1, False)]
    rows = build_pairs(paths, PROMPTS, PrefsConfig(), 1)
    assert pairs_of(rows) == [("q1/0", "q1/1")]
    assert all(r["chosen_path_id"].split("/")[0] == r["rejected_path_id"].split("/")[0]
               == r["question_id"] for r in rows)


def test_duplicate_texts_are_one_path():
    twin = dict(path("q1", 1, 0.1, False), text="q1 text 0", path_id="q1/9")
    paths = [path("q1", 0, 0.9, True), twin]
    with pytest.raises(DataError, match="no preference pairs"):
        build_pairs(paths, PROMPTS, PrefsConfig(require_outcome=False), 1)


def test_selection_is_deterministic_and_order_free_but_follows_the_seed():
    # Outcome rewards (0/1) make every gap equal: only the tie-break decides.
    paths = [path(q, i, float(i % 2 == 0), i % 2 == 0) for q in ("q1", "q2") for i in range(8)]
    cfg = PrefsConfig(max_pairs_per_question=2)
    first = build_pairs(paths, PROMPTS, cfg, 1)
    shuffled = paths[:]
    random.Random(7).shuffle(shuffled)
    assert build_pairs(shuffled, PROMPTS, cfg, 1) == first
    assert [r["question_id"] for r in first] == ["q1", "q1", "q2", "q2"]
    picks = {tuple(pairs_of(build_pairs(paths, PROMPTS, PrefsConfig(max_pairs_per_question=2,
                                                                      seed=s), 1)))
             for s in range(6)}
    assert len(picks) > 1


def test_no_pairs_error_reports_counts():
    paths = [path("q1", 0, 0.5, True), path("q1", 1, 0.45, False),  # gap 0.05 < margin
             path("q2", 0, 0.9, True), path("q2", 1, 0.8, True),  # no wrong path
             path("q3", 0, 0.1, False)]
    with pytest.raises(DataError) as err:
        build_pairs(paths, PROMPTS, PrefsConfig(margin=0.2), 1)
    message = str(err.value)
    assert message.startswith("no preference pairs")
    for part in ("3 questions", "5 paths", "margin 0.2", "1 questions have both a correct and a "
                 "wrong path", "largest gap between a correct and a wrong path of one question: "
                 "0.05", "require_outcome=True"):
        assert part in message


def test_no_pairs_error_on_empty_input():
    with pytest.raises(DataError, match=r"0 questions, 0 paths.*none \(no such pair\)"):
        build_pairs([], PROMPTS, PrefsConfig(), 1)


def test_missing_prompt_or_column_is_named():
    with pytest.raises(DataError, match="'q9' has scored paths but no prompt"):
        build_pairs([path("q9", 0, 1.0, True), path("q9", 1, 0.0, False)], PROMPTS,
                    PrefsConfig(), 1)
    broken = path("q1", 0, 1.0, True)
    del broken["reward"]
    with pytest.raises(DataError, match="row 1: field 'reward'"):
        build_pairs([broken], PROMPTS, PrefsConfig(), 1)


@pytest.mark.parametrize("kwargs, key", [({"margin": 0.0}, "prefs.margin"),
                                         ({"max_pairs_per_question": 0},
                                          "prefs.max_pairs_per_question")])
def test_config_validation_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        PrefsConfig(**kwargs)
