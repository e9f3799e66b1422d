"""The report's PNG figures (matplotlib), each readable on its own: title, axes with units,
legend, and the number of seeds behind every mean (error bars: sample sd over seeds)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sipf.analysis.report import (DEFAULT_OR_WEIGHT, ITERATIONS, SPLITS, Run, accuracies, compared,
                         mean_and_sd, step_accuracy)
from sipf import layout
from sipf.storage import atomic_path

SPLIT_TITLES = {"test": "in domain", "ood": "out of domain"}
# (label, method, model at iteration k): the lines of Figure 4
ITERATED = [("SIPF", "sipf", "it{k}"), ("SIOF (outcome feedback)", "siof", "it{k}"),
            ("STaR", "star", "it{k}"), ("SIPF w/o OR", "sipf_no_or", "it{k}"),
            ("SIPF w/o PFOR", "sipf_no_pf_or", "it{k}"), ("RFT", "rft", "it{k}"),
            ("gold-SFT control (SIPF's budget)", "sipf", "it{k}_control")]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def accuracy_per_iteration(runs: Sequence[Run], path: Path) -> Path:
    """Figure 4: accuracy at iterations 0 (M0) to 3 per method, in and out of domain."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, split in zip(axes, SPLITS):
        for label, method, model in ITERATED:
            # iteration 0: the M0 of this method's own seeds (every experiment evaluates it)
            points = [(0, accuracies(runs, method, "sft", split))] + [
                (k, accuracies(runs, method, model.format(k=k), split)) for k in ITERATIONS]
            points = [(k, v) for k, v in points if v]
            if len(points) < 2:
                continue
            stats = [mean_and_sd(v) for _, v in points]
            seeds = max(len(v) for _, v in points)
            ax.errorbar([k for k, _ in points], [m for m, _ in stats], [s for _, s in stats],
                        marker="o", capsize=3,
                        label=f"{label} ({seeds} seed{'s' * (seeds != 1)})")
        ax.set_title(f"{SPLIT_TITLES[split]} test accuracy")
        ax.set_xlabel("iteration (0 = SFT model M0)")
        ax.set_ylabel("accuracy (%)")
        ax.set_xticks([0, *ITERATIONS])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Accuracy per iteration, mean ± sd over seeds (Figure 4)")
    return _save(fig, path)


def alignment_log_probs(runs: Sequence[Run], path: Path) -> Path:
    """Figure 3: log-probability of the chosen and rejected paths during iteration 1's
    alignment, ORPO (SIPF) against DPO (SRF), first seed of each."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = [("sipf", "ORPO (SIPF)", "mean log-probability per token (nats)"),
              ("srf", "DPO (SRF)", "log-probability of the path (nats, summed)")]
    for ax, (method, title, unit) in zip(axes, panels):
        run = min((r for r in runs if r.method == method and r.or_weight == DEFAULT_OR_WEIGHT),
                  key=lambda r: r.seed, default=None)
        logged = layout.Iteration(1).plots("align").as_posix()
        # DVCLive numbers its log calls (one every align.logging_steps): plot against epochs.
        epochs = dict(run.curve(f"{logged}/epoch.tsv")) if run else {}
        for which, style in (("chosen", "-"), ("rejected", "--")):
            curve = run.curve(f"{logged}/logps/{which}.tsv") if run else []
            points = [(epochs[step], value) for step, value in curve if step in epochs]
            if points:
                ax.plot(*zip(*points), style, label=f"{which} paths")
        seed = f", seed {run.seed}" if run else ": no run"
        ax.set_title(f"{title}, iteration 1{seed}")
        ax.set_xlabel("epoch (passes over the pairs)")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle("Chosen and rejected log-probability during alignment (Figure 3)")
    return _save(fig, path)


def or_weight_sweep(runs: Sequence[Run], path: Path) -> Path:
    """Figure 6: SIPF's in-domain accuracy per iteration against λ (log scale)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    weights = sorted({r.or_weight for r in runs if r.method == "sipf"})
    for k in ITERATIONS:
        points = [(w, v) for w in weights if (v := accuracies(runs, "sipf", f"it{k}", "test", w))]
        if points:
            stats = [mean_and_sd(v) for _, v in points]
            ax.errorbar([w for w, _ in points], [m for m, _ in stats], [s for _, s in stats],
                        marker="o", capsize=3, label=f"iteration {k}")
    # M0 of the seeds the sweep ran (one value per seed, whatever its λ)
    m0 = {r.seed: v for r in runs if r.method == "sipf" and (v := r.accuracy("sft", "test"))
          is not None}
    if m0:
        ax.axhline(mean_and_sd(list(m0.values()))[0], color="grey", linestyle=":",
                   label=f"M0 (SFT), seed{'s' * (len(m0) != 1)} {', '.join(map(str, sorted(m0)))}")
    ax.set_xscale("log")
    ax.set_xlabel("λ, weight of the odds-ratio term (or_weight, log scale)")
    ax.set_ylabel("in-domain accuracy (%)")
    ax.set_title("SIPF against or_weight, mean ± sd over seeds (Figure 6)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    return _save(fig, path)


def reward_model_accuracy(runs: Sequence[Run], path: Path) -> Path:
    """Table 3 as bars: PRM and ORM step accuracy against the arith oracle per iteration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    bars = [("PRM (SIPF)", "sipf", "prm_step_accuracy_vs_oracle"),
            ("ORM (SIOF)", "siof", "prm_step_accuracy_vs_oracle"),
            ("every step 'correct'", "sipf", "oracle_correct_step_fraction")]
    width = 0.27
    for i, (label, method, key) in enumerate(bars):
        cells = [(k, step_accuracy(runs, method, k, key)) for k in ITERATIONS]
        cells = [(k, v) for k, v in cells if v]
        if cells:
            stats = [mean_and_sd(v) for _, v in cells]
            ax.bar([k + (i - 1) * width for k, _ in cells], [m for m, _ in stats], width,
                   yerr=[s for _, s in stats], capsize=3, label=label)
    ax.set_xticks(list(ITERATIONS))
    ax.set_xlabel("iteration")
    ax.set_ylabel("step accuracy against the oracle (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Reward models' step accuracy, mean ± sd over seeds (Table 3)")
    ax.grid(alpha=0.3, axis="y")
    if ax.patches:
        ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


FIGURES = {"accuracy_per_iteration.png": accuracy_per_iteration,
           "alignment_log_probs.png": alignment_log_probs,
           "or_weight_sweep.png": or_weight_sweep,
           "reward_model_accuracy.png": reward_model_accuracy}


def draw_all(runs: Sequence[Run], out: Path) -> list[Path]:
    """Every figure, of the runs that changed no param outside report.COMPARED."""
    return [draw(compared(runs), Path(out) / name) for name, draw in FIGURES.items()]
