"""The batched generation interface: order, counts, seeds, stops."""

import pytest

from sipf.generation import HFGenerator, SamplingParams, truncate_at_stop
from tests.helpers import tiny_model

PROMPTS = ["Q: 1+1\nA:\n", "Q: a much longer question 12+34\nA:\n", "Q: 5\nA:\n"]


@pytest.fixture(scope="module")
def generator():
    model, tokenizer = tiny_model(PROMPTS)
    return HFGenerator(model, tokenizer, batch_size=2)


def test_n_completions_per_prompt_in_prompt_order(generator):
    out = generator.generate(PROMPTS, SamplingParams(max_new_tokens=5, temperature=1.0, n=3))
    assert [len(c) for c in out] == [3, 3, 3]
    assert all(0 < c.num_tokens <= 5 for cs in out for c in cs)


def test_sampling_is_reproducible_from_the_seed(generator):
    params = SamplingParams(max_new_tokens=8, temperature=1.0, n=2, seed=3)
    first = generator.generate(PROMPTS, params)
    assert generator.generate(PROMPTS, params) == first
    other = generator.generate(PROMPTS, SamplingParams(max_new_tokens=8, temperature=1.0, n=2,
                                                       seed=4))
    assert other != first


def test_greedy_does_not_depend_on_batching(generator):
    params = SamplingParams(max_new_tokens=8)
    together = generator.generate(PROMPTS, params)
    alone = [generator.generate([p], params)[0] for p in PROMPTS]
    assert [c[0].text for c in together] == [c[0].text for c in alone]


def test_truncate_at_stop():
    assert truncate_at_stop("a b\n\nQ: next", ("\n\nQ:", "\nQ:")) == "a b"
    assert truncate_at_stop("x\nQ: y\n\nQ: z", ("\n\nQ:", "\nQ:")) == "x"
    assert truncate_at_stop("no stop", ("\nQ:",)) == "no stop"


def test_ignore_eos_runs_every_sequence_to_the_limit(generator):
    out = generator.generate(PROMPTS, SamplingParams(max_new_tokens=7, temperature=1.0,
                                                     ignore_eos=True))
    assert [c[0].num_tokens for c in out] == [7, 7, 7]


def test_stop_strings_end_generation_and_are_cut(generator):
    # With the stop at the first character an untrained model can write, nothing survives it.
    params = SamplingParams(max_new_tokens=30, temperature=1.0, n=4, stop=tuple("0123456789"))
    for completions in generator.generate(PROMPTS, params):
        for completion in completions:
            assert not any(ch.isdigit() for ch in completion.text)


def test_a_stop_string_never_matches_across_the_prompt_boundary(generator):
    """A code prompt ends in a newline; a completion that opens with a fence must not stop
    on "\\n```" at once (transformers' stop_strings would: the newline is the prompt's)."""
    from sipf.generation import _StopInCompletion

    tokenizer = generator.tokenizer
    prompt = tokenizer("'''\nadd\n'''\n", return_tensors="pt",
                       add_special_tokens=False)["input_ids"]

    def stops_after(generated: str) -> bool:
        ids = tokenizer(generated, return_tensors="pt", add_special_tokens=False)["input_ids"]
        import torch

        criterion = _StopInCompletion(tokenizer, ("\n```",), prompt.shape[1])
        return bool(criterion(torch.cat([prompt, ids], dim=1), None)[0])

    assert not stops_after("```python")
    assert stops_after("```python\nx = 1\n```")
