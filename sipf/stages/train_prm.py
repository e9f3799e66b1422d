"""Stage `train_prm@itk`: the process reward model, trained on the simulated step labels."""

from __future__ import annotations

from collections import defaultdict

from sipf import layout
from sipf.config import PrmConfig, prm_prompt_style
from sipf.models import load_tokenizer
from sipf.pipeline.prm import build_examples, ranking_set, train_prm
from sipf.stages.common import (LoopStage, check_ids, loop_stage, read_rows, seed_everything,
                                train_records_by_id)
from sipf.storage import atomic_path, write_json
from sipf.tasks.kinds import Question


def labelled_paths(k: int, label: str, records: dict[str, Question]) -> list[dict]:
    """One row per simulated path: its question, steps and per-step targets (``records``:
    the training questions by id)."""
    source = layout.Iteration(k).step_labels
    rows = read_rows(source, "step_labels")
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
    style = prm_prompt_style(params)
    records, _ = train_records_by_id()
    examples = build_examples(labelled_paths(source_k, cfg.label, records), style)
    ranking = (ranking_paths(source_k, {e["question_id"] for e in examples}, cfg, style,
                             records)
               if cfg.select == "ranking" and cfg.kind != "likelihood" else [])
    with atomic_path(it.live_dir("prm"), directory=True) as live_dir:  # with the PRM
        metrics = train_prm(backbone, load_tokenizer(layout.BASE), examples, cfg, it.prm,
                            live_dir=live_dir, model_cfg=params.model, ranking=ranking)
    write_json(metrics, it.stage_metrics("prm"))
    if cfg.kind == "likelihood":
        stage.say(f"likelihood PRM ({cfg.likelihood}): nothing trained; score reads the "
                  "policy's own token probabilities")
    else:
        stage.say(_summary(cfg.kind, len(examples), metrics))


def ranking_paths(k: int, simulated: set, cfg: PrmConfig, style: str | None,
                  records: dict[str, Question]) -> list[dict]:
    """prm.select 'ranking': iteration k's sampled paths of up to prm.select_questions
    questions with both outcomes that simulate did not label."""
    source = layout.Iteration(k).samples
    pool = read_rows(source, "samples")
    check_ids(pool, records, source)
    return ranking_set(pool, lambda q: records[q].question, simulated, cfg.select_questions,
                       cfg.seed, style)


def _summary(kind: str, paths: int, metrics: dict) -> str:
    accuracy, epoch = metrics["val_step_accuracy"], metrics["best_epoch"]
    line = (f"{kind} PRM on {paths} paths: kept epoch {epoch}"
            + (" (the untrained start)" if epoch == 0 else "")
            + ", held-out step accuracy " + ("n/a" if accuracy is None else f"{accuracy:.1%}"))
    if metrics.get("select") == "ranking":
        line += (f", right above wrong {metrics['val_ranking']:.1%} on "
                 f"{metrics['ranking_questions']} unsimulated questions' "
                 f"{metrics['ranking_paths']} paths")
    return line
