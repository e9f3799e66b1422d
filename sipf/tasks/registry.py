"""Every task as one registered object: how it loads, prompts, stops, judges, and (where it
can) which steps are right.

A task is a :class:`Task` in :data:`TASKS`; stages ask ``task_named(params.prepare.task)``
for everything task-specific and never branch on a task's name. A new task is a loader and
one entry here; a new question/answer dataset needs neither: ``prepare.task: jsonl`` reads
the user's JSONL files (``prepare.jsonl``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sipf import layout
from sipf.config import PrepareConfig
from sipf.errors import ConfigError
from sipf.tasks import arith
from sipf.tasks.base import MathRecord
from sipf.code.kind import CodeKind
from sipf.tasks.kinds import CodeQuestion, MathKind, Question, TaskKind
from sipf.tasks.prompts import COT_STOP

MATH_STYLES = ("compact", "instruction", "cot8")

Splits = dict[str, list[Question]]
StepOracle = Callable[[MathRecord, Sequence[str]], list[bool]]


@dataclass(frozen=True)
class Task:
    """One task: ``load`` gives its splits (limits applied), ``kind`` splits completions into
    steps and judges them, ``step_oracle`` (optional) says which steps of a path are right."""

    name: str
    load: Callable[[PrepareConfig], Splits]
    prompt_styles: tuple[str, ...]
    kind: TaskKind
    stop_strings: tuple[str, ...] = ()
    step_oracle: StepOracle | None = None

    def stop(self, style: str) -> tuple[str, ...]:
        """Where generation stops: trained models end on EOS; a few-shot model goes on to
        invent the next "Q:" exemplar; code stops where tests or driver code would start."""
        return self.stop_strings + (COT_STOP if style == "cot8" else ())

    def check_style(self, style: str) -> None:
        if style not in self.prompt_styles:
            raise ConfigError(f"prepare.prompt_style: {style!r} does not go with task "
                              f"{self.name!r} (its styles: {', '.join(self.prompt_styles)})")


def _limits(cfg: PrepareConfig) -> dict[str, int]:
    """How many records (code: tasks) each split keeps; 0 = all."""
    return {"train": cfg.train_limit, "test": cfg.test_limit, "ood": cfg.test_limit}


def _limited(splits: dict[str, list], cfg: PrepareConfig) -> dict[str, list]:
    limits = _limits(cfg)
    return {split: records[:limits[split]] if limits[split] else records
            for split, records in splits.items()}


def _load_arith(cfg: PrepareConfig) -> Splits:
    return _limited({split: arith.generate(cfg.arith, split) for split in layout.SPLITS}, cfg)


def _load_gsm8k(cfg: PrepareConfig) -> Splits:
    from sipf.tasks.gsm8k import load_gsm8k
    from sipf.tasks.mmlu_math import load_mmlu_math

    splits = load_gsm8k(cfg.gsm8k.source, cfg.gsm8k.config)
    if cfg.gsm8k.ood_path:
        splits["ood"] = load_mmlu_math(cfg.gsm8k.ood_path)
    return _limited(splits, cfg)


def _load_jsonl(cfg: PrepareConfig) -> Splits:
    from sipf.tasks.jsonl import FieldMap, load_jsonl

    j = cfg.jsonl
    fields = FieldMap(question=j.question_field, answer=j.answer_field,
                      solution=j.solution_field or None, id=j.id_field or None)
    paths = {"train": j.train, "test": j.test, "ood": j.ood}
    return _limited({split: load_jsonl(path, fields, prefix=f"jsonl-{split}")
                     for split, path in paths.items() if path}, cfg)


def _load_mbpp(cfg: PrepareConfig) -> Splits:
    """MBPP's train and test tasks and HumanEval as one question per prompt variant; the
    limits count tasks (a task's variants stay together)."""
    from sipf.code.humaneval import humaneval_prompt, load_humaneval
    from sipf.code.mbpp import load_mbpp, prompt_variants

    mbpp = load_mbpp(cfg.mbpp.path)
    tasks = {"train": mbpp["train"], "test": mbpp["test"]}
    if cfg.mbpp.humaneval != "none":
        tasks["ood"] = load_humaneval(cfg.mbpp.humaneval or None)
    splits: Splits = {}
    for split, records in _limited(tasks, cfg).items():
        if split == "ood":
            prompts = [humaneval_prompt(r) for r in records]
        else:
            count = cfg.mbpp.train_variants if split == "train" else cfg.mbpp.test_variants
            prompts = [p for r in records
                       for p in prompt_variants(r, training=split == "train")[:count]]
        splits[split] = [CodeQuestion(p.id, p.text, "", p.record.reference, p.record)
                         for p in prompts]
    return splits


def _code_stop() -> tuple[str, ...]:
    from sipf.code.programs import STOP_SEQUENCES

    return STOP_SEQUENCES


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("arith", _load_arith, MATH_STYLES, MathKind(), step_oracle=arith.step_labels),
    Task("gsm8k", _load_gsm8k, MATH_STYLES, MathKind()),
    Task("jsonl", _load_jsonl, MATH_STYLES, MathKind()),
    Task("mbpp", _load_mbpp, ("code",), CodeKind(), stop_strings=_code_stop()),
)}


def task_named(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"prepare.task: {name!r} is not one of {', '.join(TASKS)}") from None


def load_task(cfg: PrepareConfig) -> Splits:
    """``{"train": [...], "test": [...], "ood": [...]}`` (ood may be absent), limits applied."""
    task = task_named(cfg.task)
    task.check_style(cfg.prompt_style)
    return task.load(cfg)
