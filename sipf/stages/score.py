"""Stage `score@itk`: the PRM (or ORM) scores every step of every sampled path; path reward.

Methods without a reward model (feedback: none) reward a path with its outcome. The PRM's
metrics are given twice: over every path, and (``unseen_*``) over the paths of questions the
PRM did not train on, since its own training paths are among those it scores.
"""

from __future__ import annotations

from sipf import layout
from sipf.config import prm_prompt_style
from sipf.methods import method_named
from sipf.models import load_policy, load_tokenizer
from sipf.pipeline.prm import (aggregate, likelihood_step_scores, load_prm, mean_log_probs,
                               read_meta, score_steps, step_accuracy)
from sipf.pipeline.reward_metrics import reward_report
from sipf.stages.common import LoopStage, check_ids, loop_stage, read_rows, train_records_by_id
from sipf.storage import write_json, write_parquet
from sipf.tasks.registry import task_named


# what score.json also reports on the paths of questions the PRM never trained on
UNSEEN_KEYS = ("right_above_wrong", "likelihood_right_above_wrong",
               "step_auc_within_question_and_index")


def score_row(path: dict, step_scores: list[float], reward: float, k: int) -> dict:
    """The row of data/it<k>/scores.parquet for one sampled ``path``."""
    return {"question_id": path["question_id"], "path_id": path["path_id"], "text": path["text"],
            "outcome": path["outcome"], "step_scores": step_scores, "reward": reward,
            "iteration": k}


@loop_stage("score")
def main(stage: LoopStage) -> None:
    """PRM step scores and path rewards -> data/it<k>/scores.parquet; the reward model's
    metrics beside the baselines it must beat (sipf.pipeline.reward_metrics)."""
    params, k, it = stage.params, stage.k, stage.it
    cfg = params.prm
    paths = read_rows(it.samples, "samples")
    records, prompts = train_records_by_id()
    check_ids(paths, records, it.samples, unique="path_id")
    if method_named(params.method).feedback == "none":
        rows = [score_row(p, [], float(bool(p["outcome"])), k) for p in paths]
        write_parquet(rows, it.scores)
        write_json({"paths": len(rows), "aggregate": "outcome"}, it.stage_metrics("score"))
        stage.say(f"{len(rows)} paths rewarded by their outcome")
        return
    steps = [list(p["steps"]) for p in paths]
    # M_{k-1}: the likelihood PRM's scorer, and the no-training baseline of the ranking
    policy = load_policy(stage.policy, layout.BASE, params.model, merged=True)
    policy_tokenizer = load_tokenizer(layout.BASE)
    meta = read_meta(it.prm)
    if meta["prm_kind"] == "likelihood":
        scores = likelihood_step_scores(policy, policy_tokenizer,
                                        [prompts[p["question_id"]] for p in paths], steps,
                                        batch_size=cfg.batch_size,
                                        reduce=meta["config"]["likelihood"])
    else:
        model, tokenizer = load_prm(it.prm)
        scores = score_steps(model, tokenizer,
                             [records[p["question_id"]].question for p in paths], steps,
                             batch_size=cfg.batch_size, prompt_style=prm_prompt_style(params))
    rows = [score_row(p, s, aggregate(s, cfg.aggregate), k) for p, s in zip(paths, scores)]
    likelihoods = mean_log_probs(policy, policy_tokenizer,
                                 [prompts[p["question_id"]] for p in paths],
                                 [p["text"] for p in paths], batch_size=cfg.batch_size)
    oracle_of = task_named(params.prepare.task).step_oracle
    oracle = None if oracle_of is None else [
        [float(x) for x in oracle_of(records[p["question_id"]], s)] for p, s in zip(paths, steps)]
    columns = {"question_ids": [r["question_id"] for r in rows],
               "outcomes": [bool(r["outcome"]) for r in rows], "step_scores": scores,
               "rewards": [r["reward"] for r in rows], "oracle": oracle,
               "likelihoods": likelihoods}

    def report_on(keep: list[int]) -> dict:
        """reward_report over the paths at ``keep``."""
        return reward_report(how=cfg.aggregate, **{
            name: None if values is None else [values[i] for i in keep]
            for name, values in columns.items()})

    metrics: dict = {"paths": len(rows), "aggregate": cfg.aggregate,
                     "prm_kind": meta["prm_kind"], **report_on(list(range(len(rows))))}
    # The PRM trained on some of these questions' paths: the same numbers on the others'
    # paths, where it is not flattered (a PRM that trained nothing has seen none).
    seen = set(meta.get("questions", ()))
    unseen = [i for i, r in enumerate(rows) if r["question_id"] not in seen]
    if seen and unseen:
        part = report_on(unseen)
        metrics["unseen_paths"] = len(unseen)
        metrics.update({f"unseen_{key}": part.get(key) for key in UNSEEN_KEYS})
    if oracle is not None:
        metrics["prm_step_accuracy_vs_oracle"] = step_accuracy(scores, oracle)
        metrics["oracle_correct_step_fraction"] = (
            sum(map(sum, oracle)) / max(1, sum(map(len, oracle))))
    write_parquet(rows, it.scores)
    write_json(metrics, it.stage_metrics("score"))
    stage.say(_summary(metrics))


def _summary(metrics: dict) -> str:
    """One line: the ranking and step AUCs against their baselines, where measured."""
    def shown(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{100 * value:.1f}%"

    line = (f"{metrics['paths']} paths; right above wrong: PRM {shown('right_above_wrong')}, "
            f"policy likelihood {shown('likelihood_right_above_wrong')}")
    if "oracle_right_above_wrong" in metrics:
        line += (f", oracle labels {shown('oracle_right_above_wrong')}; step AUC within "
                 f"(question, index) {shown('step_auc_within_question_and_index')}, over all "
                 f"{shown('step_auc_vs_oracle')} vs step index only "
                 f"{shown('step_index_only_auc')}")
    line += f"; shorter path wins {shown('shorter_path_wins')}"
    if metrics.get("unseen_right_above_wrong") is not None:
        line += (f"; on the {metrics['unseen_paths']} paths of questions the PRM never saw: "
                 f"PRM {shown('unseen_right_above_wrong')}, likelihood "
                 f"{shown('unseen_likelihood_right_above_wrong')}")
    elif "unseen_paths" in metrics:  # simulate labels the questions with both outcomes first
        line += ("; every (right, wrong) pair is of a question the PRM trained on (fresh "
                 "ones: benchmarks/prm_vs_likelihood.py)")
    return line
