"""Load the task that ``params.yaml``'s ``prepare`` section names, split by split."""

from __future__ import annotations

from sipf.config import PrepareConfig
from sipf.tasks import arith
from sipf.tasks.base import MathRecord
from sipf.tasks.gsm8k import load_gsm8k
from sipf.tasks.jsonl import FieldMap, load_jsonl
from sipf.tasks.mmlu_math import load_mmlu_math

SPLITS = ("train", "test", "ood")


def load_task(cfg: PrepareConfig) -> dict[str, list[MathRecord]]:
    """``{"train": [...], "test": [...], "ood": [...]}`` (ood may be absent), limits applied."""
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
