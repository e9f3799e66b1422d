"""Stage `score@itk`: the PRM (or ORM) scores every step of every sampled path; path reward.

Methods without a reward model (feedback: none) reward a path with its outcome.
"""

from __future__ import annotations

from sipf.config import prm_prompt_style
from sipf.methods import method_named
from sipf.pipeline.prm import aggregate, load_prm, ranking_accuracy, score_steps, step_accuracy
from sipf.stages.common import LoopStage, check_ids, loop_stage, read_rows, train_records_by_id
from sipf.storage import write_json, write_parquet
from sipf.tasks.registry import task_named


@loop_stage("score", needs_policy=False)
def main(stage: LoopStage) -> None:
    """PRM step scores and path rewards -> data/it<k>/scores.parquet."""
    params, k, it = stage.params, stage.k, stage.it
    cfg = params.prm
    paths = read_rows(it.samples, "samples")
    records, _ = train_records_by_id()
    check_ids(paths, records, it.samples, unique="path_id")
    if method_named(params.method).feedback == "none":
        rows = [{"question_id": p["question_id"], "path_id": p["path_id"], "text": p["text"],
                 "outcome": p["outcome"], "step_scores": [], "reward": float(bool(p["outcome"])),
                 "iteration": k} for p in paths]
        write_parquet(rows, it.scores)
        write_json({"paths": len(rows), "aggregate": "outcome"}, it.stage_metrics("score"))
        stage.say(f"{len(rows)} paths rewarded by their outcome")
        return
    model, tokenizer = load_prm(it.prm)
    steps = [list(p["steps"]) for p in paths]
    scores = score_steps(model, tokenizer, [records[p["question_id"]].question for p in paths],
                         steps, batch_size=cfg.batch_size,
                         prompt_style=prm_prompt_style(params))
    rows = [{"question_id": p["question_id"], "path_id": p["path_id"], "text": p["text"],
             "outcome": p["outcome"], "step_scores": s, "reward": aggregate(s, cfg.aggregate),
             "iteration": k} for p, s in zip(paths, scores)]
    metrics: dict = {"paths": len(rows), "aggregate": cfg.aggregate,
                     "right_above_wrong": ranking_accuracy(
                         [r["question_id"] for r in rows], [r["outcome"] for r in rows],
                         [r["reward"] for r in rows])}
    oracle_of = task_named(params.prepare.task).step_oracle
    if oracle_of is not None:
        oracle = [[float(x) for x in oracle_of(records[p["question_id"]], s)]
                  for p, s in zip(paths, steps)]
        metrics["prm_step_accuracy_vs_oracle"] = step_accuracy(scores, oracle)
        metrics["oracle_correct_step_fraction"] = (
            sum(map(sum, oracle)) / max(1, sum(map(len, oracle))))
    write_parquet(rows, it.scores)
    write_json(metrics, it.stage_metrics("score"))
    stage.say(f"{metrics}")
