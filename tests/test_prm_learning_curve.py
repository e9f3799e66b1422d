"""benchmarks/prm_learning_curve.py's --kinds syntax: KIND[@LEARNING_RATE][+lora][+rank]."""

import importlib.util
import sys
from pathlib import Path

import click
import pytest

from sipf.config import PrmConfig

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "prm_learning_curve.py"
_SPEC = importlib.util.spec_from_file_location("prm_learning_curve", _PATH)
curve = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = curve  # its dataclass looks its module up
_SPEC.loader.exec_module(curve)


def test_recipe_replaces_kind_rate_and_lora():
    base = PrmConfig(kind="lm_tokens", learning_rate=3e-4, lora=False)
    plain = curve.recipe_of(base, "classifier")
    assert (plain.kind, plain.learning_rate, plain.lora) == ("classifier", 3e-4, False)
    rated = curve.recipe_of(base, "lm_tokens@1e-4")
    assert (rated.kind, rated.learning_rate, rated.lora) == ("lm_tokens", 1e-4, False)
    lora = curve.recipe_of(base, "lm_tokens@3e-3+lora")
    assert (lora.kind, lora.learning_rate, lora.lora) == ("lm_tokens", 3e-3, True)
    assert curve.recipe_of(PrmConfig(lora=True), "lm_tokens").lora  # params.yaml's lora stays
    assert lora.select == "step_accuracy"
    ranked = curve.recipe_of(base, "lm_tokens@3e-5+lora+rank")
    assert (ranked.learning_rate, ranked.lora, ranked.select) == (3e-5, True, "ranking")
    assert curve.recipe_of(base, "lm_tokens+rank").select == "ranking"


def test_recipe_rejects_an_unknown_suffix():
    with pytest.raises(click.BadParameter, match=r"lm_tokens\+qlora: the suffixes are \+lora and \+rank"):
        curve.recipe_of(PrmConfig(), "lm_tokens+qlora")


def test_recipe_rejects_a_rate_that_is_not_a_number():
    with pytest.raises(click.BadParameter, match=r"lm_tokens@1e-4x: the learning rate '1e-4x'"):
        curve.recipe_of(PrmConfig(), "lm_tokens@1e-4x")
