"""The trained PRM's learning curve: step AUC against the number of labelled paths.

Does a trained PRM (params.yaml's `prm`; ``--kinds`` trains other kinds side by side) learn
the step if it is given more labelled paths, with exact labels or with Monte-Carlo ones? Run
inside an arith project where M0 exists and `sample` of iteration 1 ran over many questions:

    cd /tmp/lc && sipf sample --iteration 1 --policy models/sft   # sample.question_limit 1500
    OMP_NUM_THREADS=2 python /work/main/benchmarks/prm_learning_curve.py \\
        --sizes 100,300,900 --held-out 60 --kinds classifier@0.001,lm_tokens --out /tmp/lc/curve

Held out: ``--held-out`` questions that have a right and a wrong path. The training paths
are drawn from the other questions as `simulate` draws them (`select_paths`: right and wrong
siblings of one question first, `simulate.paths_per_question`); the draws for the sizes are
nested. Each size trains one PRM from M0 on the arith oracle's exact labels and one on
Monte-Carlo labels (`simulate` with params.yaml's `simulate` section, run once on the largest
draw; ``--early-stop`` draws fewer rollouts for the same hard labels). Every PRM scores the
held-out paths; reported (sipf.pipeline.reward_metrics): step AUC against the oracle within
one (question, step index) and over all steps, and how often the right path's reward beats
the wrong one's, beside the untrained baselines on the same paths: the step index alone, the
policy's own likelihood read step by step (`prm.kind: likelihood`, reduced by `prm.likelihood`),
the oracle labels as rewards, and the issue's bar: the policy's mean token log-prob of the path.
Each PRM's ranking is set against that likelihood on the same pairs, the difference with a
bootstrap 95% interval over questions: more held-out questions (``--held-out``, from a pool
sampled over more questions) narrow it.
``--backbone DIR`` trains the PRMs from another model (another seed's M0, models/verifier) and
adds its untrained likelihood to the baselines: is the backbone, not the labels, the limit?
``--prm DIR`` scores an already trained PRM (a pipeline's `models/it1/prm`) on the held-out
questions its `prm.json` does not list, beside the same baselines (``--sizes ""``: only that).
Writes ``--out``/results.json and prints a Markdown table.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import time
from pathlib import Path
from typing import Any

import click

from sipf import layout
from sipf.config import load_params, prm_prompt_style
from sipf.engines import ModelRef, open_generator
from sipf.models import load_policy, load_tokenizer
from sipf.pipeline.prm import (aggregate, build_examples, likelihood_step_scores, load_prm,
                               mean_log_probs, pair_wins, ranking_accuracy, ranking_set,
                               read_meta, score_steps, train_prm)
from sipf.pipeline.reward_metrics import ranking_difference, reward_report
from sipf.pipeline.simulation import select_paths, simulate
from sipf.stages.common import read_rows, seed_everything, train_records_by_id
from sipf.storage import read_parquet, write_json, write_parquet
from sipf.tasks import arith
from sipf.tasks.registry import task_named

COLUMNS = ("step_auc_within_question_and_index", "step_auc_vs_oracle", "right_above_wrong")


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """The held-out paths, column by column, and the bar every PRM is set against: the
    policy likelihood's wins on their (right, wrong) pairs."""
    questions: list[str]
    outcomes: list[bool]
    steps: list[list[str]]
    truth: list[list[float]]  # the arith oracle's step labels
    texts: list[str]  # each path's question, as the PRM reads it
    likelihood_wins: dict[str, list[float]]

    def report(self, model: Any, tokenizer: Any, keep: list[int], cfg: Any,
               style: str | None) -> dict[str, Any]:
        """A PRM's columns on the held-out paths ``keep`` (indices), and its ranking minus
        the policy likelihood's on the same pairs, with the bootstrap interval."""
        kept, won = [self.questions[i] for i in keep], [self.outcomes[i] for i in keep]
        scores, rewards = _scored(model, tokenizer, [
            {"question": self.texts[i], "steps": self.steps[i]} for i in keep], cfg, style)
        report = reward_report(kept, won, scores, rewards, cfg.aggregate,
                               oracle=[self.truth[i] for i in keep])
        asked = set(kept)
        difference = ranking_difference(
            pair_wins(kept, won, rewards),
            {q: w for q, w in self.likelihood_wins.items() if q in asked})
        return {**{c: report[c] for c in COLUMNS},
                "minus_likelihood": [round(x, 4) for x in difference]}


def split(pool: list[dict], held_out: int) -> tuple[list[dict], list[dict]]:
    """(training candidates, held-out paths): the held-out questions are ``held_out`` of
    those with both outcomes, drawn with a fixed seed."""
    outcomes: dict[str, set[bool]] = {}
    for path in pool:
        outcomes.setdefault(path["question_id"], set()).add(bool(path["outcome"]))
    mixed = sorted(q for q, seen in outcomes.items() if len(seen) == 2)
    random.Random(0).shuffle(mixed)
    test = set(mixed[:held_out])
    return ([p for p in pool if p["question_id"] not in test],
            [p for p in pool if p["question_id"] in test])


def recipe_of(cfg: Any, spec: str) -> Any:
    """params.yaml's ``prm`` section with ``KIND[@LEARNING_RATE][+lora][+rank]`` applied
    (``+rank``: prm.select 'ranking')."""
    spec, *extras = spec.split("+")
    unknown = [e for e in extras if e not in ("lora", "rank")]
    if unknown:
        raise click.BadParameter(f"{spec}+{'+'.join(extras)}: the suffixes are +lora and +rank",
                                 param_hint="--kinds")
    kind, _, rate = spec.partition("@")
    try:
        rates = {"learning_rate": float(rate)} if rate else {}
    except ValueError:
        raise click.BadParameter(f"{spec}: the learning rate {rate!r} is not a number",
                                 param_hint="--kinds") from None
    return dataclasses.replace(cfg, kind=kind, lora=cfg.lora or "lora" in extras,
                               select="ranking" if "rank" in extras else cfg.select, **rates)


def mc_labels(params: Any, paths: list[dict], records: dict, prompts: dict, early_stop: bool,
              cache: Path) -> dict[str, list[float]]:
    """Hard Monte-Carlo labels of ``paths`` by path id, simulated once and cached."""
    if not cache.exists():
        task = task_named(params.prepare.task)
        cfg = dataclasses.replace(params.simulate, early_stop=early_stop)
        ref = ModelRef.policy(layout.M0, layout.BASE, params.model)
        started = time.perf_counter()
        _, rows = simulate(open_generator(params.generation, ref, cfg.batch_size), paths,
                           records, prompts, cfg, stop=task.stop(params.prepare.prompt_style),
                           kind=task.kind)
        click.echo(f"simulated {len(paths)} paths ({len(rows)} steps) in "
                   f"{time.perf_counter() - started:.0f} s", err=True)
        write_parquet(rows, cache)
    labels: dict[str, list[float]] = {}
    for row in sorted(read_parquet(cache), key=lambda r: (r["path_id"], r["step_index"])):
        labels.setdefault(row["path_id"], []).append(float(row["hard"]))
    return labels


@click.command()
@click.option("--sizes", default="100,300,900", show_default=True,
              help="Labelled paths per PRM, comma-separated.")
@click.option("--held-out", default=60, show_default=True,
              help="Held-out questions (each with a right and a wrong path).")
@click.option("--sources", default="oracle,mc", show_default=True,
              help="Label sources: oracle (exact) and/or mc (Monte-Carlo).")
@click.option("--early-stop/--no-early-stop", default=True, show_default=True,
              help="Monte-Carlo labels with simulate.early_stop (same hard labels, fewer rollouts).")
@click.option("--kinds", default="", help="PRM kinds to train, comma-separated, each "
              "KIND[@LEARNING_RATE][+lora][+rank] (+rank: prm.select 'ranking'; default: "
              "params.yaml's prm.kind, rate, lora and select).")
@click.option("--backbone", default="", help="The PRMs' starting weights, a model directory "
              "such as another seed's M0 or models/verifier (default: M0, the policy); its "
              "untrained likelihood joins the baselines. Rollouts always come from M0.")
@click.option("--prm", "prms", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="A trained PRM (a pipeline's models/it1/prm, trained on its own pool) "
              "scored on the held-out questions its prm.json does not list; repeatable.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
def main(sizes: str, held_out: int, sources: str, early_stop: bool, kinds: str,
         backbone: str, prms: tuple[str, ...], out: str) -> None:
    params = load_params("params.yaml")
    cfg = params.prm
    recipes = [recipe_of(cfg, k.strip()) for k in kinds.split(",") if k.strip()] or [cfg]
    records, prompts = train_records_by_id()
    pool = read_rows(layout.Iteration(1).samples, "samples")
    candidates, test = split(pool, held_out)
    counts = sorted(int(n) for n in sizes.split(",") if n.strip())  # none: only --prm
    draw = select_paths(candidates, dataclasses.replace(
        params.simulate, max_paths=counts[-1])) if counts else []
    # select_paths's question order is seeded, so a smaller draw takes the larger one's
    # first questions: the training sets are nested
    by_size = {n: [p for p in draw if p["path_id"] in
                   {q["path_id"] for q in select_paths(
                       candidates, dataclasses.replace(params.simulate, max_paths=n))}]
               for n in counts}

    def oracle(path: dict) -> list[float]:
        return [float(x) for x in arith.step_labels(records[path["question_id"]],
                                                    list(path["steps"]))]

    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    labels = {"oracle": {p["path_id"]: oracle(p) for p in draw}}
    if "mc" in sources and draw:
        labels["mc"] = mc_labels(params, draw, records, prompts, early_stop,
                                 directory / "mc_step_labels.parquet")
    questions = [p["question_id"] for p in test]
    outcomes = [bool(p["outcome"]) for p in test]
    steps = [list(p["steps"]) for p in test]
    truth = [oracle(p) for p in test]
    tokenizer = load_tokenizer(layout.BASE)
    held_prompts = [prompts[q] for q in questions]

    def untrained(model_dir: str | Path) -> list[list[float]]:
        """Each held-out step's log-probs under ``model_dir``, reduced by prm.likelihood
        (`prm.kind: likelihood`)."""
        model = load_policy(model_dir, layout.BASE, params.model, merged=True)
        return likelihood_step_scores(model, tokenizer, held_prompts, steps,
                                      batch_size=cfg.batch_size, reduce=cfg.likelihood)

    start = backbone or str(layout.M0)
    baselines = [(f"likelihood {cfg.likelihood}", untrained(layout.M0))]
    if backbone:  # the backbone read untrained, as kind lm_tokens starts
        baselines.append((f"likelihood {cfg.likelihood} of {backbone}", untrained(backbone)))
    # the bar a trained PRM must clear: the policy's mean token log-prob of the whole path
    policy = load_policy(layout.M0, layout.BASE, params.model, merged=True)
    likelihoods = mean_log_probs(policy, tokenizer, held_prompts, [p["text"] for p in test],
                                 batch_size=cfg.batch_size)
    del policy
    likelihood_wins = pair_wins(questions, outcomes, likelihoods)
    held = HeldOut(questions, outcomes, steps, truth, [records[q].question for q in questions],
                   likelihood_wins)
    results: dict[str, Any] = {
        "held_out_questions": len(set(questions)), "held_out_paths": len(test),
        "held_out_pairs": sum(map(len, likelihood_wins.values())),
        "candidate_paths": len(candidates), "prm": dataclasses.asdict(cfg), "backbone": start,
        "mc_label_agreement_with_oracle": (
            sum(a == b for p in draw for a, b in zip(labels["mc"][p["path_id"]],
                                                      labels["oracle"][p["path_id"]]))
            / sum(len(labels["oracle"][p["path_id"]]) for p in draw)) if "mc" in labels else None,
        "baselines": {}, "curve": []}
    # as is, and as a running min (a step after a wrong one is wrong: how lm_tokens reads)
    scored = [entry for name, scores in baselines for entry in (
        (name, scores), (f"{name}, running min",
                         [list(itertools.accumulate(s, min)) for s in scores]))]
    for name, scores in (*scored, ("oracle labels", truth)):
        results["baselines"][name] = reward_report(
            questions, outcomes, scores, [aggregate(s, cfg.aggregate) for s in scores],
            cfg.aggregate, oracle=truth)
    results["baselines"]["policy likelihood (path mean token log-prob)"] = {
        "right_above_wrong": ranking_accuracy(questions, outcomes, likelihoods)}
    results["baselines"]["step index only"] = {
        "step_auc_vs_oracle": results["baselines"]["oracle labels"]["step_index_only_auc"]}
    style = prm_prompt_style(params)
    # +rank picks the epoch on questions outside every draw, the same ones for each size
    ranking = ranking_set(candidates, lambda q: records[q].question,
                          {p["question_id"] for p in draw}, cfg.select_questions, cfg.seed,
                          style)
    for recipe in recipes:
        for source in [s.strip() for s in sources.split(",") if s.strip()]:
            for n in counts:
                _point(recipe, params.model, source, n, by_size[n], labels, records, held,
                       oracle, tokenizer, style, start, results, directory, ranking)
    for prm in prms:
        _trained(prm, held, cfg, style, results, directory)
    click.echo(table(results))


def _add(point: dict[str, Any], results: dict[str, Any], directory: Path) -> None:
    results["curve"].append(point)
    click.echo(json.dumps(point), err=True)
    write_json(results, directory / "results.json")  # atomic: rewritten each PRM


def _trained(prm: str, held: HeldOut, cfg: Any, style: str | None, results: dict[str, Any],
             directory: Path) -> None:
    """Score the PRM at ``prm`` on the held-out paths of questions it did not train on."""
    seen = set(read_meta(prm)["questions"])
    keep = [i for i, q in enumerate(held.questions) if q not in seen]
    model, tokenizer = load_prm(prm)
    _add({"kind": f"trained: {prm}", "source": "its own", "paths": len(keep),
          "questions": len({held.questions[i] for i in keep}), "train_s": "–",
          **held.report(model, tokenizer, keep, cfg, style)}, results, directory)


def _point(cfg: Any, model_cfg: Any, source: str, n: int, paths: list[dict], labels: dict,
           records: dict, held: HeldOut, oracle: Any, tokenizer: Any, style: str | None,
           backbone: str, results: dict[str, Any], directory: Path,
           ranking: list[dict]) -> None:
    """Train one PRM of recipe ``cfg`` on ``paths`` and add its point to ``results``."""
    rows = [{"path_id": p["path_id"], "question_id": p["question_id"],
             "question": records[p["question_id"]].question, "steps": list(p["steps"]),
             "labels": labels[source][p["path_id"]]} for p in paths]
    seed_everything(cfg.seed)
    started = time.perf_counter()
    lora = "-lora" if cfg.lora else ""
    rank = "-rank" if cfg.select == "ranking" else ""
    model_dir = directory / f"{cfg.kind}{lora}{rank}-{cfg.learning_rate:g}-{source}-{n}"
    metrics = train_prm(backbone, tokenizer, build_examples(rows, style), cfg, model_dir,
                        model_cfg=model_cfg, ranking=ranking)
    train_s = time.perf_counter() - started
    model, prm_tokenizer = load_prm(model_dir)
    on_held_out = held.report(model, prm_tokenizer, list(range(len(held.questions))), cfg,
                              style)
    # the same PRM on its own training paths: if it cannot fit them either, the
    # fault is the head or the code, not too few labels
    fit = reward_report([r["question_id"] for r in rows],
                        [bool(p["outcome"]) for p in paths],
                        *_scored(model, prm_tokenizer, rows, cfg, style),
                        cfg.aggregate, oracle=[oracle(p) for p in paths])
    point = {"kind": cfg.kind, "learning_rate": cfg.learning_rate, "lora": cfg.lora,
             "select": cfg.select, "val_ranking": metrics["val_ranking"], "source": source,
             "paths": len(rows),
             "questions": len({r["question_id"] for r in rows}),
             "best_epoch": metrics["best_epoch"], "train_s": round(train_s, 1),
             **on_held_out, "fit": {c: fit[c] for c in COLUMNS}}
    _add(point, results, directory)


def _scored(model: Any, tokenizer: Any, rows: list[dict], cfg: Any, style: str | None
            ) -> tuple[list[list[float]], list[float]]:
    """Step scores of ``rows`` ({question, steps}) and their path rewards."""
    scores = score_steps(model, tokenizer, [r["question"] for r in rows],
                         [list(r["steps"]) for r in rows], batch_size=cfg.batch_size,
                         prompt_style=style)
    return scores, [aggregate(s, cfg.aggregate) for s in scores]


def table(results: dict[str, Any]) -> str:
    """The curve and the baselines in Markdown."""
    def cell(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}"

    def versus(point: dict[str, Any]) -> str:
        diff, low, high = (100 * x for x in point["minus_likelihood"])
        return f"{diff:+.1f} [{low:+.1f}, {high:+.1f}]"

    lines = [f"PRMs trained from {results.get('backbone', 'models/sft')}; held out: "
             f"{results['held_out_paths']} paths of {results['held_out_questions']} questions, "
             f"{results['held_out_pairs']} (right, wrong) pairs.", "",
             "| PRM | labelled paths (questions) | step AUC within (q, index) | step AUC | "
             "right above wrong | − policy likelihood [95%] | on its training paths: AUC "
             "within, right above wrong | train s |", "|---|---|---|---|---|---|---|---|"]
    for p in results["curve"]:
        name, size = ((f"{p['kind']}, on the {p['paths']} held-out paths ({p['questions']} "
                       "questions) it never saw", "–") if p["source"] == "its own" else
                      (f"{p.get('kind', 'classifier')} (lr {p.get('learning_rate', '–')}"
                       f"{', LoRA' if p.get('lora') else ''}"
                       + (f", epoch by ranking: {p['best_epoch']}"
                          if p.get("select") == "ranking" else "") + "), "
                       f"{p['source']} labels", f"{p['paths']} ({p['questions']})"))
        lines.append(f"| {name} | {size} | "
                     + " | ".join(cell(p[c]) for c in COLUMNS) + f" | {versus(p)} | "
                     + (f"{cell(p['fit'][COLUMNS[0]])}, {cell(p['fit'][COLUMNS[2]])}"
                        if "fit" in p else "–") + f" | {p['train_s']} |")
    for name, r in results["baselines"].items():
        lines.append(f"| {name} (untrained) | – | "
                     + " | ".join(cell(r.get(c)) for c in COLUMNS) + " | – | – | – |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
