"""SFT's validation stop rule: hold-out split and early stop on the probe's accuracy."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import sipf.pipeline.sft as sft
from sipf.config import SftConfig
from sipf.errors import ConfigError
from sipf.generation import SamplingParams
from sipf.tasks.base import MathRecord
from tests.helpers import tiny_model

RECORDS = [MathRecord(f"q{i}", f"Q{i}", str(i), f"{i}+0=<<{i}+0={i}>>{i}\nThe answer is {i}")
           for i in range(10)]
PROMPTS = [f"Q: {r.question}\nA:\n" for r in RECORDS]


def test_hold_out_keeps_everything_when_the_stop_rule_is_off():
    (train, prompts), val = sft.hold_out(RECORDS, PROMPTS, SftConfig(stop_at_accuracy=0.0, val_questions=3))
    assert list(train) == RECORDS and list(prompts) == PROMPTS and val is None


def test_hold_out_takes_the_last_questions_for_validation():
    cfg = SftConfig(stop_at_accuracy=0.5, val_questions=3)
    (train, prompts), (val, val_prompts) = sft.hold_out(RECORDS, PROMPTS, cfg)
    assert [r.id for r in train] == [f"q{i}" for i in range(7)]
    assert [r.id for r in val] == ["q7", "q8", "q9"] and val_prompts == PROMPTS[7:]


def test_hold_out_refuses_to_leave_nothing_to_train_on():
    with pytest.raises(ConfigError, match="10 held out of 10 training questions"):
        sft.hold_out(RECORDS, PROMPTS, SftConfig(stop_at_accuracy=0.5, val_questions=10))


@pytest.mark.parametrize("fields, message", [
    ({"stop_at_accuracy": 1.5}, "sft.stop_at_accuracy: must be between 0 and 1"),
    ({"stop_at_accuracy": 0.5, "accuracy_every": 0.0}, "needs sft.accuracy_every > 0"),
    ({"val_questions": 0}, "sft.val_questions: must be >= 1"),
    ({"stop_check_every": 0.0}, "sft.stop_check_every: must be > 0"),
])
def test_bad_stop_rule_params_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        SftConfig(**fields)


def test_the_stop_rule_needs_a_validation_probe():
    cfg = SftConfig(stop_at_accuracy=0.5)
    _, tokenizer = tiny_model()
    with pytest.raises(ConfigError, match="needs a 'val' probe split"):
        sft.accuracy_curve(tokenizer, {"test": (RECORDS, PROMPTS)}, 10, cfg,
                           SamplingParams(max_new_tokens=4))


def test_training_stops_at_the_first_check_whose_val_accuracy_reaches_the_target(monkeypatch):
    # Validation accuracy climbs 0.2 a check (test stays at 0): the target 0.5 is reached at
    # the third check, and training must stop there, long before max_steps.
    calls = {"val": 0, "test": 0}

    def fake_evaluate(generator, records, prompts, split, params, kind=None):
        calls[split] += 1
        return SimpleNamespace(accuracy=0.2 * calls["val"] if split == "val" else 0.0), []

    monkeypatch.setattr(sft, "evaluate_split", fake_evaluate)
    texts = PROMPTS + [r.solution for r in RECORDS]
    model, tokenizer = tiny_model(texts)
    # 8 examples in batches of 4 = 2 steps an epoch: the curve every 2 steps, checks every step.
    cfg = SftConfig(max_steps=40, batch_size=4, accuracy_every=1.0, stop_check_every=0.5,
                    stop_at_accuracy=0.5, val_questions=2, logging_steps=100)
    probes = {"val": (RECORDS[8:], PROMPTS[8:]), "test": (RECORDS[:2], PROMPTS[:2])}
    curve = sft.accuracy_curve(tokenizer, probes, 8, cfg, SamplingParams(max_new_tokens=4))
    sft.train_sft(model, tokenizer, PROMPTS[:8], [r.solution for r in RECORDS[:8]], cfg,
                  curve=curve)
    assert [point["step"] for point in curve.curve] == [1, 2, 3]
    assert [point["val"] for point in curve.curve] == pytest.approx([0.2, 0.4, 0.6])
    assert ["test" in point for point in curve.curve] == [False, True, False]
    assert calls["test"] == 1
    assert curve.curve[-1]["stopped"] is True
    assert not any(point.get("stopped") for point in curve.curve[:-1])
