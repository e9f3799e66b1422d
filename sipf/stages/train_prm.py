"""Stage `train_prm@itk`: the process reward model, trained on the simulated step labels."""

from __future__ import annotations

from collections import defaultdict

from sipf import layout
from sipf.config import prm_prompt_style
from sipf.models import load_tokenizer
from sipf.pipeline.prm import build_examples, train_prm
from sipf.stages.common import (LoopStage, check_ids, loop_stage, read_rows, seed_everything,
                                train_records_by_id)
from sipf.storage import atomic_path, write_json


def labelled_paths(k: int, label: str) -> list[dict]:
    """One row per simulated path: its question, steps and per-step targets."""
    source = layout.Iteration(k).step_labels
    rows = read_rows(source, "step_labels")
    records, _ = train_records_by_id()
    check_ids(rows, records, source)
    by_path: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_path[row["path_id"]].append(row)
    paths = []
    for path_id, steps in sorted(by_path.items()):
        steps.sort(key=lambda r: r["step_index"])
        paths.append({
            "path_id": path_id, "question_id": steps[0]["question_id"],
            "question": records[steps[0]["question_id"]].question,
            "steps": [s["step"] for s in steps],
            "labels": [float(s["hard"]) if label == "hard" else s["soft"] for s in steps]})
    return paths


@loop_stage("train_prm", trains=True)
def main(stage: LoopStage) -> None:
    """Train the process reward model -> models/it<k>/prm.

    Offline mode (the authors'): every iteration trains on iteration 1's labels from M0,
    which on a fixed seed reproduces iteration 1's PRM.
    """
    params, it = stage.params, stage.it
    cfg = params.prm
    seed_everything(cfg.seed)
    source_k, backbone = (1, str(layout.M0)) if cfg.mode == "offline" else (stage.k, stage.policy)
    if cfg.backbone == "verifier":
        backbone = str(layout.VERIFIER)
    elif cfg.backbone != "policy":
        backbone = cfg.backbone
    examples = build_examples(labelled_paths(source_k, cfg.label), prm_prompt_style(params))
    with atomic_path(it.live_dir("prm"), directory=True) as live_dir:  # with the PRM
        metrics = train_prm(backbone, load_tokenizer(layout.BASE), examples, cfg, it.prm,
                            live_dir=live_dir, model_cfg=params.model)
    write_json(metrics, it.stage_metrics("prm"))
    if cfg.kind == "likelihood":
        stage.say(f"likelihood PRM ({cfg.likelihood}): nothing trained; score reads the "
                  "policy's own token probabilities")
    else:
        accuracy = metrics["val_step_accuracy"]
        stage.say(f"{cfg.kind} PRM on {len(examples)} paths: best epoch "
                  f"{metrics['best_epoch']}, held-out step accuracy "
                  + ("n/a" if accuracy is None else f"{accuracy:.1%}"))
