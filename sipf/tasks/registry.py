"""Load the task that ``params.yaml``'s ``prepare`` section names, split by split."""

from __future__ import annotations

from sipf.config import PrepareConfig
from sipf.tasks import arith
from sipf.tasks.base import MathRecord
from sipf.tasks.gsm8k import load_gsm8k
from sipf.tasks.jsonl import FieldMap, load_jsonl
from sipf.tasks.kinds import CodeQuestion
from sipf.tasks.mmlu_math import load_mmlu_math

SPLITS = ("train", "test", "ood")


def load_code_task(cfg: PrepareConfig) -> dict[str, list[CodeQuestion]]:
    """MBPP's train and test tasks and HumanEval as one question per prompt variant; the
    limits count tasks (a task's variants stay together)."""
    from sipf.code.humaneval import humaneval_prompt, load_humaneval
    from sipf.code.mbpp import load_mbpp, prompt_variants

    mbpp = load_mbpp(cfg.mbpp.path)
    tasks = {"train": mbpp["train"], "test": mbpp["test"]}
    if cfg.mbpp.humaneval != "none":
        tasks["ood"] = load_humaneval(cfg.mbpp.humaneval or None)
    limits = {"train": cfg.train_limit, "test": cfg.test_limit, "ood": cfg.test_limit}
    splits: dict[str, list[CodeQuestion]] = {}
    for split, records in tasks.items():
        records = records[:limits[split]] if limits[split] else records
        if split == "ood":
            prompts = [humaneval_prompt(r) for r in records]
        else:
            count = cfg.mbpp.train_variants if split == "train" else cfg.mbpp.test_variants
            prompts = [p for r in records
                       for p in prompt_variants(r, training=split == "train")[:count]]
        splits[split] = [CodeQuestion(p.id, p.text, "", p.record.reference, p.record)
                         for p in prompts]
    return splits


def load_task(cfg: PrepareConfig) -> dict[str, list[MathRecord]] | dict[str, list[CodeQuestion]]:
    """``{"train": [...], "test": [...], "ood": [...]}`` (ood may be absent), limits applied."""
    if cfg.task == "mbpp":
        return load_code_task(cfg)
    if cfg.task == "arith":
        splits = {split: arith.generate(cfg.arith, split) for split in SPLITS}
    elif cfg.task == "gsm8k":
        splits = load_gsm8k(cfg.gsm8k.source, cfg.gsm8k.config)
        if cfg.gsm8k.ood_path:
            splits["ood"] = load_mmlu_math(cfg.gsm8k.ood_path)
    else:
        j = cfg.jsonl
        fields = FieldMap(question=j.question_field, answer=j.answer_field,
                          solution=j.solution_field or None, id=j.id_field or None)
        paths = {"train": j.train, "test": j.test, "ood": j.ood}
        splits = {split: load_jsonl(path, fields, prefix=f"jsonl-{split}")
                  for split, path in paths.items() if path}
    limits = {"train": cfg.train_limit, "test": cfg.test_limit, "ood": cfg.test_limit}
    return {split: records[:limits[split]] if limits[split] else records
            for split, records in splits.items()}
