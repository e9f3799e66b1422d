"""generation.engine 'ray': the same completions as the local engine for any number of workers.

The Ray tests skip where Ray (the `ray` extra) is not installed; the errors for that and for
a backend Ray cannot share run everywhere.
"""

import sys

import pyarrow.parquet as pq
import pytest

from sipf.config import GenerationConfig, ModelConfig, load_params
from sipf.engines import ModelRef, open_generator
from sipf.errors import ConfigError
from sipf.generation import HFGenerator, SamplingParams, batch_plan, place
from tests.helpers import run, tiny_model, tiny_params

# An untrained model: random text, so any seed or batch that differs shows.
SAMPLE = {"question_limit": 6, "per_round": 3, "max_new_tokens": 12, "batch_size": 4}
CALLS = [SamplingParams(max_new_tokens=12, temperature=1.0, n=3, seed=7),
         SamplingParams(max_new_tokens=10, stop=("\n",))]


def test_the_batch_plan_takes_every_job_once_longest_prompt_first_seeded_by_position():
    plan = batch_plan([3, 9, 5], n=2, batch_size=4, seed=2)
    assert [b.jobs for b in plan] == [((1, 0), (1, 1), (2, 0), (2, 1)), ((0, 0), (0, 1))]
    assert [b.seed for b in plan] == [2 * 1_000_003, 2 * 1_000_003 + 4]


def test_batches_decoded_in_any_order_by_other_generators_give_generates_output():
    """What the Ray engine relies on, checked without Ray: a batch's completions depend on
    its jobs and seed only, not on the generator instance or what it decoded before."""
    texts = ["Q: 1+1\nA:\n", "Q: a longer one, 12+34\nA:\n", "Q: 5\nA:\n", "Q: 77\nA:\n"]
    model, tokenizer = tiny_model(texts)
    workers = [HFGenerator(*tiny_model(texts), batch_size=3) for _ in range(2)]
    params = SamplingParams(max_new_tokens=8, temperature=1.0, n=2, seed=5)
    plan = batch_plan(workers[0].prompt_lengths(texts), params.n, 3, params.seed)
    outputs = {i: workers[i % 2].generate_batch([texts[p] for p, _ in plan[i].jobs], params,
                                                plan[i].seed)
               for i in reversed(range(len(plan)))}
    shared = place(plan, [outputs[i] for i in range(len(plan))], len(texts), params.n)
    assert shared == HFGenerator(model, tokenizer, batch_size=3).generate(texts, params)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """prepare and base of a tiny project: the from-scratch model (untrained) is the policy."""
    root = tmp_path_factory.mktemp("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        tiny_params(root / "params.yaml", sample=SAMPLE)
        tiny_params(root / "ray.yaml", sample=SAMPLE, generation={"engine": "ray", "workers": 2})
        for command in ("prepare", "base"):
            result = run(command)
            assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    from sipf.engines.ray import _start

    _start(ray, "")
    yield ray
    ray.shutdown()


def prompts(root) -> list[str]:
    return [r["prompt"] for r in pq.read_table(root / "data/prepared/train.parquet").to_pylist()[:10]]


def test_a_ray_worker_gives_the_local_engines_completions_call_after_call(project,
                                                                         ray_instance,
                                                                         monkeypatch):
    monkeypatch.chdir(project)
    ref = ModelRef.policy("models/base", "models/base", load_params("params.yaml").model)
    questions = prompts(project)
    local = open_generator(GenerationConfig(), ref, batch_size=4)
    expected = [local.generate(questions, params) for params in CALLS]
    assert len({c.text for cs in expected[0] for c in cs}) == 30  # 10 prompts x 3 samples
    generator = open_generator(GenerationConfig(engine="ray", workers=1), ref, batch_size=4)
    try:  # two calls: the actor loads the model once and serves both
        assert [generator.generate(questions, params) for params in CALLS] == expected
    finally:
        generator.close()


def test_sample_stage_on_two_ray_workers_writes_the_local_stages_samples(project, ray_instance,
                                                                         monkeypatch):
    """With the test above, 2 workers = 1 worker = the local engine."""
    monkeypatch.chdir(project)
    outputs = {}
    for params in ("params.yaml", "ray.yaml"):
        result = run("sample", "--iteration", "1", "--policy", "models/base", "--params", params)
        assert result.exit_code == 0, result.output
        outputs[params] = pq.read_table(project / "data/it1/samples.parquet").to_pylist()
    assert len(outputs["params.yaml"]) > 6
    assert outputs["ray.yaml"] == outputs["params.yaml"]


def test_a_workers_input_error_comes_back_as_itself(project, ray_instance, monkeypatch):
    monkeypatch.chdir(project)
    ref = ModelRef.policy("models/none", "models/base", load_params("params.yaml").model)
    with pytest.raises(ConfigError) as raised:
        open_generator(GenerationConfig(engine="ray", workers=1), ref, batch_size=4)
    # itself, not Ray's wrapper (whose text is the worker's traceback): one line for the user
    assert type(raised.value) is ConfigError
    assert str(raised.value) == "models/none: neither a model checkpoint nor a LoRA adapter"


def test_without_ray_engine_ray_names_the_key_and_the_install(project, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    result = run("sample", "--iteration", "1", "--policy", "models/base", "--params", "ray.yaml")
    assert result.exit_code == 1
    assert result.output == ("error: generation.engine: 'ray' needs Ray, which is not "
                             "installed: pip install -e '.[ray]' (or set generation.engine to "
                             "'local')\n")


def test_ray_refuses_a_backend_whose_batches_it_cannot_share():
    ref = ModelRef.policy("models/sft", "models/base", ModelConfig())
    with pytest.raises(ConfigError, match="generation.backend 'vllm' use generation.engine "
                                          "'local'"):
        open_generator(GenerationConfig(backend="vllm", engine="ray"), ref, 4)

