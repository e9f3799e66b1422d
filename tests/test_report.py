"""`sipf report`: mean ± sd over runs, in the order of the loop."""

import json

from click.testing import CliRunner

from sipf.cli import main
from sipf.report import collect, markdown, mean_sd


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
