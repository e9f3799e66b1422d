"""The process reward model: step-closing tokens, masked loss, training, checkpoints."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainingArguments

from sipf.config import PrmConfig
from sipf.errors import ConfigError, DataError
from sipf.models import save_policy
from sipf.pipeline.prm import (LABEL_TOKENS, PrmCollator, PrmTrainer, _BestEpoch,
                               _token_classifier, aggregate, build_examples,
                               closing_token_positions, encode, format_path, label_token_ids,
                               likelihood_step_scores, load_prm, pair_wins, path_prefix,
                               prm_loss, ranking_accuracy, ranking_set, read_meta, score_steps,
                               split_questions,
                               start_from_lm_head, step_accuracy, train_prm)
from sipf.pipeline.token_prm import TokenPrm, encode_example, encode_steps, fit_calibration
from tests.helpers import tiny_model

QUESTION = "What is 2+3?"
STEPS = ["2+3=5 good", "check: bad", "", "so 5"]


def _rows(n_questions: int, seed: int = 0, monotone: bool = False) -> list[dict]:
    """A separable task: a step is correct iff it says good+ (the label is the word); with
    ``monotone``, as real step labels are, every step after a wrong one is wrong."""
    rng = random.Random(seed)
    rows = []
    for q in range(n_questions):
        for _ in range(2):
            labels = [float(rng.random() < (0.7 if monotone else 0.5)) for _ in range(3)]
            if monotone:
                labels = [min(labels[:j + 1]) for j in range(3)]
            rows.append({"question_id": q, "question": f"Q{q}?",
                         "steps": ["good+" if y else "bad-" for y in labels], "labels": labels})
    return rows


def _tiny_backbone(path: Path):
    model, tokenizer = tiny_model(["good+ bad-"])
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return tokenizer


def _val_rows(rows: list[dict], cfg: PrmConfig) -> list[dict]:
    _, val = split_questions([r["question_id"] for r in rows], cfg.val_fraction, cfg.seed)
    return [r for r in rows if r["question_id"] in val]


def _bpe(byte_level: bool) -> PreTrainedTokenizerFast:
    """A tiny trained BPE. Without a pre-tokenizer its merges span newlines ("5.\\n2"); the
    byte-level variant trims whitespace out of offsets, as GPT-2-style tokenizers do."""
    core = Tokenizer(models.BPE(unk_token=None if byte_level else "<unk>"))
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    if byte_level:
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        core.decoder = decoders.ByteLevel()
    text, _ = format_path(QUESTION, STEPS)
    core.train_from_iterator([text] * 20, trainers.BpeTrainer(
        vocab_size=len(alphabet) + 120, special_tokens=["<pad>", "<unk>", "<s>"],
        initial_alphabet=alphabet, show_progress=False))
    bos = core.token_to_id("<s>")
    core.post_processor = processors.Sequence([
        *([processors.ByteLevel(trim_offsets=True)] if byte_level else []),
        processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>")


# ----------------------------------------------------------------------------- positions
def test_char_tokenizer_closing_tokens_are_the_newlines() -> None:
    _, tokenizer = tiny_model()
    text, closing = format_path(QUESTION, STEPS)
    ids, positions = closing_token_positions(tokenizer, text, closing)
    assert text == QUESTION + "\nPlease reason step by step.\n" + "\n".join(STEPS) + "\n"
    assert positions == closing == [i for i, c in enumerate(text) if c == "\n"][2:]
    assert len(ids) == len(text)


@pytest.mark.parametrize("byte_level", [False, True])
def test_bpe_closing_token_covers_the_newline(byte_level: bool) -> None:
    tokenizer = _bpe(byte_level)
    text, closing = format_path(QUESTION, STEPS)
    encoding = tokenizer(text, return_offsets_mapping=True)
    if not byte_level:  # the point of this tokenizer: some newline is merged with neighbours
        assert any(text[s:e] != "\n" and "\n" in text[s:e] for s, e in encoding["offset_mapping"])
    ids, positions = closing_token_positions(tokenizer, text, closing)
    assert ids[0] == tokenizer.bos_token_id  # the special token is skipped, not matched
    for char, position in zip(closing, positions):
        start, end = encoding["offset_mapping"][position]
        assert start <= char < end
        # The token sees the whole step and nothing of the following step beyond what the
        # merge forced into it.
        assert tokenizer.decode(ids[1:position + 1]).startswith(text[:char + 1])
    assert positions == sorted(positions)


def test_encode_truncates_steps_and_maps_hard_or_soft_targets() -> None:
    _, tokenizer = tiny_model()
    [example] = build_examples([{"question_id": 1, "question": QUESTION, "steps": STEPS,
                                 "labels": [1.0, 0.25, 0.75, 0.0]}])
    last_kept = example["closing"][2]
    hard = encode(tokenizer, example, PrmConfig(max_length=last_kept + 1))
    soft = encode(tokenizer, example, PrmConfig(max_length=last_kept + 1, label="soft"))
    positions = [i for i, m in enumerate(hard["mask"]) if m]
    assert positions == example["closing"][:3]  # the fourth step was cut off: no label
    assert [hard["target"][i] for i in positions] == [1.0, 0.0, 1.0]
    assert [soft["target"][i] for i in positions] == [1.0, 0.25, 0.75]
    assert encode(tokenizer, example, PrmConfig(max_length=8)) is None


def test_build_examples_rejects_mismatched_labels() -> None:
    with pytest.raises(DataError, match="row 1.*labels.*2 steps but 1 labels"):
        build_examples([{"question_id": 0, "question": "q", "steps": ["a", "b"],
                         "labels": [1.0]}])
    with pytest.raises(DataError, match="labels"):
        build_examples([{"question_id": 0, "question": "q", "steps": ["a"], "labels": [2.0]}])


# ----------------------------------------------------------------------------- loss
def test_loss_ignores_positions_that_close_no_step(tmp_path: Path) -> None:
    model, tokenizer = tiny_model()
    [example] = build_examples([{"question_id": 0, "question": QUESTION, "steps": STEPS[:2],
                                 "labels": [1.0, 0.0]}])
    short = encode(tokenizer, build_examples([{"question_id": 1, "question": "q",
                                               "steps": ["x"], "labels": [1.0]}])[0],
                   PrmConfig())
    batch = PrmCollator(tokenizer.pad_token_id)([encode(tokenizer, example, PrmConfig()), short])
    assert batch["mask"].sum() == 3 and not batch["mask"][1, len(short["input_ids"]):].any()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = PrmTrainer(model=model, args=args)
    model.eval()  # no dropout: the two losses must agree exactly

    def loss(b: dict) -> float:
        return trainer.compute_loss(model, b).item()

    changed = dict(batch, target=batch["target"].clone())
    changed["target"][~batch["mask"]] = 1.0
    assert loss(changed) == loss(batch)
    changed = dict(batch, target=batch["target"].clone())
    changed["target"][batch["mask"]] = 1.0 - changed["target"][batch["mask"]]
    assert loss(changed) != loss(batch)

    logits = torch.randn(2, 5, 2)
    target, mask = torch.rand(2, 5), torch.rand(2, 5) > 0.5
    other = logits.clone()
    other[~mask] = torch.randn_like(other[~mask])
    assert torch.equal(prm_loss(logits, target, mask), prm_loss(other, target, mask))
    assert prm_loss(logits, target, torch.zeros_like(mask)).item() == 0.0


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module", params=["classifier", "lm_tokens"])
def trained(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict:
    root = tmp_path_factory.mktemp("prm")
    tokenizer = _tiny_backbone(root / "backbone")
    rows = _rows(24, monotone=request.param == "lm_tokens")  # it scores by the running min
    cfg = PrmConfig(kind=request.param, epochs=6, learning_rate=2e-2, batch_size=8,
                    val_fraction=0.2)
    metrics = train_prm(root / "backbone", tokenizer, build_examples(rows), cfg, root / "prm",
                        live_dir=root / "live")
    return {"root": root, "rows": rows, "cfg": cfg, "metrics": metrics}


def test_prm_learns_a_separable_task(trained: dict) -> None:
    metrics = trained["metrics"]
    assert metrics["val_step_accuracy"] >= 0.9
    assert metrics["val_questions"] == 5 and metrics["train_questions"] == 19
    assert metrics["train_steps"] == 6 * 5  # 38 paths in batches of 8, six epochs
    live = json.loads((trained["root"] / "live" / "metrics.json").read_text())
    assert live["best_epoch"] == metrics["best_epoch"]
    assert live["best_val_step_accuracy"] == metrics["val_step_accuracy"]


def test_best_epoch_is_kept_and_checkpoint_round_trips(trained: dict) -> None:
    metrics = trained["metrics"]
    per_epoch = metrics["per_epoch"]
    best = per_epoch[metrics["best_epoch"] - 1]
    assert best["val_step_accuracy"] == max(row["val_step_accuracy"] for row in per_epoch)
    assert metrics["val_step_accuracy"] == best["val_step_accuracy"]
    model, tokenizer = load_prm(trained["root"] / "prm")
    val = _val_rows(trained["rows"], trained["cfg"])
    scores = score_steps(model, tokenizer, [r["question"] for r in val],
                         [r["steps"] for r in val], batch_size=3)
    assert step_accuracy(scores, [r["labels"] for r in val]) == metrics["val_step_accuracy"]
    # The loaded weights are the best epoch's, to the last bit that matters.
    flat = torch.tensor([s for path in scores for s in path])
    labels = torch.tensor([y for r in val for y in r["labels"]])
    loss = torch.nn.functional.binary_cross_entropy(flat.clamp(1e-7, 1 - 1e-7), labels)
    assert loss.item() == pytest.approx(best["val_loss"], abs=1e-5)
    again = score_steps(*load_prm(trained["root"] / "prm"), [r["question"] for r in val],
                        [r["steps"] for r in val], batch_size=16)
    assert [s for path in again for s in path] == pytest.approx(flat.tolist(), abs=1e-6)


def test_best_epoch_tracker_restores_the_best_weights() -> None:
    layer = torch.nn.Linear(2, 2)
    best = _BestEpoch()
    for epoch, (accuracy, loss) in enumerate([(0.5, 0.7), (0.9, 0.4), (0.9, 0.5), (0.7, 0.3)],
                                             start=1):
        with torch.no_grad():
            layer.weight.fill_(epoch)
        best.offer(layer, epoch, (accuracy, -loss))
    best.restore(layer)
    assert best.epoch == 2 and torch.all(layer.weight == 2)


def test_ranking_set_takes_unsimulated_questions_with_both_outcomes() -> None:
    outcomes = {1: (True, False), 2: (True, True), 3: (False, True, False), 4: (True, False),
                5: (False, True), 6: (False,)}
    pool = [{"question_id": q, "steps": [f"s{i}"], "outcome": o}
            for q, row in outcomes.items() for i, o in enumerate(row)]

    def text(q: int) -> str:
        return f"Q{q}?"
    every = ranking_set(pool, text, exclude={4}, limit=10, seed=0, prompt_style="compact")
    assert sorted({r["question_id"] for r in every}) == [1, 3, 5]
    assert len(every) == 2 + 3 + 2  # every path of a chosen question
    first = next(r for r in every if r["question_id"] == 3)
    assert first == {"question_id": 3, "prefix": path_prefix("Q3?", "compact"), "steps": ["s0"],
                     "outcome": False}
    two = ranking_set(pool, text, exclude={4}, limit=2, seed=0)
    assert len({r["question_id"] for r in two}) == 2
    assert two == ranking_set(pool, text, exclude={4}, limit=2, seed=0)  # seeded
    assert ranking_set(pool, text, exclude={1, 3, 4, 5}, limit=10, seed=0) == []


def test_ranking_selection_keeps_training_only_where_it_ranks_better(tmp_path: Path) -> None:
    tokenizer = _tiny_backbone(tmp_path / "backbone")
    rows = _rows(16, monotone=True)
    # fresh questions, each with a right path and a wrong one that slips at step 1, 2 or 3
    pool = [{"question_id": 100 + q, "steps": steps, "outcome": "bad-" not in steps}
            for q in range(6) for steps in (["good+"] * 3,
                                            ["good+"] * (q % 3) + ["bad-"] * (3 - q % 3))]
    ranking = ranking_set(pool, lambda q: f"Q{q}?", (), 6, 0)
    assert len({r["question_id"] for r in ranking}) == 6

    # a rate that moves nothing: every epoch ranks as the start does, and ties keep the start
    still = PrmConfig(kind="lm_tokens", epochs=2, learning_rate=1e-9, batch_size=8,
                      val_fraction=0.2, select="ranking", select_questions=6)
    metrics = train_prm(tmp_path / "backbone", tokenizer, build_examples(rows), still,
                        tmp_path / "still", ranking=ranking)
    assert metrics["best_epoch"] == 0 and metrics["start"]["epoch"] == 0
    assert metrics["val_ranking"] == metrics["start"]["val_ranking"] \
        == metrics["per_epoch"][0]["val_ranking"]
    assert (metrics["ranking_questions"], metrics["ranking_paths"]) == (6, len(ranking))
    seen = set(read_meta(tmp_path / "still")["questions"])
    assert seen == {r["question_id"] for r in rows} | {r["question_id"] for r in ranking}

    # the classifier starts at a random head; learning the steps lifts its ranking
    learns = dataclasses.replace(still, kind="classifier", epochs=6, learning_rate=2e-2)
    metrics = train_prm(tmp_path / "backbone", tokenizer, build_examples(rows), learns,
                        tmp_path / "learns", ranking=ranking)
    assert metrics["best_epoch"] >= 1
    assert metrics["val_ranking"] == 1.0 > metrics["start"]["val_ranking"]
    assert metrics["val_ranking"] == max(e["val_ranking"] for e in metrics["per_epoch"])


def test_ranking_selection_needs_questions_to_rank(tmp_path: Path) -> None:
    tokenizer = _tiny_backbone(tmp_path / "backbone")
    cfg = PrmConfig(kind="lm_tokens", epochs=1, batch_size=8, select="ranking")
    with pytest.raises(DataError, match="no question outside the simulated ones"):
        train_prm(tmp_path / "backbone", tokenizer, build_examples(_rows(4)), cfg,
                  tmp_path / "prm", ranking=[])
    assert not (tmp_path / "prm").exists()


def test_score_steps_shapes_and_empty_paths(trained: dict) -> None:
    model, tokenizer = load_prm(trained["root"] / "prm")
    scores = score_steps(model, tokenizer, ["Q1?", "Q2?"], [["good+", "bad-"], []])
    assert len(scores[0]) == 2 and scores[1] == []
    assert scores[0][0] > 0.5 > scores[0][1]


def test_lora_prm_saves_adapter_with_head_and_is_deterministic(tmp_path: Path) -> None:
    tokenizer = _tiny_backbone(tmp_path / "backbone")
    rows = _rows(6)
    cfg = PrmConfig(kind="classifier", epochs=1, batch_size=4, lora=True, val_fraction=0.3)
    runs = [train_prm(tmp_path / "backbone", tokenizer, build_examples(rows), cfg,
                      tmp_path / f"prm{i}") for i in range(2)]
    assert runs[0] == runs[1]
    adapter = json.loads((tmp_path / "prm0" / "adapter_config.json").read_text())
    assert "score" in adapter["modules_to_save"]
    with safe_open(str(tmp_path / "prm0" / "adapter_model.safetensors"), "pt") as weights:
        assert any("score" in key for key in weights.keys())
    model, tokenizer = load_prm(tmp_path / "prm0")
    val = _val_rows(rows, cfg)
    scores = score_steps(model, tokenizer, [r["question"] for r in val], [r["steps"] for r in val])
    flat = torch.tensor([s for path in scores for s in path])
    labels = torch.tensor([y for r in val for y in r["labels"]])
    loss = torch.nn.functional.binary_cross_entropy(flat, labels).item()
    assert loss == pytest.approx(runs[0]["per_epoch"][0]["val_loss"], abs=1e-5)


def test_single_question_trains_without_validation(tmp_path: Path) -> None:
    tokenizer = _tiny_backbone(tmp_path / "backbone")
    metrics = train_prm(tmp_path / "backbone", tokenizer, build_examples(_rows(1)),
                        PrmConfig(epochs=2, batch_size=2), tmp_path / "prm")
    assert metrics["val_questions"] == 0 and metrics["val_step_accuracy"] is None
    assert metrics["best_epoch"] == 2 and (tmp_path / "prm" / "prm.json").is_file()


@pytest.mark.parametrize("kind", ["classifier", "lm_tokens"])
def test_a_lora_policy_backbone_is_merged_and_fully_trained(tmp_path: Path, kind: str) -> None:
    """Iteration k >= 2: the PRM starts from M_{k-1}, a LoRA adapter on M0."""
    from peft import LoraConfig, get_peft_model

    tokenizer = _tiny_backbone(tmp_path / "m0")
    policy = get_peft_model(AutoModelForCausalLM.from_pretrained(tmp_path / "m0"),
                            LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    save_policy(policy, tokenizer, tmp_path / "adapter", parent=tmp_path / "m0")
    cfg = PrmConfig(kind=kind, epochs=1, learning_rate=1e-2, batch_size=8, val_fraction=0.2)
    metrics = train_prm(tmp_path / "adapter", tokenizer, build_examples(_rows(8)), cfg,
                        tmp_path / "prm")
    assert metrics["train_steps"] >= 1
    before = AutoModelForCausalLM.from_pretrained(tmp_path / "m0").model.embed_tokens.weight
    after, _ = load_prm(tmp_path / "prm")
    backbone = after.lm if kind == "lm_tokens" else after
    assert not torch.equal(before, backbone.model.embed_tokens.weight)  # it trained too


# ----------------------------------------------------------------------------- loading
def test_load_prm_names_a_missing_or_broken_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope'}: not a PRM checkpoint"):
        load_prm(tmp_path / "nope")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match=f"{garbage}: not a PRM checkpoint"):
        load_prm(garbage)
    (garbage / "prm.json").write_text(json.dumps({"kind": "sipf-prm", "lora": False,
                                                  "dtype": "float32"}))
    with pytest.raises(ConfigError, match=f"{garbage}: PRM checkpoint does not load"):
        load_prm(garbage)


# ----------------------------------------------------------------------------- small helpers
def test_split_holds_out_whole_questions() -> None:
    train, val = split_questions([3, 1, 2, 1, 3], 0.08, seed=0)
    assert len(val) == 1 and train | val == {1, 2, 3} and not train & val
    assert split_questions([7, 7], 0.5, seed=0) == ({7}, set())
    assert split_questions(range(10), 0.3, seed=1) == split_questions(range(10), 0.3, seed=1)


@pytest.mark.parametrize("how, expected", [("mean", 0.5), ("min", 0.2), ("prod", 0.2 * 0.5 * 0.8),
                                           ("last", 0.8)])
def test_aggregate(how: str, expected: float) -> None:
    assert aggregate([0.2, 0.5, 0.8], how) == pytest.approx(expected)
    assert aggregate([], how) == 0.0


def test_aggregate_rejects_unknown_mode() -> None:
    with pytest.raises(ConfigError, match="prm.aggregate"):
        aggregate([0.5], "max")


def test_step_accuracy() -> None:
    assert step_accuracy([[0.9, 0.2], [0.6]], [[1.0, 1.0], [0.0]]) == pytest.approx(1 / 3)
    assert step_accuracy([], []) == 0.0


@pytest.mark.parametrize("key, value", [
    ("backbone", ""), ("label", "fuzzy"), ("epochs", 0), ("learning_rate", 0.0),
    ("batch_size", 0), ("max_length", 4), ("val_fraction", 0.0), ("val_fraction", 1.0),
    ("mode", "online"), ("aggregate", "max"), ("kind", "reward"), ("likelihood", "max"),
    ("select", "loss"), ("select_questions", 0)])
def test_config_errors_name_the_field(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"prm.{key}"):
        PrmConfig(**{key: value})


def test_config_fields_all_have_help() -> None:
    assert all(f.metadata.get("help") for f in dataclasses.fields(PrmConfig))



def test_prm_input_is_the_method_format_or_the_policy_prompt() -> None:
    method, closing = format_path(QUESTION, STEPS)
    assert method.startswith(QUESTION + "\nPlease reason step by step.\n")
    prompted, prompted_closing = format_path(QUESTION, STEPS, prompt_style="compact")
    assert prompted.startswith(f"Q: {QUESTION}\nA:\n")
    for text, ends in ((method, closing), (prompted, prompted_closing)):
        assert [text[i] for i in ends] == ["\n"] * len(STEPS)
        assert text[ends[0] - len(STEPS[0]):ends[0]] == STEPS[0]


def test_ranking_accuracy_counts_right_over_wrong_pairs_within_a_question():
    # q1: right 0.9 vs wrong 0.5 and 0.9 (a win and a tie); q2 has no wrong path; q3: a loss.
    questions = ["q1", "q1", "q1", "q2", "q3", "q3"]
    outcomes = [True, False, False, True, True, False]
    rewards = [0.9, 0.5, 0.9, 0.1, 0.2, 0.7]
    assert ranking_accuracy(questions, outcomes, rewards) == pytest.approx((1 + 0.5 + 0) / 3)
    assert ranking_accuracy(["q"], [True], [0.3]) is None
    # the same pairs kept per question (q2 has none), for resampling questions
    assert pair_wins(questions, outcomes, rewards) == {"q1": [1.0, 0.5], "q3": [0.0]}


def test_ranking_difference_is_paired_and_resamples_questions():
    from sipf.pipeline.reward_metrics import ranking_difference

    a = {"q1": [1.0, 1.0], "q2": [0.0], "q3": [1.0]}
    b = {"q1": [0.0, 1.0], "q2": [0.0], "q3": [0.0]}
    diff, low, high = ranking_difference(a, b, draws=500, seed=1)
    assert diff == pytest.approx((3 - 1) / 4)
    # a resample of questions is never worse for a than q2 alone (0) nor better than q3 alone
    assert 0.0 <= low <= diff <= high <= 1.0 and low < high
    assert ranking_difference(a, a, draws=50) == (0.0, 0.0, 0.0)
    assert ranking_difference(a, b, draws=500, seed=1) == (diff, low, high)  # seeded


def test_reward_metrics_against_their_baselines():
    from sipf.pipeline.reward_metrics import (auc, grouped_auc, reward_report,
                                              shorter_path_wins, step_index_scores)

    assert auc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auc([0.5, 0.5], [True, False]) == 0.5  # ties count half
    assert auc([0.3], [True]) is None
    # within a group the scores rank perfectly; across groups they would not
    assert grouped_auc([0.9, 0.8, 0.2, 0.1], [True, False, True, False],
                       ["a", "a", "b", "b"]) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], [True, False, True, False]) == 0.75
    # step index only: later steps are wrong more often in these paths
    assert step_index_scores([[1, 0], [1, 1]]) == [[1.0, 0.5], [1.0, 0.5]]
    # the shorter path has the higher reward in 2 of the 2 pairs that differ in both
    assert shorter_path_wins(["q", "q", "q"], [2, 3, 3], [0.9, 0.5, 0.4]) == 1.0

    # a "PRM" that scores by position only: no signal within (question, index)
    oracle = [[1, 1, 0], [1, 0, 0], [1, 1, 1]]
    position = [[0.9, 0.6, 0.3], [0.9, 0.6, 0.3], [0.9, 0.6, 0.3]]
    report = reward_report(["q", "q", "q"], [False, False, True], position,
                           [0.3, 0.3, 0.3], "min", oracle=oracle,
                           likelihoods=[-2.0, -3.0, -1.0])
    assert report["step_auc_within_question_and_index"] == 0.5
    assert report["step_auc_vs_oracle"] == report["step_index_only_auc"]
    assert report["right_above_wrong"] == 0.5  # equal rewards
    assert report["likelihood_right_above_wrong"] == 1.0
    assert report["oracle_right_above_wrong"] == 1.0  # min of the right path's labels is 1


def test_mean_log_probs_reads_the_completion_only():
    import torch

    from sipf.pipeline.prm import mean_log_probs

    model, tokenizer = tiny_model(["Q: 1+1\nA:\n2", "xyz"])
    model.eval()
    got = mean_log_probs(model, tokenizer, ["Q: 1+1\nA:\n", "Q:"], ["2", " 1+1"],
                         batch_size=2)
    ids = tokenizer("Q: 1+1\nA:\n2")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    expected = torch.log_softmax(logits[-2], -1)[ids[-1]].item()  # one completion token
    assert abs(got[0] - expected) < 1e-5
    assert got[1] < 0


# ----------------------------------------------------------------------------- kinds
def test_lm_head_kind_scores_through_the_label_tokens_then_learns(tmp_path: Path) -> None:
    tokenizer = _tiny_backbone(tmp_path / "backbone")
    questions, paths = ["Q1?", "Q2?"], [["good+", "bad-"], ["bad-"]]
    # Before training, P(correct) is the LM's own softmax over '-' and '+' at the closing token.
    model = _token_classifier(str(tmp_path / "backbone"), "float32", False)
    start_from_lm_head(model, str(tmp_path / "backbone"), "float32", tokenizer)
    got = score_steps(model, tokenizer, questions, paths)
    lm = AutoModelForCausalLM.from_pretrained(tmp_path / "backbone").eval()
    minus, plus = label_token_ids(tokenizer)
    assert [minus, plus] == tokenizer.convert_tokens_to_ids(list(LABEL_TOKENS))
    for question, steps, scores in zip(questions, paths, got):
        ids, positions = closing_token_positions(tokenizer, *format_path(question, steps))
        with torch.no_grad():
            logits = lm(input_ids=torch.tensor([ids])).logits[0]
        expected = torch.softmax(logits[positions][:, [minus, plus]], -1)[:, 1]
        assert scores == pytest.approx(expected.tolist(), abs=1e-5)

    rows = _rows(24)
    cfg = PrmConfig(kind="lm_head", epochs=6, learning_rate=2e-2, batch_size=8,
                    val_fraction=0.2)
    metrics = train_prm(tmp_path / "backbone", tokenizer, build_examples(rows), cfg,
                        tmp_path / "prm")
    assert metrics["kind"] == "lm_head" and metrics["val_step_accuracy"] >= 0.9
    assert read_meta(tmp_path / "prm")["prm_kind"] == "lm_head"
    trained, _ = load_prm(tmp_path / "prm")
    assert not torch.equal(trained.score.weight, model.score.weight)
    scores = score_steps(trained, tokenizer, ["Q1?"], [["good+", "bad-"]])
    assert scores[0][0] > 0.5 > scores[0][1]


def test_lm_head_kind_needs_single_label_tokens() -> None:
    tokenizer = _bpe(byte_level=False)  # trained on text without '-': it is unknown
    with pytest.raises(ConfigError, match="prm.kind: lm_head.*'-'"):
        label_token_ids(tokenizer)


def test_likelihood_step_scores_equal_a_hand_computation() -> None:
    model, tokenizer = tiny_model(["Q: 1+1\nA:\n1+1=2\nThe answer is 2"])
    model.eval()
    prompt, steps = "Q: 1+1\nA:\n", ["1+1=2", "", "The answer is 2"]
    completion = "1+1=2\n\nThe answer is 2"
    ids = tokenizer(prompt)["input_ids"]
    head = len(ids)
    ids += tokenizer(completion, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    per_char = logp[head - 1:]  # one token per character of the completion
    first, last = per_char[0:5], per_char[7:22]  # "1+1=2" and "The answer is 2"; no newline
    digits_first, digit_last = per_char[[0, 2, 4]], per_char[21:22]
    expected = {
        "min": [first.min().exp(), 1.0, last.min().exp()],
        "mean": [first.mean().exp(), 1.0, last.mean().exp()],
        "min_digit": [digits_first.min().exp(), 1.0, digit_last.min().exp()]}
    for reduce, want in expected.items():
        got = likelihood_step_scores(model, tokenizer, [prompt, "Q:"], [steps, []],
                                     batch_size=2, reduce=reduce)
        assert got[0] == pytest.approx([float(x) for x in want], rel=1e-5)
        assert got[1] == []
    with pytest.raises(ConfigError, match="prm.likelihood"):
        likelihood_step_scores(model, tokenizer, [prompt], [steps], reduce="max")


def test_likelihood_kind_writes_a_marker_without_weights(tmp_path: Path) -> None:
    tokenizer = _tiny_backbone(tmp_path / "backbone")
    cfg = PrmConfig(kind="likelihood", likelihood="mean")
    metrics = train_prm(tmp_path / "backbone", tokenizer, build_examples(_rows(2)), cfg,
                        tmp_path / "prm", live_dir=tmp_path / "live")
    assert metrics["kind"] == "likelihood" and metrics["train_steps"] == 0
    assert sorted(p.name for p in (tmp_path / "prm").iterdir()) == ["prm.json"]
    # dvc.yaml declares the curves as train_prm's plots output: there, with no point
    curve = tmp_path / "live" / "plots" / "metrics" / "val_step_accuracy.tsv"
    assert curve.read_text() == "step\tval_step_accuracy\n"
    meta = read_meta(tmp_path / "prm")
    assert meta["prm_kind"] == "likelihood" and meta["config"]["likelihood"] == "mean"
    with pytest.raises(ConfigError, match="likelihood PRM has no weights"):
        load_prm(tmp_path / "prm")


# ----------------------------------------------------------------------------- kind lm_tokens
def test_fit_calibration_recovers_a_logistic_model() -> None:
    generator = torch.Generator().manual_seed(0)
    r = -4 * torch.rand(20000, generator=generator)
    y = (torch.rand(20000, generator=generator) < torch.sigmoid(1.0 + 2.0 * r)).float()
    a, b = fit_calibration(r, y)
    assert a == pytest.approx(1.0, abs=0.1) and b == pytest.approx(2.0, abs=0.1)
    assert fit_calibration(r, torch.ones_like(r)) == pytest.approx((4.595, 1.0), abs=1e-3)


def test_lm_tokens_scores_are_the_calibrated_likelihood() -> None:
    """Untrained, kind lm_tokens is sigmoid(a + b * log s) of the likelihood kind's s, s the
    running min over the path's steps so far."""
    model, tokenizer = tiny_model(["Q: 1+1\nA:\n1+1=2\nThe answer is 2"])
    model.eval()
    question, steps = "Q: 1+1", ["1+1=2", "", "The answer is 2"]
    prompt = question + "\nPlease reason step by step.\n"  # path_prefix without a style
    a, b = 0.7, 1.3
    for reduce in ("min", "mean", "min_digit"):
        prm = TokenPrm(model, (a, b), reduce)
        got = score_steps(prm, tokenizer, [question, question], [steps, []], batch_size=2)
        plain = likelihood_step_scores(model, tokenizer, [prompt], [steps], reduce=reduce)[0]
        running = [min(plain[:j + 1]) for j in range(len(plain))]  # a step after a slip
        want = [torch.sigmoid(torch.tensor(a + b * math.log(s))).item() for s in running]
        assert got[0] == pytest.approx(want, rel=1e-5) and got[1] == []


def test_lm_tokens_encoding_marks_digit_tokens_and_cuts_labels() -> None:
    _, tokenizer = tiny_model(["Q: 1+1\nA:\n1+1=2\nThe answer is 2"])
    prefix, steps = "Q:", ["1+1=2", "The answer is 2"]
    ids, token_step = encode_steps(tokenizer, prefix, steps, "min_digit")
    head = len(tokenizer(prefix)["input_ids"])
    # char tokens: "1+1=2" holds digits at 0, 2, 4; "The answer is 2" one at its end
    assert [t - head for t, j in enumerate(token_step) if j == 0] == [0, 2, 4]
    assert [t - head for t, j in enumerate(token_step) if j == 1] == [6 + 14]
    _, every = encode_steps(tokenizer, prefix, steps, "min")
    assert sum(j == 1 for j in every) == len("The answer is 2")
    example = {"prefix": prefix, "steps": steps, "labels": [1.0, 0.3]}
    full = encode_example(tokenizer, example, "min_digit", 64, hard=True)
    assert full["target"][:2] == [1.0, 0.0] and full["mask"][:2] == [True, True]
    soft = encode_example(tokenizer, example, "min_digit", 64, hard=False)
    assert soft["target"][:2] == [1.0, 0.3]
    cut = encode_example(tokenizer, example, "min_digit", head + 10, hard=True)
    assert cut["mask"][:2] == [True, False] and len(cut["input_ids"]) == head + 10
    assert encode_example(tokenizer, example, "min_digit", head + 2, hard=True) is None


def test_lm_tokens_starts_at_the_fitted_calibration_and_saves_it(tmp_path: Path) -> None:
    tokenizer = _tiny_backbone(tmp_path / "backbone")
    cfg = PrmConfig(kind="lm_tokens", epochs=1, learning_rate=1e-9, batch_size=8,
                    val_fraction=0.2)
    train_prm(tmp_path / "backbone", tokenizer, build_examples(_rows(12)), cfg, tmp_path / "prm")
    meta = read_meta(tmp_path / "prm")
    model, _ = load_prm(tmp_path / "prm")
    assert isinstance(model, TokenPrm) and model.reduce == cfg.likelihood == "mean"  # default
    assert [float(x) for x in model.calibration] == pytest.approx(meta["calibration"])
    # a learning rate of 1e-9 leaves the fit as it was: the labels' log-odds regression
    rows = _rows(12)
    train_ids, _ = split_questions([r["question_id"] for r in rows], 0.2, 0)
    train = [r for r in rows if r["question_id"] in train_ids]
    untrained = TokenPrm(AutoModelForCausalLM.from_pretrained(tmp_path / "backbone"), (0, 1),
                         cfg.likelihood)
    scores = score_steps(untrained, tokenizer, [r["question"] for r in train],
                         [r["steps"] for r in train])
    r = torch.tensor([math.log(p / (1 - p)) for path in scores for p in path])
    y = torch.tensor([x for row in train for x in row["labels"]])
    assert meta["calibration"] == pytest.approx(list(fit_calibration(r, y)), abs=1e-4)
