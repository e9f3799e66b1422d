"""Stage `train_prm@itk`: the process reward model, trained on the simulated step labels."""

from __future__ import annotations

from collections import defaultdict

import click

from sipf.config import load_params, prm_prompt_style
from sipf.models import load_tokenizer
from sipf.pipeline.prm import build_examples, train_prm
from sipf.storage import read_parquet, write_json
from sipf.stages.common import (BASE, M0, data_dir, loop_stage, metrics_dir, model_dir,
                           seed_everything, skipped, train_records_by_id)


def labelled_paths(k: int, label: str) -> list[dict]:
    """One row per simulated path: its question, steps and per-step targets."""
    rows = read_parquet(data_dir(k) / "step_labels.parquet",
                        required=("path_id", "question_id", "step_index", "step", "hard", "soft"))
    by_path: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_path[row["path_id"]].append(row)
    records, _ = train_records_by_id()
    paths = []
    for path_id, steps in sorted(by_path.items()):
        steps.sort(key=lambda r: r["step_index"])
        paths.append({
            "path_id": path_id, "question_id": steps[0]["question_id"],
            "question": records[steps[0]["question_id"]].question,
            "steps": [s["step"] for s in steps],
            "labels": [float(s["hard"]) if label == "hard" else s["soft"] for s in steps]})
    return paths


@loop_stage("train_prm")
def main(params_path: str, k: int, policy: str) -> None:
    """Train the process reward model -> models/it<k>/prm.

    Offline mode (the authors'): every iteration trains on iteration 1's labels from M0,
    which on a fixed seed reproduces iteration 1's PRM.
    """
    params = load_params(params_path)
    if skipped(params.method, "train_prm", k, model_dir(k) / "prm", metrics_dir(k) / "prm.json",
               metrics_dir(k) / "prm" / "plots" / "metrics"):
        return
    cfg = params.prm
    seed_everything(cfg.seed)
    source_k, backbone = (1, M0) if cfg.mode == "offline" else (k, policy)
    if cfg.backbone != "policy":
        backbone = cfg.backbone
    paths = labelled_paths(source_k, cfg.label)
    out = model_dir(k) / "prm"
    examples = build_examples(paths, prm_prompt_style(params))
    metrics = train_prm(backbone, load_tokenizer(BASE), examples, cfg, out,
                        live_dir=metrics_dir(k) / "prm", model_cfg=params.model)
    write_json(metrics, metrics_dir(k) / "prm.json")
    click.echo(f"train_prm@it{k}: best epoch {metrics['best_epoch']}, "
               f"val step accuracy {metrics['val_step_accuracy']}")
