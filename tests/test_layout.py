"""dvc.yaml spells the same paths as sipf/layout.py, and params.yaml's loop follows it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sipf import layout
from sipf.config import load_params

REPO = Path(__file__).resolve().parents[1]


def dvc_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def declared(stage: dict) -> list[str]:
    """A stage's outs, metrics and plots, in that order, as paths."""
    paths = []
    for key in ("outs", "metrics", "plots"):
        for entry in stage.get(key, []):
            paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


def expand(template: str, k: int, policy: str) -> str:
    return template.replace("${item.k}", str(k)).replace("${item.policy}", policy)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("stage", layout.LOOP_STAGES)
def test_loop_stage_outputs_match_the_layout(stage, k):
    it = layout.Iteration(k)
    spec = dvc_stages()[stage]["do"]
    found = [expand(p, k, it.previous_policy.as_posix()) for p in declared(spec)]
    # a stage's placeholder outputs and its dvc.yaml outputs are the same list
    assert found == [p.as_posix() for p in it.outputs(stage)]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_loop_stages_read_what_the_layout_says(k):
    it = layout.Iteration(k)
    sample = dvc_stages()["sample"]["do"]
    assert expand(sample["cmd"], k, it.previous_policy.as_posix()) == \
        f"sipf sample --iteration {k} --policy {it.previous_policy.as_posix()}"
    deps = {expand(d, k, it.previous_policy.as_posix()) for d in sample["deps"]}
    assert it.previous_policy.as_posix() in deps
    prefs = {expand(d, k, "") for d in dvc_stages()["prefs"]["do"]["deps"]}
    assert it.scores.as_posix() in prefs


def test_foundation_stages_match_the_layout():
    stages = dvc_stages()
    assert declared(stages["prepare"]) == [layout.PREPARED.as_posix()]
    assert declared(stages["base"]) == [layout.BASE.as_posix()]
    assert declared(stages["sft"])[0] == layout.M0.as_posix()
    assert all(p.startswith(layout.SFT_METRICS.as_posix()) for p in declared(stages["sft"])[1:])
    evaluate = stages["evaluate"]["do"]
    for name in stages["evaluate"]["foreach"]:
        paths = [p.replace("${item}", name) for p in declared(evaluate)]
        assert paths == [layout.predictions(name).as_posix(), layout.eval_metrics(name).as_posix()]
    for stage, model in (("evaluate_it", "it{k}"), ("evaluate_control", "it{k}_control")):
        paths = [expand(p, 2, "") for p in declared(stages[stage]["do"])]
        name = model.format(k=2)
        assert paths == [layout.predictions(name).as_posix(), layout.eval_metrics(name).as_posix()]


def test_params_loop_is_the_layouts():
    params = load_params(REPO / "params.yaml")
    assert {name: vars(item) for name, item in params.loop.items()} == \
        {f"it{k}": layout.loop_entry(k) for k in (1, 2, 3)}
