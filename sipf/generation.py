"""One batched generation interface for sampling, simulation and evaluation.

Stages call ``Generator.generate(prompts, SamplingParams)`` and never touch
``model.generate`` directly, so a faster engine (vLLM on a GPU) can replace
:class:`HFGenerator` without changing a stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # torch and transformers load in seconds: only stages that generate pay
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. ``temperature == 0`` means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int = 0
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # run to max_new_tokens (benchmarks), as vLLM's flag of that name


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int


class Generator(Protocol):
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions for every prompt, in prompt order."""
        ...


def _StopInCompletion(tokenizer: PreTrainedTokenizerBase, stop: Sequence[str],
                      prompt_length: int):  # noqa: N802 (a class made lazily: torch imports late)
    """A stopping criterion that looks for ``stop`` in the *generated* text only.

    transformers' ``stop_strings`` also match across the prompt boundary: a code prompt
    ending in a newline followed by a generated opening fence "```python" matches the stop
    "\n```" at the first token, and the program comes out empty. Here a sequence stops once
    the decoded tail of its completion (the last 16 tokens) contains a stop string;
    :func:`truncate_at_stop` then cuts the text at the first one.
    """
    import torch
    from transformers import StoppingCriteria

    class StopInCompletion(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001, ANN003, ANN204
            tails = tokenizer.batch_decode(input_ids[:, prompt_length:][:, -16:],
                                           skip_special_tokens=True)
            return torch.tensor([any(s in tail for s in stop) for tail in tails],
                                device=input_ids.device)

    return StopInCompletion()


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


@dataclass(frozen=True)
class Batch:
    """One call of the model: which (prompt, sample) jobs it decodes together, and its seed."""

    jobs: tuple[tuple[int, int], ...]
    seed: int


def batch_plan(lengths: Sequence[int], n: int, batch_size: int, seed: int) -> list[Batch]:
    """The batches that ``n`` samples of prompts of these token ``lengths`` are decoded in.

    Jobs are sorted longest prompt first (padding, wasted compute, stays small) and each
    batch is seeded from ``seed`` and its first job's position, so a batch's completions
    depend only on the plan: any process that decodes batch i gives the same text, which is
    what lets Ray workers share the batches (sipf/engines/ray.py).
    """
    jobs = [(p, k) for p in range(len(lengths)) for k in range(n)]
    jobs.sort(key=lambda job: (-lengths[job[0]], job))
    return [Batch(tuple(jobs[start:start + batch_size]), seed * 1_000_003 + start)
            for start in range(0, len(jobs), batch_size)]


def place(plan: Sequence[Batch], outputs: Sequence[Sequence[Completion]], prompts: int,
          n: int) -> list[list[Completion]]:
    """Each batch's completions back in prompt order: ``n`` for every prompt."""
    results: list[list[Completion | None]] = [[None] * n for _ in range(prompts)]
    for batch, completions in zip(plan, outputs, strict=True):
        for (p, k), completion in zip(batch.jobs, completions, strict=True):
            results[p][k] = completion
    return results  # type: ignore[return-value]


class HFGenerator:
    """transformers' ``generate`` over length-sorted, left-padded batches (:func:`batch_plan`).

    Sorting by prompt length keeps padding (wasted compute) small; each batch is
    seeded from ``params.seed`` and its index, so the same inputs give the same
    samples whatever else runs in the process.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 batch_size: int = 32) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.batch_size = batch_size

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        plan = batch_plan(self.prompt_lengths(prompts), params.n, self.batch_size, params.seed)
        outputs = [self.generate_batch([prompts[p] for p, _ in batch.jobs], params, batch.seed)
                   for batch in plan]
        return place(plan, outputs, len(prompts), params.n)

    def prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        return [len(self.tokenizer(prompt)["input_ids"]) for prompt in prompts]

    def generate_batch(self, prompts: list[str], params: SamplingParams,
                       seed: int) -> list[Completion]:
        """One batch of a :func:`batch_plan`: a completion for each prompt (repeats allowed)."""
        import torch

        with torch.inference_mode():
            return self._generate_batch(prompts, params, seed)

    def _generate_batch(self, prompts: list[str], params: SamplingParams,
                        seed: int) -> list[Completion]:
        import torch

        device = self.model.device
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(device)
        sampling = params.temperature > 0
        kwargs = dict(max_new_tokens=params.max_new_tokens, do_sample=sampling,
                      pad_token_id=self.tokenizer.pad_token_id,
                      eos_token_id=self.tokenizer.eos_token_id)
        if params.ignore_eos:  # EOS is masked until max_new_tokens
            kwargs["min_new_tokens"] = params.max_new_tokens
        if sampling:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs["stopping_criteria"] = [_StopInCompletion(
                self.tokenizer, params.stop, encoded["input_ids"].shape[1])]
        torch.manual_seed(seed)
        output = self.model.generate(**encoded, **kwargs)
        new_tokens = output[:, encoded["input_ids"].shape[1]:]
        completions = []
        for row in new_tokens:
            ids = [t for t in row.tolist() if t != self.tokenizer.pad_token_id]
            if self.tokenizer.eos_token_id in ids and not params.ignore_eos:
                ids = ids[:ids.index(self.tokenizer.eos_token_id)]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            completions.append(Completion(truncate_at_stop(text, params.stop), len(ids)))
        return completions
