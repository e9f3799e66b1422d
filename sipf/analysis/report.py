"""Results: the paper's tables and figures from the pipeline's own metrics.

Two sources. **Run directories** (``sipf report DIR...``): every evaluated model of each
directory, mean ± sd over directories (seeds). **Experiments** (``sipf report`` in a
repository with ``dvc exp`` runs of several ``method`` and ``seed`` values): the paper's
Tables 1/2 (methods × in/out of domain), 3 (PRM against ORM step accuracy, measured against
the arith oracle) and 4 (ablations), and Figures 3 (chosen/rejected log-probability during
alignment, DPO against ORPO), 4 (accuracy per iteration per method) and 6 (or_weight sweep),
and a table of the paper's claims saying on which seeds each holds.
A number is a mean over seeds ± the sample sd; "–" marks what no run measured.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipf import layout
from sipf.errors import DataError

SPLITS = layout.TEST_SPLITS  # the evaluated splits, in domain then out of domain
DEFAULT_OR_WEIGHT = 0.1  # Params().or_weight: the main tables use runs at the default λ
ITERATIONS = (1, 2, 3)
COMPARED = ("method", "seed", "or_weight")  # the params the tables compare across experiments


# ----------------------------------------------------------------------------- run directories
def _order(name: str) -> tuple:
    """base, sft, it1, it1_control, it2, ...: the order a reader follows the loop in."""
    match = re.fullmatch(r"it(\d+)(.*)", name)
    if match:
        return (2, int(match.group(1)), match.group(2))
    return ({"base": 0, "sft": 1}.get(name, 3), 0, name)


def collect(runs: Sequence[Path]) -> dict[str, dict[str, list[float]]]:
    """``{model name: {split: [accuracy per run]}}`` over every run that has the model
    (a model a method skipped, ``{"skipped": ...}``, counts as absent)."""
    table: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        files = sorted((Path(run) / layout.EVAL_METRICS).glob("*.json"))
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


def mean_and_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample sd in percent (sd 0 for a single run)."""
    return (100 * statistics.fmean(values),
            100 * statistics.stdev(values) if len(values) > 1 else 0.0)


def mean_sd(values: Sequence[float]) -> str:
    """'61.2 ± 3.4' in percent (sample sd); a single run has no sd; none is '–'."""
    if not values:
        return "–"
    mean, sd = mean_and_sd(values)
    return f"{mean:.1f}" if len(values) < 2 else f"{mean:.1f} ± {sd:.1f}"


def markdown(table: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| model | runs | in domain (%) | out of domain (%) |", "|---|---|---|---|"]
    for name, splits in table.items():
        runs = max(len(v) for v in splits.values())
        cells = [mean_sd(splits[s]) if s in splits else "" for s in SPLITS]
        lines.append(f"| {name} | {runs} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- experiments
@dataclass(frozen=True)
class Run:
    """One experiment: its name, params and a reader of its files (None: no such file)."""

    name: str
    params: dict[str, Any]
    read: Callable[[str], str | None]
    # params other than COMPARED that differ from the experiment's baseline ("key=value"): such
    # a run is not one of the tables' cells, so the report lists it on its own
    changed: tuple[str, ...] = ()

    @property
    def method(self) -> str:
        return str(self.params.get("method", "sipf"))

    @property
    def seed(self) -> int:
        return int(self.params.get("seed", 0))

    @property
    def or_weight(self) -> float:
        return float(self.params.get("or_weight", DEFAULT_OR_WEIGHT))

    def json(self, path: str) -> dict | None:
        text = self.read(path)
        if text is None:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"not JSON: {err}", file=f"{self.name}:{path}") from err
        return None if "skipped" in data else data

    def accuracy(self, model: str, split: str) -> float | None:
        """Accuracy of ``model`` (base, sft, it1, ...) on ``split``; None if not evaluated."""
        metrics = self.json(layout.eval_metrics(model).as_posix())
        if metrics is None or split not in metrics:
            return None
        return float(metrics[split]["accuracy"])

    def curve(self, path: str) -> list[tuple[float, float]]:
        """(step, value) rows of a DVCLive TSV ("step<TAB>name" header); [] if absent."""
        text = self.read(path)
        if not text:
            return []
        rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
        return [(float(row[0]), float(row[1])) for row in rows]


def experiment_runs(repo: Path = Path("."), all_commits: bool = False) -> list[Run]:
    """The finished experiments of ``repo`` as ``dvc exp show --json`` lists them: those of
    the commit checked out, or of every commit with ``all_commits`` (slower: 35 s against
    6 s for this repository's ~110 commits); an experiment's other files (the DVCLive curves)
    are read from its commit with ``git show``. Queued, running and failed experiments,
    which have no evaluated M0 yet, are left out."""
    command = ["dvc", "exp", "show", "--json", *(["--all-commits"] if all_commits else [])]
    done = subprocess.run([sys.executable, "-m", *command], cwd=repo, capture_output=True,
                          text=True)  # the dvc of this environment, whatever PATH says
    if done.returncode != 0:
        raise DataError(f"`{' '.join(command)}` failed: {done.stderr.strip()[-500:]}", file=repo)
    return runs_from_exp_show(json.loads(done.stdout), repo)


def runs_from_exp_show(baselines: list[dict], repo: Path) -> list[Run]:
    """The finished experiments in ``dvc exp show --json`` output (see experiment_runs)."""
    runs = []
    for baseline in baselines:
        base_params = _params(baseline)
        for experiment in baseline.get("experiments") or []:
            state = (experiment.get("executor") or {}).get("state", "success")
            tip = experiment["revs"][0]
            data = tip.get("data") or {}
            metrics = {path: entry["data"] for path, entry in (data.get("metrics") or {}).items()
                       if "data" in entry}
            # A queued or running experiment shows its baseline's metrics: leave it out.
            if state != "success" or tip.get("error") or layout.eval_metrics("sft").as_posix() not in metrics:
                continue
            params = _params(tip)
            runs.append(Run(tip.get("name") or tip["rev"][:7], params,
                            _reader(repo, tip["rev"], metrics), _changed(params, base_params)))
    return sorted(runs, key=lambda r: (r.method, r.or_weight, r.seed, r.name))


def _params(entry: dict) -> dict[str, Any]:
    return ((entry.get("data") or {}).get("params") or {}).get("params.yaml", {}).get("data", {})


def _changed(params: dict[str, Any], baseline: dict[str, Any]) -> tuple[str, ...]:
    """'key=value' for every param outside COMPARED that differs from the baseline's."""
    def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out = {}
        for key, value in tree.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict)
                       else {f"{prefix}{key}": value})
        return out

    if not baseline:  # no baseline params to compare with
        return ()
    mine, theirs = flat(params), flat(baseline)
    return tuple(f"{key}={mine.get(key)}" for key in sorted(mine.keys() | theirs.keys())
                 if key not in COMPARED and mine.get(key) != theirs.get(key))


def _reader(repo: Path, rev: str, metrics: dict[str, Any]) -> Callable[[str], str | None]:
    def read(path: str) -> str | None:
        if path in metrics:
            return json.dumps(metrics[path])
        done = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True,
                              text=True)
        return done.stdout if done.returncode == 0 else None

    return read


def _values(runs: Sequence[Run], method: str, value: Callable[[Run], float | None],
            or_weight: float | None = DEFAULT_OR_WEIGHT) -> list[tuple[int, float]]:
    """(seed, value) of each of ``method``'s runs at ``or_weight`` (None: any) that has one."""
    found = [(r.seed, value(r)) for r in runs if r.method == method
             and (or_weight is None or r.or_weight == or_weight)]
    return [(seed, v) for seed, v in found if v is not None]


def _score_metric(k: int, key: str) -> Callable[[Run], float | None]:
    """``key`` of a run's metrics/it<k>/score.json (the arith oracle's), None if absent."""
    def read(run: Run) -> float | None:
        metrics = run.json(layout.Iteration(k).stage_metrics("score").as_posix())
        return float(metrics[key]) if metrics and metrics.get(key) is not None else None
    return read


def accuracies(runs: Sequence[Run], method: str, model: str, split: str,
               or_weight: float | None = DEFAULT_OR_WEIGHT) -> list[float]:
    """One accuracy per seed of ``method``'s runs (at ``or_weight``; None: any)."""
    return [v for _, v in _values(runs, method, lambda r: r.accuracy(model, split), or_weight)]


def best_iteration(runs: Sequence[Run], method: str) -> int | None:
    """STaR's reported iteration (the paper: its best): highest mean in-domain accuracy."""
    means = {k: statistics.fmean(v) for k in ITERATIONS
             if (v := accuracies(runs, method, f"it{k}", "test"))}
    return max(means, key=lambda k: (means[k], -k)) if means else None


# (label, method, model): what a row of Tables 1/2 reports; "best" is STaR's best iteration.
MAIN_ROWS = [("CoT", "cot", "base"), ("SFT", "sft", "sft"), ("RFT", "rft", "it1"),
             ("pRFT", "prft", "it1"), ("SRF", "srf", "it1"), ("pSRF", "psrf", "it1"),
             ("RPO", "rpo", "it1"), ("STaR", "star", "best"),
             *[(f"SIOF-Iter{k}", "siof", f"it{k}") for k in ITERATIONS],
             *[(f"SIPF-Iter{k}", "sipf", f"it{k}") for k in ITERATIONS],
             # not in the paper: M0 trained on gold solutions with SIPF-Iter k's budget
             *[(f"gold-SFT control, SIPF-Iter{k}'s budget", "sipf", f"it{k}_control")
               for k in ITERATIONS]]
ABLATIONS = [("SIPF", "sipf"), ("w/o PF (SIOF)", "siof"), ("w/o OR", "sipf_no_or"),
             ("w/o PFOR", "sipf_no_pf_or")]


def main_table(runs: Sequence[Run]) -> str:
    """Tables 1/2: every method, in domain and out of domain, mean ± sd over seeds."""
    lines = ["| method | seeds | in domain (%) | out of domain (%) |", "|---|---|---|---|"]
    for label, method, model in MAIN_ROWS:
        if model == "best":
            k = best_iteration(runs, method)
            model, label = (f"it{k}", f"{label} (iteration {k})") if k else ("it1", label)
        test, ood = (accuracies(runs, method, model, s) for s in SPLITS)
        lines.append(f"| {label} | {len(test)} | {mean_sd(test)} | {mean_sd(ood)} |")
    return "\n".join(lines)


def ablation_table(runs: Sequence[Run]) -> str:
    """Table 4: SIPF without process feedback, without the odds ratio, without both."""
    head = " | ".join(f"iteration {k}: {where} (%)" for k in (1, 3)
                      for where in ("in domain", "out of domain"))
    lines = [f"| variant | seeds | {head} |", "|---|---|---|---|---|---|"]
    for label, method in ABLATIONS:
        cells = [mean_sd(accuracies(runs, method, f"it{k}", s)) for k in (1, 3) for s in SPLITS]
        seeds = len(accuracies(runs, method, "it1", "test"))
        lines.append(f"| {label} | {seeds} | {' | '.join(cells)} |")
    return "\n".join(lines)


def step_accuracy(runs: Sequence[Run], method: str, k: int, key: str) -> list[float]:
    """``key`` of metrics/it<k>/score.json over ``method``'s seeds (the arith oracle's)."""
    return [v for _, v in _values(runs, method, _score_metric(k, key))]


# Table 3's columns: (header, metrics/it<k>/score.json key, method). Each reward model's number
# stands next to the baseline that would fake it: step AUC within one (question, step index)
# against the step index alone, ranking against the policy's own likelihood and the oracle.
REWARD_COLUMNS = (
    ("PRM step AUC within (question, index)", "step_auc_within_question_and_index", "sipf"),
    ("PRM step AUC", "step_auc_vs_oracle", "sipf"),
    ("step index only: AUC", "step_index_only_auc", "sipf"),
    ("PRM step accuracy", "prm_step_accuracy_vs_oracle", "sipf"),
    ("ORM step accuracy", "prm_step_accuracy_vs_oracle", "siof"),
    ("step index only: accuracy", "step_index_only_accuracy", "sipf"),
    ("PRM: right above wrong", "right_above_wrong", "sipf"),
    ("ORM: right above wrong", "right_above_wrong", "siof"),
    ("policy likelihood: right above wrong", "likelihood_right_above_wrong", "sipf"),
    ("oracle labels: right above wrong", "oracle_right_above_wrong", "sipf"),
    ("PRM: right above wrong, questions it never trained on", "unseen_right_above_wrong", "sipf"),
    ("policy likelihood: the same", "unseen_likelihood_right_above_wrong", "sipf"),
    ("PRM: shorter path wins", "shorter_path_wins", "sipf"),
)


def reward_model_table(runs: Sequence[Run]) -> str:
    """Table 3: the PRM (SIPF's) and the ORM (SIOF's) against the arith oracle, every number
    beside its trivial baseline (sipf.pipeline.reward_metrics), per iteration, in percent."""
    lines = ["| iteration | " + " | ".join(f"{h} (%)" for h, _, _ in REWARD_COLUMNS) + " |",
             "|---|" + "---|" * len(REWARD_COLUMNS)]
    for k in ITERATIONS:
        cells = [mean_sd(step_accuracy(runs, method, k, key))
                 for _, key, method in REWARD_COLUMNS]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def or_weight_table(runs: Sequence[Run]) -> str:
    """Figure 6's numbers: SIPF's accuracy per iteration at each λ."""
    weights = sorted({r.or_weight for r in runs if r.method == "sipf"})
    head = " | ".join(f"iteration {k} (%)" for k in ITERATIONS)
    lines = [f"| λ (or_weight) | seeds | {head} |", "|---|---|---|---|---|"]
    for w in weights:
        cells = [mean_sd(accuracies(runs, "sipf", f"it{k}", "test", w)) for k in ITERATIONS]
        seeds = len(accuracies(runs, "sipf", "it1", "test", w))
        lines.append(f"| {w:g} | {seeds} | {' | '.join(cells)} |")
    return "\n".join(lines)


Series = Callable[[Sequence[Run]], dict[int, float]]  # one value per seed


def accuracy_by_seed(method: str, model: str, split: str = "test",
                     or_weight: float = DEFAULT_OR_WEIGHT) -> Series:
    return lambda runs: dict(_values(runs, method, lambda r: r.accuracy(model, split), or_weight))


def step_accuracy_by_seed(method: str, k: int,
                          key: str = "prm_step_accuracy_vs_oracle") -> Series:
    return lambda runs: dict(_values(runs, method, _score_metric(k, key)))


def claims(runs: Sequence[Run]) -> list[tuple[str, Series, Series]]:
    """The paper's claims, each as "left above right" on in-domain accuracy unless it says
    otherwise; STaR at the iteration Tables 1/2 report."""
    star = best_iteration(runs, "star") or 1
    sft = accuracy_by_seed("sft", "sft")
    sipf3 = accuracy_by_seed("sipf", "it3")
    return [
        ("SIPF-Iter1 above SFT", accuracy_by_seed("sipf", "it1"), sft),
        ("SIPF-Iter3 above SFT", sipf3, sft),
        ("SIPF-Iter3 above SFT, out of domain", accuracy_by_seed("sipf", "it3", "ood"),
         accuracy_by_seed("sft", "sft", "ood")),
        ("SIPF-Iter3 above RFT", sipf3, accuracy_by_seed("rft", "it1")),
        (f"SIPF-Iter3 above STaR (iteration {star})", sipf3, accuracy_by_seed("star", f"it{star}")),
        *[(f"SIPF above SIOF at iteration {k}", accuracy_by_seed("sipf", f"it{k}"),
           accuracy_by_seed("siof", f"it{k}")) for k in ITERATIONS],
        ("SFT above SRF (DPO)", sft, accuracy_by_seed("srf", "it1")),
        ("SFT above pSRF (DPO)", sft, accuracy_by_seed("psrf", "it1")),
        *[(f"PRM above ORM, step accuracy at iteration {k}", step_accuracy_by_seed("sipf", k),
           step_accuracy_by_seed("siof", k)) for k in ITERATIONS],
        ("SIPF-Iter3 above w/o OR", sipf3, accuracy_by_seed("sipf_no_or", "it3")),
        ("SIPF-Iter3 above w/o PFOR", sipf3, accuracy_by_seed("sipf_no_pf_or", "it3")),
        *[(f"SIPF-Iter3: λ = 0.1 above λ = {w:g}", sipf3,
           accuracy_by_seed("sipf", "it3", "test", w)) for w in (0.01, 1.0)]]


def claims_table(runs: Sequence[Run]) -> str:
    """Which of the paper's claims hold here, seed by seed: a claim holds on a seed when its
    left side is strictly above its right side there; only seeds with both sides count."""
    lines = ["| the paper's claim | seeds | left − right (points) | holds on seeds | verdict |",
             "|---|---|---|---|---|"]
    for text, left, right in claims(runs):
        lhs, rhs = left(runs), right(runs)
        seeds = sorted(lhs.keys() & rhs.keys())
        gaps = [lhs[s] - rhs[s] for s in seeds]
        held = [s for s, gap in zip(seeds, gaps) if gap > 0]
        verdict = ("–" if not seeds else "yes" if len(held) == len(seeds)
                   else "no" if not held else f"{len(held)} of {len(seeds)} seeds")
        gap = mean_sd(gaps)
        gap = f"+{gap}" if gaps and statistics.fmean(gaps) > 0 else gap
        lines.append(f"| {text} | {len(seeds)} | {gap} | "
                     f"{', '.join(map(str, held)) or '–'} | {verdict} |")
    return "\n".join(lines)


def compared(runs: Sequence[Run]) -> list[Run]:
    """The runs the paper's tables and figures compare: no param outside COMPARED changed."""
    return [r for r in runs if not r.changed]


def other_runs_table(runs: Sequence[Run]) -> str:
    """Experiments that changed other params than COMPARED: each on its own row."""
    head = " | ".join(f"{m} (%)" for m in ("M0", *(f"iteration {k}" for k in ITERATIONS)))
    lines = [f"| experiment | method | seed | changed | {head} |", "|---|---|---|---|"
             + "---|" * (1 + len(ITERATIONS))]
    for run in runs:
        cells = [mean_sd([v] if (v := run.accuracy(m, "test")) is not None else [])
                 for m in ("sft", *(f"it{k}" for k in ITERATIONS))]
        lines.append(f"| {run.name} | {run.method} | {run.seed} | {', '.join(run.changed)} | "
                     f"{' | '.join(cells)} |")
    return "\n".join(lines)


def tables(all_runs: Sequence[Run]) -> str:
    """Every table, as one Markdown document; experiments that changed other params than
    COMPARED are left out of the paper's tables and listed after them."""
    runs = compared(all_runs)
    others = [r for r in all_runs if r.changed]
    seeds = sorted({r.seed for r in runs})
    return "\n\n".join([
        f"Runs: {len(runs)} experiments, seeds {', '.join(map(str, seeds))}. Mean ± sample sd "
        f"over seeds, in percent; '–': not measured."
        + (f" {len(others)} experiments with other params changed are listed at the end."
           if others else ""),
        "### Tables 1/2: methods, in domain and out of domain\n\n" + main_table(runs),
        "### Table 3: the reward models against the arith oracle and the baselines they must "
        "beat\n\n"
        + reward_model_table(runs),
        "### Table 4: ablations\n\n" + ablation_table(runs),
        "### Figure 6: or_weight sweep (SIPF, in domain)\n\n" + or_weight_table(runs),
        "### The paper's claims, seed by seed\n\n" + claims_table(runs),
        *(["### Other experiments (in domain)\n\n" + other_runs_table(others)] if others else [])])
