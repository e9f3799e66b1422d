"""Results tables: accuracy of every evaluated model, mean ± sd over runs (seeds).

A run is a project directory whose ``metrics/eval/<name>.json`` files were written by the
evaluate stage; the same name in several runs is the same model trained under another seed.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from sipf.errors import DataError

SPLITS = ("test", "ood")


def _order(name: str) -> tuple:
    """base, sft, it1, it1_control, it2, ...: the order a reader follows the loop in."""
    match = re.fullmatch(r"it(\d+)(.*)", name)
    if match:
        return (2, int(match.group(1)), match.group(2))
    return ({"base": 0, "sft": 1}.get(name, 3), 0, name)


def collect(runs: Sequence[Path]) -> dict[str, dict[str, list[float]]]:
    """``{model name: {split: [accuracy per run]}}`` over every run that has the model."""
    table: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        files = sorted((Path(run) / "metrics" / "eval").glob("*.json"))
        if not files:
            raise DataError("no metrics/eval/*.json: not an evaluated run", file=run)
        for path in files:
            try:
                metrics = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise DataError(f"not JSON: {err}", file=path) from err
            for split in SPLITS:
                if split in metrics:
                    table.setdefault(path.stem, {}).setdefault(split, []).append(
                        float(metrics[split]["accuracy"]))
    return dict(sorted(table.items(), key=lambda item: _order(item[0])))


def mean_sd(values: Sequence[float]) -> str:
    """'61.2 ± 3.4' in percent (sample sd); a single run has no sd."""
    mean = 100 * statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def markdown(table: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| model | runs | in domain (%) | out of domain (%) |", "|---|---|---|---|"]
    for name, splits in table.items():
        runs = max(len(v) for v in splits.values())
        cells = [mean_sd(splits[s]) if s in splits else "" for s in SPLITS]
        lines.append(f"| {name} | {runs} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)
