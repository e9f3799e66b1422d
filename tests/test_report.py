"""`sipf report`: mean ± sd over runs, in the order of the loop."""

import json

from click.testing import CliRunner

from sipf.cli import main
from sipf.analysis.report import (Run, best_iteration, claims_table, collect, main_table, markdown,
                         mean_sd, or_weight_table, reward_model_table, runs_from_exp_show,
                         tables)


def write_run(root, accuracies: dict[str, tuple[float, float]]):
    (root / "metrics/eval").mkdir(parents=True)
    for name, (test, ood) in accuracies.items():
        (root / f"metrics/eval/{name}.json").write_text(json.dumps(
            {"test": {"accuracy": test}, "ood": {"accuracy": ood}}))
    return root


def test_mean_and_sample_sd_over_seeds_in_loop_order(tmp_path):
    one = write_run(tmp_path / "s0", {"it2": (0.5, 0.1), "sft": (0.6, 0.2), "it1": (0.7, 0.1),
                                      "it1_control": (0.4, 0.1), "base": (0.0, 0.0)})
    two = write_run(tmp_path / "s1", {"sft": (0.4, 0.1), "it1": (0.5, 0.3)})
    table = collect([one, two])
    assert list(table) == ["base", "sft", "it1", "it1_control", "it2"]
    assert table["sft"] == {"test": [0.6, 0.4], "ood": [0.2, 0.1]}
    assert mean_sd([0.6, 0.4]) == "50.0 ± 14.1" and mean_sd([0.5]) == "50.0"
    lines = markdown(table).splitlines()
    assert lines[3] == "| sft | 2 | 50.0 ± 14.1 | 15.0 ± 7.1 |"
    assert lines[-1] == "| it2 | 1 | 50.0 | 10.0 |"


def test_report_command_names_a_run_without_metrics(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "no metrics/eval/*.json" in result.output and "empty" in result.output


# ----------------------------------------------------------------------------- experiments
def fake_run(method, seed, accuracy, or_weight=0.1, score=None, curves=None):
    """A Run whose files are a dict: every model at ``accuracy`` (in and out of domain)."""
    files = {f"metrics/eval/{m}.json": json.dumps(
        {"test": {"accuracy": accuracy}, "ood": {"accuracy": accuracy / 2}})
        for m in ("base", "sft", "it1", "it2", "it3")}
    for k, metrics in (score or {}).items():
        files[f"metrics/it{k}/score.json"] = json.dumps(metrics)
    files.update(curves or {})
    return Run(f"{method}-s{seed}", {"method": method, "seed": seed, "or_weight": or_weight},
               files.get)


def test_main_table_is_mean_and_sd_over_seeds_per_method():
    control = Run("sipf-s2", {"method": "sipf", "seed": 2}, {"metrics/eval/it2_control.json":
                  json.dumps({"test": {"accuracy": 0.75}, "ood": {"accuracy": 0.25}})}.get)
    runs = [fake_run("rft", 0, 0.5), fake_run("rft", 1, 0.7), fake_run("sft", 0, 0.4),
            fake_run("sipf", 0, 0.9, or_weight=1.0), control]  # a sweep run: not in the main table
    rows = {line.split(" | ")[0][2:]: line for line in main_table(runs).splitlines()[2:]}
    assert rows["gold-SFT control, SIPF-Iter2's budget"].endswith(" | 1 | 75.0 | 25.0 |")
    assert rows["RFT"] == "| RFT | 2 | 60.0 ± 14.1 | 30.0 ± 7.1 |"
    assert rows["SFT"] == "| SFT | 1 | 40.0 | 20.0 |"
    assert rows["SIPF-Iter1"] == "| SIPF-Iter1 | 0 | – | – |"
    assert "| 1 | 1 | 90.0 | 90.0 | 90.0 |" in or_weight_table(runs)


def test_star_reports_its_best_iteration_and_skipped_models_count_as_absent():
    run = fake_run("star", 0, 0.5)
    files = {p: run.read(p) for p in ("metrics/eval/sft.json", "metrics/eval/it1.json")}
    files["metrics/eval/it2.json"] = json.dumps({"test": {"accuracy": 0.8},
                                                 "ood": {"accuracy": 0.1}})
    files["metrics/eval/it3.json"] = json.dumps({"skipped": "method star runs 2 iterations"})
    star = Run("star-s0", {"method": "star", "seed": 0}, files.get)
    assert best_iteration([star], "star") == 2
    assert "| STaR (iteration 2) | 1 | 80.0 | 10.0 |" in main_table([star])
    assert star.accuracy("it3", "test") is None


def test_reward_model_table_compares_prm_and_orm_against_the_oracle():
    score = {1: {"prm_step_accuracy_vs_oracle": 0.7, "step_index_only_accuracy": 0.55,
                 "right_above_wrong": 0.5, "unseen_right_above_wrong": 0.4,
                 "unseen_likelihood_right_above_wrong": None}}
    runs = [fake_run("sipf", 0, 0.5, score=score),
            fake_run("siof", 0, 0.5, score={1: {"prm_step_accuracy_vs_oracle": 0.6,
                                                "right_above_wrong": 0.45}})]
    header, _, row = reward_model_table(runs).splitlines()[:3]
    cells = dict(zip(header.split(" | ")[1:], row.split(" | ")[1:]))
    assert cells["PRM step accuracy (%)"] == "70.0" and cells["ORM step accuracy (%)"] == "60.0"
    assert cells["PRM: right above wrong (%)"] == "50.0"
    assert cells["ORM: right above wrong (%)"] == "45.0"
    assert cells["policy likelihood: right above wrong (%)"] == "–"  # not measured
    # on the questions the PRM never trained on; None (no mixed question there) is no value
    assert cells["PRM: right above wrong, questions it never trained on (%)"] == "40.0"
    assert cells["policy likelihood: the same (%)"] == "–"


def test_claims_hold_seed_by_seed_on_the_seeds_both_sides_have():
    runs = [fake_run("sft", 0, 0.5), fake_run("sft", 1, 0.5), fake_run("sft", 2, 0.5),
            fake_run("sipf", 0, 0.6), fake_run("sipf", 1, 0.4), fake_run("sipf", 2, 0.7),
            fake_run("rft", 0, 0.5), fake_run("rft", 1, 0.3),
            fake_run("siof", 0, 0.6), fake_run("srf", 0, 0.1)]
    rows = {line.split(" | ")[0][2:]: line for line in claims_table(runs).splitlines()[2:]}
    # seeds 0 and 2 above M0, seed 1 below: +10, -10, +20 points
    assert rows["SIPF-Iter1 above SFT"] == (
        "| SIPF-Iter1 above SFT | 3 | +6.7 ± 15.3 | 0, 2 | 2 of 3 seeds |")
    # RFT has no seed 2, so only seeds 0 and 1 are compared
    assert rows["SIPF-Iter3 above RFT"] == (
        "| SIPF-Iter3 above RFT | 2 | +10.0 ± 0.0 | 0, 1 | yes |")
    assert rows["SIPF above SIOF at iteration 1"].endswith("| 1 | 0.0 | – | no |")
    assert rows["SFT above SRF (DPO)"] == "| SFT above SRF (DPO) | 1 | +40.0 | 0 | yes |"
    assert rows["SIPF-Iter3 above w/o OR"].endswith("| 0 | – | – | – |")


def test_exp_show_json_gives_finished_experiments_only(tmp_path):
    def entry(name, method, finished, state="success"):
        metrics = {"metrics/eval/sft.json": {"data": {"test": {"accuracy": 0.5}}}
                   if finished else {"error": {"type": "FileNotFoundError"}}}
        return {"executor": {"state": state}, "revs": [{"rev": "a" * 40, "name": name, "data": {
            "params": {"params.yaml": {"data": {"method": method, "seed": 1}}},
            "metrics": metrics}}]}

    shown = [{"rev": "workspace", "experiments": None},
             {"rev": "b" * 40, "experiments": [entry("rft-s1", "rft", True),
                                               entry("star-s1", "star", False),
                                               entry("srf-s1", "srf", True, state="running")]}]
    runs = runs_from_exp_show(shown, tmp_path)
    assert [(r.name, r.method, r.seed) for r in runs] == [("rft-s1", "rft", 1)]
    assert runs[0].accuracy("sft", "test") == 0.5
    assert runs[0].read("metrics/it1/align/plots/metrics/loss.tsv") is None  # not a git repo


def test_figures_are_pngs_with_the_runs_drawn(tmp_path):
    from sipf.analysis.figures import draw_all

    curve = {"metrics/it1/align/plots/metrics/logps/chosen.tsv": "step\tchosen\n0\t-1.0\n1\t-0.9\n",
             "metrics/it1/align/plots/metrics/logps/rejected.tsv":
                 "step\trejected\n0\t-1.2\n1\t-1.5\n",
             "metrics/it1/align/plots/metrics/epoch.tsv": "step\tepoch\n0\t0.1\n1\t0.2\n"}
    runs = [fake_run(m, s, 0.5 + s / 10, curves=curve) for m in ("sft", "sipf", "srf", "siof")
            for s in (0, 1)]
    assert runs[2].curve("metrics/it1/align/plots/metrics/logps/chosen.tsv") == [
        (0.0, -1.0), (1.0, -0.9)]
    paths = draw_all(runs, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths) == [
        "accuracy_per_iteration.png", "alignment_log_probs.png", "or_weight_sweep.png",
        "reward_model_accuracy.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
               for p in paths)


def test_report_writes_only_its_out_directory(tmp_path, monkeypatch):
    import sipf.stages.report
    monkeypatch.setattr(sipf.stages.report, "experiment_runs", lambda repo, all_commits: [
        fake_run(m, s, 0.5) for m in ("sft", "sipf") for s in (0, 1)])
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["report", "--out", "reports"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["reports"]  # no README or other file
    results = (tmp_path / "reports/results.md").read_text()
    assert results.startswith("Runs: 4 experiments, seeds 0, 1.")
    figures = sorted(p.name for p in (tmp_path / "reports").glob("*.png"))
    assert len(figures) == 4 and all(f"![{f[:-4]}]({f})" in results for f in figures)


def test_readme_and_docs_links_resolve():
    """Every relative `](path)` in README.md, docs/ and benchmarks/README.md names a file
    (the README links to reports/results.md instead of embedding it)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pages = [root / "README.md", root / "benchmarks/README.md", *sorted(root.glob("docs/**/*.md"))]
    links = 0
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            links += 1
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(root)}: {target} does not exist"
    assert links > 10
    assert "](reports/results.md)" in (root / "README.md").read_text()


def test_experiments_changing_other_params_are_set_aside_with_what_they_changed(tmp_path):
    def entry(name, params):
        return {"executor": {"state": "success"}, "revs": [{"rev": "a" * 40, "name": name, "data": {
            "params": {"params.yaml": {"data": params}},
            "metrics": {"metrics/eval/sft.json": {"data": {"test": {"accuracy": 0.5}}},
                        "metrics/eval/it1.json": {"data": {"test": {"accuracy": 0.25}}}}}}]}

    base = {"method": "sipf", "seed": 0, "or_weight": 0.1, "align": {"learning_rate": 0.001}}
    shown = [{"rev": "b" * 40, "data": {"params": {"params.yaml": {"data": base}}},
              "experiments": [
                  entry("srf-s1", {**base, "method": "srf", "seed": 1}),
                  entry("srf-lr", {**base, "method": "srf", "align": {"learning_rate": 1e-4}})]}]
    runs = runs_from_exp_show(shown, tmp_path)
    assert {r.name: r.changed for r in runs} == {
        "srf-s1": (), "srf-lr": ("align.learning_rate=0.0001",)}
    text = tables(runs)
    assert text.startswith("Runs: 1 experiments, seeds 1.")
    assert "1 experiments with other params changed are listed at the end." in text
    assert text.endswith("| srf-lr | srf | 0 | align.learning_rate=0.0001 | 50.0 | 25.0 | – | – |")
    assert next(line for line in text.splitlines() if line.startswith("| SRF |")) == (
        "| SRF | 1 | 25.0 | – |")  # srf-s1 alone: the set-aside seed-0 run is not averaged in
