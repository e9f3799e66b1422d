"""Iteration 0: supervised fine-tuning on gold solutions through TRL's SFTTrainer.

The loss covers the completion only (the gold solution plus EOS), never the prompt.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from sipf.config import SftConfig
from sipf.distributed import broadcast_flag, is_main
from sipf.errors import ConfigError
from sipf.generation import HFGenerator, SamplingParams
from sipf.pipeline.evaluation import evaluate_split
from sipf.pipeline.training import dvclive_callbacks, live_run, schedule_args, training_args
from sipf.tasks.base import MathRecord
from sipf.tasks.kinds import MathKind, TaskKind

Probe = tuple[Sequence[MathRecord], Sequence[str]]  # records and their prompts
VAL_SPLIT = "val"  # training questions held out of SFT; the stop rule reads this probe only


class AccuracyCurve(TrainerCallback):
    """Greedy accuracy on held-out splits every few steps: the curve that says whether
    SFT has reached its plateau (a loss curve cannot: accuracy jumps late here)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, probes: Mapping[str, Probe],
                 every_steps: int, sampling: SamplingParams, batch_size: int = 64,
                 live: Any = None, stop_at: float = 0.0, check_steps: int = 0,
                 kind: TaskKind = MathKind()) -> None:
        self.tokenizer, self.probes, self.every_steps = tokenizer, probes, every_steps
        self.sampling, self.batch_size, self.live = sampling, batch_size, live
        # The stop rule: the VAL_SPLIT probe alone, every check_steps, until it reaches stop_at
        # (0 = never). Checked more often than the curve, so the jump is caught early.
        self.stop_at, self.check_steps = stop_at, check_steps
        self.kind = kind
        self.curve: list[dict] = []

    def _due(self, step: int, last: bool) -> list[str]:
        on_curve = last or step % self.every_steps == 0
        on_check = bool(self.stop_at and self.check_steps and step % self.check_steps == 0)
        return [split for split in self.probes
                if on_curve or (on_check and split == VAL_SPLIT)]

    def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201
        due = self._due(state.global_step, state.global_step == state.max_steps)
        if not due:
            return
        # Under torchrun every rank holds the same weights: rank 0 alone probes (and logs),
        # and every rank stops at its word, so all leave the training loop at the same step.
        stop = self._probe(model, state, due) if is_main() else False
        if broadcast_flag(stop):
            control.should_training_stop = True
        return control

    def _probe(self, model: PreTrainedModel, state: Any, due: list[str]) -> bool:
        """Greedy accuracy on the ``due`` splits, appended to the curve; whether to stop."""
        padding_side = self.tokenizer.padding_side  # the generator pads left; training right
        point: dict = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 3)}
        generator = HFGenerator(model, self.tokenizer, batch_size=self.batch_size)
        for split in due:
            records, prompts = self.probes[split]
            result, _ = evaluate_split(generator, records, prompts, split, self.sampling,
                                       self.kind)
            point[split] = result.accuracy
            if self.live is not None:
                self.live.log_metric(f"accuracy/{split}", result.accuracy)
        self.tokenizer.padding_side = padding_side
        model.train()
        stop = bool(self.stop_at and point.get(VAL_SPLIT, 0.0) >= self.stop_at)
        if stop:
            point["stopped"] = True
        self.curve.append(point)
        return stop


def accuracy_curve(tokenizer: PreTrainedTokenizerBase, probes: Mapping[str, Probe],
                   examples: int, cfg: SftConfig, sampling: SamplingParams,
                   batch_size: int = 64, kind: TaskKind = MathKind()) -> AccuracyCurve | None:
    """The probe ``cfg.accuracy_every`` asks for over ``examples`` training examples (None
    when it is off), on the first ``cfg.accuracy_limit`` questions of each probe split."""
    if cfg.accuracy_every <= 0 or not probes:
        return None
    steps_per_epoch = math.ceil(examples / cfg.batch_size)
    every = max(1, round(cfg.accuracy_every * steps_per_epoch))
    check = max(1, round(cfg.stop_check_every * steps_per_epoch))
    limited = {split: (records[:cfg.accuracy_limit], prompts[:cfg.accuracy_limit])
               for split, (records, prompts) in probes.items()}
    if cfg.stop_at_accuracy and VAL_SPLIT not in probes:
        raise ConfigError(f"sft.stop_at_accuracy needs a '{VAL_SPLIT}' probe split")
    return AccuracyCurve(tokenizer, limited, every, sampling, batch_size,
                         stop_at=cfg.stop_at_accuracy, check_steps=check, kind=kind)


def hold_out(records: Sequence[MathRecord], prompts: Sequence[str], cfg: SftConfig
             ) -> tuple[Probe, Probe | None]:
    """Split the training set into (what SFT trains on, the validation probe): the last
    ``cfg.val_questions`` questions when ``stop_at_accuracy`` is on, else nothing held out."""
    if not cfg.stop_at_accuracy:
        return (records, prompts), None
    if len(records) <= cfg.val_questions:
        raise ConfigError(f"sft.val_questions: {cfg.val_questions} held out of "
                          f"{len(records)} training questions leaves none to train on")
    cut = len(records) - cfg.val_questions
    return (records[:cut], prompts[:cut]), (records[cut:], prompts[cut:])


def train_sft(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
              prompts: list[str], completions: list[str], cfg: SftConfig,
              live_dir: Path | None = None,
              curve: AccuracyCurve | None = None) -> PreTrainedModel:
    """Fine-tune ``model`` on (prompt, completion) pairs; TRL appends EOS to each completion.

    ``curve`` (see :func:`accuracy_curve`) records greedy accuracy during training, also
    logged through dvclive as ``accuracy/<split>``.
    """
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_dict({"prompt": prompts, "completion": completions})
    live = live_run(live_dir)
    callbacks = dvclive_callbacks(live)
    if curve is not None:
        curve.live = live
        # Before dvclive's callback, so a probe on a logging step is written with that step.
        callbacks.insert(0, curve)
    with tempfile.TemporaryDirectory(prefix="sipf-sft-") as scratch:
        args = SFTConfig(**training_args(
            scratch, cfg, **schedule_args(cfg, "cosine"), weight_decay=cfg.weight_decay,
            completion_only_loss=True, gradient_checkpointing=cfg.gradient_checkpointing,
            train_sampling_strategy="group_by_length" if cfg.group_by_length else "random"))
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset,
                             processing_class=tokenizer, callbacks=callbacks)
        trainer.train()
    if live is not None:
        live.end()
    return trainer.model
