"""Stage `prefs@itk`: the alignment data of iteration k.

SIPF: preference pairs whose path rewards differ by at least the margin. The method decides
(sipf.methods): pairs by outcome (SRF, RPO, pSRF), correct paths only (RFT, STaR, pRFT), and
whether the reward first filters the correct paths (pRFT, pSRF).
"""

from __future__ import annotations

from sipf.methods import method_named
from sipf.pipeline.preferences import (build_pairs, correct_path_rows, keep_top_correct,
                                       with_outcome_reward)
from sipf.stages.common import LoopStage, check_ids, loop_stage, read_rows, train_records_by_id
from sipf.storage import write_json, write_parquet


@loop_stage("prefs", needs_policy=False)
def main(stage: LoopStage) -> None:
    """Preference pairs (or correct paths) -> data/it<k>/prefs.parquet."""
    params, k, it = stage.params, stage.k, stage.it
    method = method_named(params.method)
    scored = read_rows(it.scores, "scores")
    _, prompts = train_records_by_id()
    check_ids(scored, prompts, it.scores, unique="path_id")
    if method.reward_filter:
        scored = keep_top_correct(scored, params.prefs.keep_fraction)
    # Each raises DataError, writing nothing, when no row qualifies.
    if method.data == "correct":
        pairs = correct_path_rows(scored, prompts, iteration=k)
    else:
        pairs = build_pairs(with_outcome_reward(scored) if method.data == "outcome_pairs"
                            else scored, prompts, params.prefs, iteration=k)
    metrics = {"pairs": len(pairs), "questions": len({p["question_id"] for p in pairs}),
               "data": method.data,
               "chosen_correct": sum(bool(p["chosen_outcome"]) for p in pairs)}
    if method.data != "correct":
        gaps = [p["chosen_reward"] - p["rejected_reward"] for p in pairs]
        metrics.update(mean_reward_gap=sum(gaps) / len(gaps),
                       rejected_wrong=sum(not p["rejected_outcome"] for p in pairs))
    write_parquet(pairs, it.prefs)
    write_json(metrics, it.stage_metrics("prefs"))
    line = f"{metrics['pairs']} {method.data} rows over {metrics['questions']} questions"
    if method.data != "correct":
        line += (f", mean reward gap {metrics['mean_reward_gap']:.3f}, chosen right "
                 f"{metrics['chosen_correct']}/{len(pairs)}, rejected wrong "
                 f"{metrics['rejected_wrong']}/{len(pairs)}")
    stage.say(line)
