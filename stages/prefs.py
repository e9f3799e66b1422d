"""Stage `prefs@itk`: preference pairs whose path rewards differ by at least the margin."""

from __future__ import annotations

import click

from sipf.config import load_params
from sipf.preferences import build_pairs
from sipf.storage import read_parquet, write_json, write_parquet
from stages.common import data_dir, loop_stage, metrics_dir, train_records_by_id


@loop_stage("prefs", needs_policy=False)
def main(params_path: str, k: int) -> None:
    """Preference pairs by reward gap -> data/it<k>/prefs.parquet."""
    params = load_params(params_path)
    scored = read_parquet(data_dir(k) / "scores.parquet",
                          required=("question_id", "path_id", "text", "reward", "outcome"))
    _, prompts = train_records_by_id()
    pairs = build_pairs(scored, prompts, params.prefs, iteration=k)  # none: DataError, no file
    gaps = [p["chosen_reward"] - p["rejected_reward"] for p in pairs]
    metrics = {"pairs": len(pairs), "questions": len({p["question_id"] for p in pairs}),
               "mean_reward_gap": sum(gaps) / len(gaps),
               "chosen_correct": sum(bool(p["chosen_outcome"]) for p in pairs),
               "rejected_wrong": sum(not p["rejected_outcome"] for p in pairs)}
    write_parquet(pairs, data_dir(k) / "prefs.parquet")
    write_json(metrics, metrics_dir(k) / "prefs.json")
    click.echo(f"prefs@it{k}: {metrics}")
