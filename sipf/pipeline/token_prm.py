"""PRM kind ``lm_tokens``: a trained PRM that reads each step through the LM head at the
step's own tokens.

``P(correct | q, s_1..s_j) = sigmoid(a + b · min_{i ≤ j} r_i)``, where ``r_i`` reduces
(``prm.likelihood``: the min over step i's digit tokens, the min or the mean over all its tokens)
the backbone's ``log p_θ(token | everything before it)``. The running min makes a step after a
wrong one wrong, as its label is. The backbone starts as the policy and is fine-tuned,
like the classifier, with binary cross-entropy on the step labels; ``a`` and ``b`` start at the
logistic fit of the untrained ``r_j`` to the training labels, so training starts from the
calibrated ``likelihood`` kind and can only move away from it where the labels say so.

Why this readout: on arith a step is wrong when a number it wrote is not the one the model
predicts one position earlier. The LM head makes that comparison at the digit itself, while
no head on the state after the step can read it (docs/findings.md, 2026-12-03: a linear probe
on that state is at chance even on its own training steps).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import TokenClassifierOutput

NO_STEP = -1  # token_step of a token no step is scored on (the prompt, newlines, padding)


def step_tokens(offsets: Sequence[tuple[int, int]], text: str, begin: int, end: int
                ) -> tuple[list[int], list[int]]:
    """The tokens (by their character ``offsets`` in ``text``) overlapping the step
    ``text[begin:end]``, and those of them holding a digit."""
    inside = [t for t, (a, b) in enumerate(offsets) if a < end and b > begin]
    return inside, [t for t in inside
                    if any(c.isdigit() for c in text[offsets[t][0]:offsets[t][1]])]


def encode_steps(tokenizer: PreTrainedTokenizerBase, prefix: str, steps: Sequence[str],
                 reduce: str) -> tuple[list[int], list[int]]:
    """Token ids of ``prefix`` then ``"\\n".join(steps)`` (tokenized apart, as the policy
    generated them) and, per token, the index of the step it is scored for (NO_STEP if none):
    its digit tokens under ``min_digit`` (all its tokens when it has none), else all tokens
    overlapping the step. A token shared by two steps (BPE merging across the newline) counts
    for the later one."""
    head = tokenizer(prefix)["input_ids"]
    completion = "\n".join(steps)
    encoding = tokenizer(completion, add_special_tokens=False, return_offsets_mapping=True)
    token_step = [NO_STEP] * (len(head) + len(encoding["input_ids"]))
    begin = 0
    for index, step in enumerate(steps):
        end = begin + len(step)
        inside, digits = step_tokens(encoding["offset_mapping"], completion, begin, end)
        for t in (digits if reduce == "min_digit" and digits else inside):
            token_step[len(head) + t] = index
        begin = end + 1  # past the newline
    return head + encoding["input_ids"], token_step


def encode_example(tokenizer: PreTrainedTokenizerBase, example: dict[str, Any], reduce: str,
                   max_length: int, hard: bool) -> dict[str, list] | None:
    """Training features of one :func:`sipf.pipeline.prm.build_examples` row: ids and
    token_step cut to ``max_length``, and step-indexed ``target`` and ``mask`` (entry j is
    step j's; padded to the ids' length so the classifier's collator serves both kinds). A
    step with a token cut off gets no label; an example left without any is dropped (None)."""
    ids, token_step = encode_steps(tokenizer, example["prefix"], example["steps"], reduce)
    ids, kept = ids[:max_length], token_step[:max_length]
    cut = set(token_step[max_length:])
    target, mask = [0.0] * len(ids), [False] * len(ids)
    for index, label in enumerate(example["labels"]):
        if index < len(ids) and index not in cut and index in kept:
            target[index] = float(label > 0.5) if hard else float(label)
            mask[index] = True
    return ({"input_ids": ids, "token_step": kept, "target": target, "mask": mask}
            if any(mask) else None)


class TokenPrm(torch.nn.Module):
    """The backbone LM and the calibration ``(a, b)``. Its output is shaped like a token
    classifier's, ``logits[batch, j] = (0, a + b · r_j)`` for step j (softmax of that is
    ``P(correct)``), so the classifier's loss, validation and best-epoch code serve it."""

    def __init__(self, lm: PreTrainedModel, calibration: Sequence[float], reduce: str) -> None:
        super().__init__()
        self.lm = lm
        self.calibration = torch.nn.Parameter(torch.tensor([float(x) for x in calibration]))
        self.reduce = reduce

    def step_log_probs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       token_step: torch.Tensor) -> torch.Tensor:
        """``r[batch, j]``, the min of steps 0..j's reduced log-probs (0 for a path's steps
        without tokens before its first with some), padded to the sequence length, where the
        step-indexed targets of :func:`encode_example` live; the entries past a path's last
        step are never read."""
        logits = self.lm(input_ids=input_ids, attention_mask=attention_mask).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(
            -1, input_ids[:, 1:, None])[..., 0]
        logp = F.pad(logp, (1, 0))  # logp[:, t]: token t's; the first token has none
        # only as many step rows as the batch's longest path has steps, not one per token
        n_steps = max(int(token_step.max()) + 1, 1)
        steps = torch.arange(n_steps, device=input_ids.device)
        member = token_step[:, None, :] == steps[None, :, None]  # [batch, step, token]
        member[..., 0] = False
        count = member.sum(-1)
        if self.reduce == "mean":
            reduced = (logp[:, None, :] * member).sum(-1) / count.clamp(min=1)
        else:
            reduced = logp[:, None, :].masked_fill(~member, float("inf")).amin(-1)
        reduced = torch.where(count > 0, reduced, torch.zeros_like(reduced))
        # A step after a wrong one is wrong (its Monte-Carlo label at δ = 0 says so, and so does
        # the oracle), though its own tokens may be consistent with the slip before it: the
        # running min scores it by the least likely step so far. A step without tokens reads 0,
        # above any log-prob, so it takes the min before it.
        return F.pad(reduced.cummin(dim=1).values, (0, input_ids.shape[1] - n_steps))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_step: torch.Tensor, **_: Any) -> TokenClassifierOutput:
        r = self.step_log_probs(input_ids, attention_mask, token_step)
        a, b = self.calibration[0], self.calibration[1]
        return TokenClassifierOutput(logits=torch.stack([torch.zeros_like(r), a + b * r], -1))


def fit_calibration(r: torch.Tensor, y: torch.Tensor, steps: int = 200) -> tuple[float, float]:
    """Logistic regression of labels ``y`` (in [0, 1]) on one feature ``r``: ``(a, b)``.
    All labels alike leave no slope to fit: b = 1 and a the labels' log-odds (clamped)."""
    r, y = r.double(), y.double()
    if y.min() == y.max():
        p = float(y.mean().clamp(0.01, 0.99))
        return float(torch.tensor(p / (1 - p)).log()), 1.0
    ab = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([ab], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(ab[0] + ab[1] * r, y) + 1e-4 * ab[1] ** 2
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(ab[0]), float(ab[1])
