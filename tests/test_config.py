"""params.yaml is validated at start-up: unknown keys and wrong types fail with the key named."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sipf.config import Params, from_mapping, load_params, params_yaml
from sipf.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_repository_params_load_and_match_defaults():
    params = load_params(REPO / "params.yaml")
    assert params.prepare.task == "arith"
    assert params.or_weight == pytest.approx(0.1)
    # The committed file spells out every default, so it documents the whole config; the
    # loop's paths come from sipf.layout.
    from sipf import layout

    assert dataclasses.replace(params, loop={}) == Params()
    assert {name: vars(item) for name, item in params.loop.items()} == layout.default_loop()


def test_repository_params_are_what_sipf_preset_arith_writes(tmp_path, monkeypatch):
    from tests.helpers import run

    monkeypatch.chdir(REPO)  # the header names the preset file relative to the repository
    out = tmp_path / "params.yaml"
    result = run("preset", "arith", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (REPO / "params.yaml").read_text() == out.read_text(), \
        "params.yaml is out of date: regenerate it with `sipf preset arith`"


def test_written_params_read_the_same_in_yaml_1_1_and_1_2():
    from dvc.utils.serialize import loads_yaml  # DVC's reader (YAML 1.2)

    base = Params()
    params = dataclasses.replace(
        base, align=dataclasses.replace(base.align, learning_rate=1e-5),
        prepare=dataclasses.replace(base.prepare, gsm8k=dataclasses.replace(
            base.prepare.gsm8k, config="1e5")))  # a string only YAML 1.2 reads as a number
    text = params_yaml(params)
    assert "learning_rate: 1.0e-05" in text and "config: '1e5'" in text
    assert yaml.safe_load(text) == loads_yaml(text)
    assert from_mapping(Params, yaml.safe_load(text)) == params


def test_config_imports_nothing_of_the_library_but_its_errors():
    code = "import sys, sipf.config; print(sorted(m for m in sys.modules if m.startswith('sipf')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.strip() == "['sipf', 'sipf.config', 'sipf.errors']"


@pytest.mark.parametrize("data, message", [
    ({"sft": {"learning_rte": 0.1}}, "unknown parameter sft.learning_rte"),
    ({"typo_section": 1}, "unknown parameter typo_section"),
    ({"sft": {"batch_size": "16"}}, "sft.batch_size: expected int, got str '16'"),
    ({"align": {"learning_rate": "fast"}}, "align.learning_rate: expected float, got str 'fast'"),
    ({"sft": {"batch_size": 0}}, "sft.batch_size: must be >= 1"),
    ({"prepare": {"task": "gsm9k"}}, "prepare.task: 'gsm9k' is not one of"),
    ({"prepare": {"arith": {"ood_start_min": 10, "ood_start_max": 59}}}, "ood_min_steps"),
    ({"model": {"lora_params": {"target_modules": "q_proj"}}},
     "model.lora_params.target_modules: expected a list"),
    ({"model": {"load_in_4bit": True}}, "model.load_in_4bit needs model.lora"),
    ({"align": {"lora": {"r": 0}}}, "align.lora.r: must be >= 1"),
    ({"align": {"lora_r": 4}}, "unknown parameter align.lora_r"),
    ({"prepare": {"task": "jsonl"}}, "prepare.jsonl.train: required"),
    ({"loop": {"it3": {"k": 2, "policy": "models/it1/policy", "pool": "data/prepared"}}},
     "loop.it3: name it must be it2"),
    ({"generation": {"backend": "tgi"}}, "generation.backend: 'tgi' is not one of hf, vllm"),
    ({"generation": {"engine": "dask"}}, "generation.engine: 'dask' is not one of local, ray"),
    ({"generation": {"workers": 0}}, "generation.workers: must be >= 1"),
])
def test_bad_params_name_the_file_and_key(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_ints_widen_to_floats_and_lists_to_tuples(tmp_path):
    params = load_params(write(tmp_path, {"or_weight": 1, "prepare": {"arith": {
        "operations": ["add", "sub"], "max_steps": 2, "ood_min_steps": 3, "ood_max_steps": 3,
        "ood_start_min": 10, "ood_start_max": 59}}}))
    assert params.or_weight == 1.0 and isinstance(params.or_weight, float)
    assert params.prepare.arith.operations == ("add", "sub")


def test_exponent_floats_without_a_dot_are_floats(tmp_path):
    # what `dvc exp run -S align.learning_rate=1e-5` writes; PyYAML alone reads it as a string
    path = tmp_path / "params.yaml"
    path.write_text("align:\n  learning_rate: 1e-05\nor_weight: 2E+1\n")
    params = load_params(path)
    assert params.align.learning_rate == 1e-5 and params.or_weight == 20.0


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="no such params file"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO / "presets").glob("*.yaml")))
def test_every_preset_yields_valid_params(tmp_path, preset):
    from click.testing import CliRunner

    from sipf.cli import main

    out = tmp_path / "params.yaml"
    result = CliRunner().invoke(main, ["preset", str(REPO / "presets" / f"{preset}.yaml"),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    params = load_params(out)
    assert list(params.loop) == ["it1", "it2", "it3"]
    if preset == "arith":
        assert dataclasses.replace(params, loop={}) == Params()
    elif preset.endswith("mbpp"):
        assert params.prepare.task == "mbpp" and params.prepare.prompt_style == "code"
        assert params.model.lora and params.sample.temperature == 0.7  # the paper's for code
    else:
        assert params.prepare.task == "gsm8k" and params.model.lora


def test_preset_with_a_typo_is_rejected(tmp_path):
    from sipf.config import apply_preset

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  polcy: x\n")
    with pytest.raises(ConfigError, match="bad.yaml: unknown parameter model.polcy"):
        apply_preset(bad)


def test_global_seed_reseeds_every_training_and_sampling_stage(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"seed": 2, "sample": {"seed": 5}}))
    params = load_params(path)
    assert params.sample.seed == 2005
    assert params.sft.seed == params.simulate.seed == params.prm.seed == 2000
    assert params.prefs.seed == params.align.seed == 2000
    assert params.prepare.arith.seed == 0  # the task data does not move with the seed
    path.write_text(yaml.safe_dump({"seed": 0, "sample": {"seed": 5}}))
    assert load_params(path).sample.seed == 5


def test_a_loop_entry_off_the_layout_stops_the_stage(tmp_path, monkeypatch):
    from tests.helpers import run, tiny_params

    monkeypatch.chdir(tmp_path)
    tiny_params(tmp_path / "params.yaml")
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["loop"]["it2"]["pool"] = "data/prepared"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = run("prefs", "--iteration", "2")
    assert result.exit_code == 1
    assert "error: loop.it2.pool: iteration 2 needs data/it1/samples.parquet, got " \
        "data/prepared" in result.output
    assert not (tmp_path / "data").exists()  # nothing written


def test_the_task_and_method_names_are_the_registries():
    from sipf.config import METHOD_NAMES, TASK_NAMES
    from sipf.methods import METHODS
    from sipf.tasks.registry import TASKS

    assert tuple(TASKS) == TASK_NAMES and tuple(METHODS) == METHOD_NAMES


def test_a_key_given_twice_and_non_finite_numbers_are_refused(tmp_path):
    from sipf.config import load_params

    (tmp_path / "p.yaml").write_text("prefs:\n  margin: 0.1\n  margin: 0.2\n")
    with pytest.raises(ConfigError, match=r"p.yaml: line 3: duplicate key 'margin' \(first given "
                                          r"on line 2\)"):
        load_params(tmp_path / "p.yaml")
    for value in (".inf", "-.inf", ".nan"):
        (tmp_path / "p.yaml").write_text(f"prefs:\n  margin: {value}\n")
        with pytest.raises(ConfigError, match="prefs.margin: expected a finite number"):
            load_params(tmp_path / "p.yaml")
