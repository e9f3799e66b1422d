"""Process reward model (docs/method.md §3, Eq. 3-5).

A causal-LM backbone with a new 2-way token-classification head reads
``q + "\\nPlease reason step by step.\\n" + s_1 + "\\n" + … + s_n + "\\n"`` and scores the
token that closes each step (the one covering the newline after it): ``ĉ_j = P(correct |
q, s_1..s_j)``. Because the backbone is causal, that token sees exactly the prefix up to
step j, so one forward pass scores every step of a path. The loss is binary cross-entropy
on those tokens only; every other position is ignored.

``prm.kind`` picks how that position is read: ``classifier`` (the head above, starting at
random), ``lm_head`` (the backbone's LM head restricted to the label tokens '+' and '-', as
Math-Shepherd and OpenRLHF read a PRM: softmax over two logits is sigmoid((w₊ − w₋)·h), so it is
the same 2-way head, started from the LM head's rows of those tokens instead of at random),
``lm_tokens`` (the offline default: the LM head read at the step's own tokens instead, see
:mod:`sipf.pipeline.token_prm`) or ``likelihood`` (no training: the sampling policy's own token
probabilities over each step; a departure from the paper, and the baseline a trained PRM must
beat).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import tempfile
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer,
                          PreTrainedModel,
                          PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments,
                          set_seed)

from sipf.config import AGGREGATES, STEP_LIKELIHOODS, ModelConfig, PrmConfig
from sipf.distributed import is_main, sum_across, world_size
from sipf.errors import ConfigError, DataError
from sipf.models import (ADAPTER_CONFIG, PARENT_FILE, attach_lora, base_location, load_weights,
                         resolve_source, save_weights)
from sipf.pipeline.token_prm import (NO_STEP, TokenPrm, encode_example, encode_steps,
                                     fit_calibration, step_tokens)
from sipf.pipeline.training import live_run, training_args
from sipf.storage import atomic_path
from sipf.tasks.prompts import format_prompt

INSTRUCTION = "\nPlease reason step by step.\n"
META_FILE = "prm.json"  # marks a directory as a PRM checkpoint and says how to reload it
_KIND = "sipf-prm"
LABEL_TOKENS = ("-", "+")  # kind lm_head: wrong, correct (Math-Shepherd's labels), in head order


# ----------------------------------------------------------------------------- data
def path_prefix(question: str, prompt_style: str | None = None) -> str:
    """What the PRM reads before the steps: the paper's ``q + INSTRUCTION``, or, given a
    prompt style, the policy's own prompt (a backbone trained from scratch has seen no
    other format, and its features for checking a step live in that one)."""
    return question + INSTRUCTION if prompt_style is None else format_prompt(question, prompt_style)


def format_path(question: str, steps: Sequence[str],
                prompt_style: str | None = None) -> tuple[str, list[int]]:
    """The PRM input and, per step, the character index of the newline that closes it."""
    return join_steps(path_prefix(question, prompt_style), steps)


def join_steps(prefix: str, steps: Sequence[str]) -> tuple[str, list[int]]:
    """``prefix + s_1 + "\\n" + … + s_n + "\\n"`` and the index of each step's closing newline."""
    parts = [prefix]
    length = len(prefix)
    closing = []
    for step in steps:
        length += len(step)
        closing.append(length)
        parts += [step, "\n"]
        length += 1
    return "".join(parts), closing


def build_examples(rows: Sequence[dict[str, Any]],
                   prompt_style: str | None = None) -> list[dict[str, Any]]:
    """Simulation rows ``{question_id, question, steps, labels}`` -> PRM examples
    ``{question_id, text, closing, labels, prefix, steps}`` (``closing``, ``prompt_style``:
    see :func:`format_path`; kind lm_tokens reads ``prefix`` and ``steps``)."""
    examples = []
    for number, row in enumerate(rows, start=1):
        steps, labels = list(row["steps"]), [float(x) for x in row["labels"]]
        if len(steps) != len(labels):
            raise DataError(f"{len(steps)} steps but {len(labels)} labels", row=number,
                            field="labels")
        if any(not 0.0 <= x <= 1.0 for x in labels):
            raise DataError(f"labels must lie in [0, 1], got {labels}", row=number,
                            field="labels")
        prefix = path_prefix(row["question"], prompt_style)
        text, closing = join_steps(prefix, steps)
        examples.append({"question_id": row["question_id"], "text": text, "closing": closing,
                         "labels": labels, "prefix": prefix, "steps": steps})
    return examples


def ranking_set(pool: Sequence[dict[str, Any]], question_text: Callable[[Any], str],
                exclude: Iterable[Any], limit: int, seed: int,
                prompt_style: str | None = None) -> list[dict[str, Any]]:
    """The paths of up to ``limit`` questions of the sampled ``pool`` (rows ``{question_id,
    steps, outcome}``; ``question_text`` gives a question id's text) that have a right and a
    wrong path and are not in ``exclude`` (the simulated ones), drawn with ``seed``:
    ``{question_id, prefix, steps, outcome}``, what prm.select 'ranking' picks the kept epoch
    on. Their outcomes come free with the pool (the final answer is checked), so no rollout
    is spent on them."""
    skip = set(exclude)
    by_question: dict[Any, list[dict[str, Any]]] = {}
    for row in pool:
        if row["question_id"] not in skip:
            by_question.setdefault(row["question_id"], []).append(row)
    both = sorted((q for q, rows in by_question.items()
                   if len({bool(r["outcome"]) for r in rows}) == 2), key=str)
    random.Random(seed).shuffle(both)
    return [{"question_id": q, "prefix": path_prefix(question_text(q), prompt_style),
             "steps": list(row["steps"]), "outcome": bool(row["outcome"])}
            for q in both[:limit] for row in by_question[q]]


def closing_token_positions(tokenizer: PreTrainedTokenizerBase, text: str,
                            closing: Sequence[int]) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` and, per closing character index, the token that closes the step.

    That is the last non-special token starting at or before the newline: the token whose
    span covers it, even when BPE merged the newline with its neighbours, and the token just
    before it when a tokenizer trims whitespace out of its offsets. Offsets come from the fast
    tokenizer, so the same code serves character-level and BPE vocabularies.
    """
    if not tokenizer.is_fast:
        raise ConfigError("the PRM needs a fast tokenizer (offset mappings)")
    encoding = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    starts, indices = [], []
    for index, ((start, _), special) in enumerate(zip(encoding["offset_mapping"],
                                                      encoding["special_tokens_mask"])):
        if not special:
            starts.append(start)
            indices.append(index)
    return encoding["input_ids"], [indices[bisect_right(starts, char) - 1] for char in closing]


def encode(tokenizer: PreTrainedTokenizerBase, example: dict[str, Any], cfg: PrmConfig
           ) -> dict[str, list] | None:
    """Training features: ids cut to ``max_length`` and per-token target and loss mask.

    Steps whose closing token was cut off get no label; an example left without any is
    dropped (None). When two steps share a closing token the later label wins, since that
    token sees both steps.
    """
    ids, positions = closing_token_positions(tokenizer, example["text"], example["closing"])
    ids = ids[:cfg.max_length]
    target, mask = [0.0] * len(ids), [False] * len(ids)
    for position, label in zip(positions, example["labels"]):
        if position < len(ids):
            target[position] = float(label > 0.5) if cfg.label == "hard" else label
            mask[position] = True
    return {"input_ids": ids, "target": target, "mask": mask} if any(mask) else None


@dataclass
class PrmCollator:
    """Right-pads a batch: a causal model's real tokens then keep their positions, and pad
    positions carry target 0 and mask False, so the loss never sees them."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, list]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)

        def pad(key: str, value: Any, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor([f[key] + [value] * (width - len(f[key])) for f in features],
                                dtype=dtype)

        batch = {"input_ids": pad("input_ids", self.pad_token_id, torch.long),
                 "attention_mask": torch.tensor([[1] * len(f["input_ids"]) +
                                                 [0] * (width - len(f["input_ids"]))
                                                 for f in features], dtype=torch.long)}
        if "token_step" in features[0]:  # kind lm_tokens
            batch["token_step"] = pad("token_step", NO_STEP, torch.long)
        if "target" in features[0]:
            batch["target"] = pad("target", 0.0, torch.float32)
            batch["mask"] = pad("mask", False, torch.bool)
        return batch


def split_questions(question_ids: Sequence[Any], val_fraction: float, seed: int
                    ) -> tuple[set, set]:
    """(train, val) question ids from a seeded shuffle; whole questions are held out so
    validation measures generalisation to unseen questions, not to sibling paths."""
    unique = sorted(set(question_ids), key=str)
    random.Random(seed).shuffle(unique)
    n_val = min(max(1, round(val_fraction * len(unique))), max(0, len(unique) - 1))
    return set(unique[n_val:]), set(unique[:n_val])


# ----------------------------------------------------------------------------- loss, scores
def prm_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
             total: float | None = None) -> torch.Tensor:
    """Mean binary cross-entropy of P(correct) = softmax(logits)[..., 1] on masked positions,
    or with ``total`` their sum divided by it (a count over several processes' batches).

    For two classes, softmax(l)[1] = sigmoid(l1 - l0), so BCE-with-logits on the difference
    is the stable form; soft targets work unchanged.
    """
    margin = (logits[..., 1] - logits[..., 0])[mask]
    if margin.numel() == 0:  # every step truncated away: a zero that keeps the graph
        return logits.sum() * 0.0
    if total is not None:
        return F.binary_cross_entropy_with_logits(margin.float(), target[mask].float(),
                                                  reduction="sum") / total
    return F.binary_cross_entropy_with_logits(margin.float(), target[mask].float())


@torch.inference_mode()
def _probabilities(model: torch.nn.Module, features: list[dict[str, list]],
                   positions: list[list[int]], batch_size: int, pad_token_id: int
                   ) -> list[list[float]]:
    """P(correct) at ``positions`` of each of ``features`` (``input_ids``, and
    ``token_step`` for kind lm_tokens, whose positions are step indices); longest first, so
    padding stays small and an out-of-memory error shows up in the first batch."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    collate = PrmCollator(pad_token_id)
    inputs = [{k: v for k, v in f.items() if k in ("input_ids", "token_step")} for f in features]
    order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i]["input_ids"]))
    out: list[list[float]] = [[] for _ in inputs]
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = collate([inputs[i] for i in chunk])
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        probs = torch.softmax(logits.float(), dim=-1)[..., 1].cpu()
        for row, i in enumerate(chunk):
            out[i] = probs[row, positions[i]].tolist()
    model.train(was_training)
    return out


def score_steps(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                questions: Sequence[str], paths: Sequence[Sequence[str]],
                batch_size: int = 16, prompt_style: str | None = None) -> list[list[float]]:
    """ĉ_j = P(correct | q, s_1..s_j) for every step of every path, by a PRM of any trained
    kind (what :func:`load_prm` returns).

    Nothing is truncated, so every step gets a score; sampled paths are bounded by the
    policy's max_new_tokens, which keeps them within the backbone's context.
    """
    if len(questions) != len(paths):
        raise ValueError(f"{len(questions)} questions but {len(paths)} paths")
    features, positions = path_features(model, tokenizer,
                                        [path_prefix(q, prompt_style) for q in questions], paths)
    return _probabilities(model, features, positions, batch_size, _pad_id(tokenizer))


def path_features(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                  prefixes: Sequence[str], paths: Sequence[Sequence[str]]
                  ) -> tuple[list[dict[str, list]], list[list[int]]]:
    """What :func:`_probabilities` reads to score every step of each ``prefix + path``:
    the steps' indices for kind lm_tokens, their closing tokens for the head kinds."""
    features, positions = [], []
    for prefix, steps in zip(prefixes, paths):
        if isinstance(model, TokenPrm):
            ids, token_step = encode_steps(tokenizer, prefix, steps, model.reduce)
            features.append({"input_ids": ids, "token_step": token_step})
            positions.append(list(range(len(steps))))
        else:
            ids, closing = closing_token_positions(tokenizer, *join_steps(prefix, steps))
            features.append({"input_ids": ids})
            positions.append(closing)
    return features, positions


@torch.inference_mode()
def _completion_log_probs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                          prompts: Sequence[str], completions: Sequence[str],
                          batch_size: int) -> list[torch.Tensor]:
    """log p(token | everything before it) of each completion token after its prompt.

    Prompt and completion are tokenized apart and joined, as the policy generated them (one
    BPE pass over both could merge across the boundary into tokens it never produced).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = _pad_id(tokenizer)
    rows = []
    for prompt, completion in zip(prompts, completions, strict=True):
        head = tokenizer(prompt)["input_ids"]
        rows.append((head + tokenizer(completion, add_special_tokens=False)["input_ids"],
                     len(head)))
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    out: list[torch.Tensor] = [torch.empty(0)] * len(rows)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(rows[i][0]) for i in chunk)
        ids = torch.tensor([rows[i][0] + [pad] * (width - len(rows[i][0])) for i in chunk])
        mask = torch.tensor([[1] * len(rows[i][0]) + [0] * (width - len(rows[i][0]))
                             for i in chunk])
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(
            -1, ids[:, 1:, None].to(device))[..., 0].cpu()
        for row, i in enumerate(chunk):
            ids_i, head = rows[i]
            out[i] = logp[row, head - 1:len(ids_i) - 1]  # the completion's tokens only
    model.train(was_training)
    return out


def mean_log_probs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   prompts: Sequence[str], completions: Sequence[str],
                   batch_size: int = 16) -> list[float]:
    """The policy's mean token log-probability of each completion after its prompt: how
    likely the model finds a path, with no reward model at all (the baseline a PRM must
    beat at ranking)."""
    return [float(tokens.mean()) if tokens.numel() else 0.0
            for tokens in _completion_log_probs(model, tokenizer, prompts, completions,
                                                batch_size)]


def likelihood_step_scores(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                           prompts: Sequence[str], paths: Sequence[Sequence[str]],
                           batch_size: int = 16, reduce: str = "min_digit") -> list[list[float]]:
    """Kind ``likelihood``: each step's score from the policy's own log-probs of its tokens,
    read after ``prompt + s_1 + "\\n" + … + s_{j-1} + "\\n"`` (the text the policy wrote).

    ``reduce``: exp of the ``min`` or ``mean`` token log-prob over the tokens overlapping the
    step's characters, or ``min_digit``, the min over those holding a digit (arith's errors
    are wrong numbers; a step without a digit falls back to ``min``). A step without tokens
    scores 1. The closing newline belongs to no step: it says where a step ends, not whether
    it is right.
    """
    if reduce not in STEP_LIKELIHOODS:
        raise ConfigError(f"prm.likelihood: {reduce!r} is not one of "
                          f"{', '.join(STEP_LIKELIHOODS)}")
    if not tokenizer.is_fast:
        raise ConfigError("the likelihood PRM needs a fast tokenizer (offset mappings)")
    completions = ["\n".join(steps) for steps in paths]
    log_probs = _completion_log_probs(model, tokenizer, prompts, completions, batch_size)
    out = []
    for steps, completion, logp in zip(paths, completions, log_probs, strict=True):
        offsets = tokenizer(completion, add_special_tokens=False,
                            return_offsets_mapping=True)["offset_mapping"]
        scores, begin = [], 0
        for step in steps:
            end = begin + len(step)
            inside, digits = step_tokens(offsets, completion, begin, end)
            chosen = logp[digits if reduce == "min_digit" and digits else inside]
            if not chosen.numel():
                scores.append(1.0)
            else:
                scores.append(math.exp(float(chosen.mean() if reduce == "mean" else chosen.min())))
            begin = end + 1  # past the newline
        out.append(scores)
    return out


def aggregate(scores: Sequence[float], how: str) -> float:
    """Path reward r(τ) from its step scores; a path without steps gets 0."""
    if not scores:
        return 0.0
    if how == "mean":
        return sum(scores) / len(scores)
    if how == "min":
        return min(scores)
    if how == "prod":
        return math.prod(scores)
    if how == "last":
        return scores[-1]
    raise ConfigError(f"prm.aggregate: {how!r} is not one of {', '.join(AGGREGATES)}")


def step_accuracy(scores: Sequence[Sequence[float]], labels: Sequence[Sequence[float]]) -> float:
    """Fraction of steps where (score > 0.5) equals (label > 0.5), over all paths; per-path
    lists so PRM scores can be checked against any step labels (simulated or oracle)."""
    pairs = [(s, y) for path_s, path_y in zip(scores, labels, strict=True)
             for s, y in zip(path_s, path_y, strict=True)]
    if not pairs:
        return 0.0
    return sum((s > 0.5) == (y > 0.5) for s, y in pairs) / len(pairs)


def pair_wins(question_ids: Sequence[Any], outcomes: Sequence[bool],
              rewards: Sequence[float]) -> dict[Any, list[float]]:
    """Per question with both outcomes, each (right, wrong) pair of its paths scored 1 when the
    right path has the higher reward, 0.5 on a tie, 0 otherwise (kept per question so that a
    benchmark can resample questions)."""
    by_question: dict[Any, tuple[list[float], list[float]]] = {}
    for question, outcome, reward in zip(question_ids, outcomes, rewards):
        by_question.setdefault(question, ([], []))[0 if outcome else 1].append(reward)
    return {question: [1.0 if r > w else 0.5 if r == w else 0.0 for r in right for w in wrong]
            for question, (right, wrong) in by_question.items() if right and wrong}


def ranking_accuracy(question_ids: Sequence[Any], outcomes: Sequence[bool],
                     rewards: Sequence[float]) -> float | None:
    """Over every (right, wrong) pair of paths of the same question, the fraction whose right
    path has the higher reward (ties count half): what the pairs need from a reward model, and
    0.5 for one that cannot tell. None when no question has both a right and a wrong path."""
    wins = pair_wins(question_ids, outcomes, rewards).values()
    pairs = sum(map(len, wins))
    return sum(map(sum, wins)) / pairs if pairs else None


# ----------------------------------------------------------------------------- model
def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return 0 if pad is None else pad


def _token_classifier(location: str, dtype: str, load_in_4bit: bool,
                      auto_class: type = AutoModelForTokenClassification,
                      **kwargs: Any) -> PreTrainedModel:
    """A backbone with a fresh 2-way head (or, given ``auto_class``, that class of model); a
    LoRA policy is merged into its base first."""
    location = base_location(location)  # follow a models/base source.json pointer
    if auto_class is AutoModelForTokenClassification:
        kwargs.setdefault("num_labels", 2)
    adapter = Path(location) / ADAPTER_CONFIG
    if adapter.is_file():
        from peft import PeftConfig, PeftModel

        config = PeftConfig.from_pretrained(location)
        config.task_type = None  # a causal-LM adapter, applied here to a token classifier
        parent_file = Path(location) / PARENT_FILE  # written by save_policy
        parent = json.loads(parent_file.read_text())["parent"] if parent_file.is_file() \
            else config.base_model_name_or_path
        base = _token_classifier(parent, dtype, load_in_4bit, auto_class, **kwargs)
        merged = PeftModel.from_pretrained(base, location, config=config).merge_and_unload()
        if load_in_4bit:  # 4-bit weights cannot require gradients: the PRM's LoRA trains
            return merged
        return merged.requires_grad_(True)  # loading the adapter froze every base weight
    source = resolve_source(location, "prm.backbone")
    if source.kind == "scratch":
        raise ConfigError("prm.backbone: 'scratch' is not a model; pass the policy's directory")
    try:
        return load_weights(auto_class, source.location, dtype,
                            load_in_4bit=load_in_4bit, gguf_file=source.gguf_file,
                            # the head trains, or reads, in full precision (a 4-bit one
                            # cannot train): the new head, or kind lm_tokens' LM head
                            **({"keep_full": ["lm_head" if auto_class is AutoModelForCausalLM
                                              else "score"]} if load_in_4bit else {}),
                            **kwargs)
    except (OSError, ValueError) as err:
        raise ConfigError(f"prm.backbone: cannot load {location}: {err}") from err


def label_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Kind lm_head: the ids of LABEL_TOKENS, each of which must be one token."""
    ids = []
    for label in LABEL_TOKENS:
        encoded = tokenizer(label, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1 or tokenizer.decode(encoded) != label:  # one token, not <unk>
            raise ConfigError(f"prm.kind: lm_head reads the label tokens {LABEL_TOKENS}, but the "
                              f"tokenizer makes {label!r} into {encoded}, not one known token")
        ids.append(encoded[0])
    return ids


@torch.no_grad()
def start_from_lm_head(model: PreTrainedModel, backbone_dir: str, dtype: str,
                       tokenizer: PreTrainedTokenizerBase) -> None:
    """Kind lm_head: set the 2-way head to the backbone's LM-head rows of '-' and '+', so
    P(correct) starts as the LM's softmax restricted to those two tokens. The head is a copy:
    with tied embeddings, training the LM head itself would also move the input embeddings
    of '+' and '-', which arithmetic steps contain."""
    lm = _token_classifier(backbone_dir, dtype, False, AutoModelForCausalLM)
    rows = lm.get_output_embeddings().weight[label_token_ids(tokenizer)]
    head = model.score if hasattr(model, "score") else model.classifier
    head.weight.copy_(rows.to(head.weight.dtype))
    if head.bias is not None:
        head.bias.zero_()  # an LM head has no bias (Llama, GPT-2, ...)


def _token_prm(backbone_dir: str, model_cfg: ModelConfig, quantized: bool, cfg: PrmConfig,
               train: list[dict[str, list]], pad_token_id: int) -> TokenPrm:
    """Kind lm_tokens: the backbone as a causal LM (LoRA on it under ``cfg.lora``) and the
    calibration fitted to the training steps' untrained log-probs (a logistic regression),
    so training starts at the calibrated ``likelihood`` kind."""
    lm = _token_classifier(backbone_dir, model_cfg.dtype, quantized, AutoModelForCausalLM)
    if cfg.lora:
        lm = attach_lora(lm, model_cfg.lora_params, quantized, task_type="CAUSAL_LM")
    model = TokenPrm(lm, (0.0, 1.0), cfg.likelihood)
    positions = [[i for i, m in enumerate(f["mask"]) if m] for f in train]
    # with a = 0 and b = 1, P(correct) = sigmoid(r): its logit is r itself
    scores = _probabilities(model, train, positions, cfg.batch_size, pad_token_id)
    r = torch.tensor([math.log(p / (1 - p)) if 0 < p < 1 else (30.0 if p >= 1 else -30.0)
                      for path in scores for p in path])
    y = torch.tensor([f["target"][i] for f, pos in zip(train, positions) for i in pos])
    with torch.no_grad():
        model.calibration.copy_(torch.tensor(fit_calibration(r, y)))
    return model


def read_meta(path: str | Path) -> dict[str, Any]:
    """What :func:`train_prm` wrote into ``path/prm.json`` (``prm_kind``: how to score)."""
    meta_file = Path(path) / META_FILE
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not a PRM checkpoint (no readable {META_FILE}; train one "
                          f"with the prm stage)") from err
    if not isinstance(meta, dict) or meta.get("kind") != _KIND:
        raise ConfigError(f"{path}: not a PRM checkpoint ({META_FILE} is not sipf's)")
    meta.setdefault("prm_kind", "classifier")  # checkpoints from before prm.kind
    return meta


def load_prm(path: str | Path) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """(model, tokenizer) of a checkpoint written by :func:`train_prm`: a token classifier,
    or for kind lm_tokens a :class:`TokenPrm`; :func:`score_steps` scores with either."""
    path = Path(path)
    meta = read_meta(path)
    if meta["prm_kind"] == "likelihood":
        raise ConfigError(f"{path}: a likelihood PRM has no weights; score its steps with "
                          f"likelihood_step_scores on the policy")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        # kind lm_tokens keeps the backbone a causal LM, its calibration in prm.json
        auto_class = (AutoModelForCausalLM if meta["prm_kind"] == "lm_tokens"
                      else AutoModelForTokenClassification)
        if meta["lora"]:
            from peft import PeftModel

            base = _token_classifier(meta["backbone"], meta["dtype"], meta["load_in_4bit"],
                                     auto_class)
            model = PeftModel.from_pretrained(base, path)
        else:
            model = load_weights(auto_class, path, meta["dtype"])
        if meta["prm_kind"] == "lm_tokens":
            model = TokenPrm(model, meta["calibration"], meta["config"]["likelihood"])
    except Exception as err:  # whatever breaks (files, shapes, safetensors), name the path
        raise ConfigError(f"{path}: PRM checkpoint does not load: {err}") from err
    model.eval()
    return model, tokenizer


# ----------------------------------------------------------------------------- training
class PrmTrainer(Trainer):
    """A Trainer whose loss is BCE on step-closing tokens; it also sums the loss per epoch."""

    # TRL had a PRMTrainer, removed after 1.13, so the (small) loss lives here.

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loss_sum = 0.0
        self._loss_count = 0

    def compute_loss(self, model: PreTrainedModel, inputs: dict[str, torch.Tensor],
                     return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        inputs = dict(inputs)
        target, mask = inputs.pop("target"), inputs.pop("mask")
        outputs = model(**inputs)
        processes = world_size()
        if model.training and processes > 1:
            # DDP averages the processes' gradients. Each one's sum over its labelled steps,
            # divided by the count over all of them and times the processes, makes that
            # average the gradient of the global batch's mean: one process's loss exactly.
            total = sum_across([float(mask.sum())])[0]
            loss = prm_loss(outputs.logits, target, mask, total=total or 1.0) * processes
        else:
            loss = prm_loss(outputs.logits, target, mask)
        if model.training:
            self._loss_sum += loss.item()
            self._loss_count += 1
        return (loss, outputs) if return_outputs else loss

    def pop_epoch_loss(self) -> float:
        """Mean training loss since the last call (over every process's steps)."""
        total, count = sum_across([self._loss_sum, self._loss_count])
        self._loss_sum, self._loss_count = 0.0, 0
        return total / max(1, count)


class _BestEpoch:
    """A CPU copy of the trainable weights of the best epoch so far: the higher ``key``
    (step accuracy then lower loss, or the ranking), ties to the earlier epoch. Under LoRA
    that is only the adapter and the head; a full fine-tune holds one extra copy of the
    model in RAM."""

    def __init__(self) -> None:
        self.epoch = 0
        self.key: tuple[float, ...] | None = None
        self.state: dict[str, torch.Tensor] = {}

    def offer(self, model: torch.nn.Module, epoch: int, key: tuple[float, ...]) -> None:
        if self.key is None or key > self.key:
            self.epoch, self.key = epoch, key
            self.state = {name: p.detach().to("cpu", copy=True)
                          for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def restore(self, model: torch.nn.Module) -> None:
        for name, p in model.named_parameters():
            if name in self.state:
                p.copy_(self.state[name])


@dataclass
class _Ranking:
    """prm.select 'ranking': pool paths of questions the PRM does not train on, encoded for
    the model, their outcomes, and how step scores aggregate into a path reward."""
    features: list[dict[str, list]]
    positions: list[list[int]]
    question_ids: list[Any]
    outcomes: list[bool]
    aggregate: str

    def accuracy(self, model: torch.nn.Module, batch_size: int, pad_token_id: int) -> float:
        scores = _probabilities(model, self.features, self.positions, batch_size, pad_token_id)
        rewards = [aggregate(s, self.aggregate) for s in scores]
        return ranking_accuracy(self.question_ids, self.outcomes, rewards) or 0.0


class _EpochEnd(TrainerCallback):
    """Validates after every epoch, remembers the best weights, logs to dvclive. With a
    ranking set the kept epoch is the one that ranks its right paths above its wrong ones
    best, the untrained start (epoch 0) included; else the best labelled step accuracy."""

    def __init__(self, trainer: PrmTrainer, val: list[dict[str, list]], batch_size: int,
                 pad_token_id: int, live: Any, ranking: _Ranking | None = None) -> None:
        self.trainer, self.val, self.live, self.ranking = trainer, val, live, ranking
        self.batch_size, self.pad_token_id = batch_size, pad_token_id
        self.best = _BestEpoch()
        self.start: dict[str, Any] = {}
        self.per_epoch: list[dict[str, Any]] = []

    def _measure(self, epoch: int) -> dict[str, Any]:
        model, row = self.trainer.model, {}
        if self.val:
            row.update(_validate(model, self.val, self.batch_size, self.pad_token_id))
        if self.ranking is not None:
            row["val_ranking"] = self.ranking.accuracy(model, self.batch_size,
                                                       self.pad_token_id)
            self.best.offer(model, epoch, (row["val_ranking"],))
        elif self.val:
            self.best.offer(model, epoch, (row["val_step_accuracy"], -row["val_loss"]))
        return row

    def on_train_begin(self, args: TrainingArguments, state: Any, control: Any,
                       **kwargs: Any) -> None:
        if self.ranking is not None and is_main():  # the start is a candidate too
            self.start = {"epoch": 0, **self._measure(0)}

    def on_epoch_end(self, args: TrainingArguments, state: Any, control: Any,
                     **kwargs: Any) -> None:
        row: dict[str, Any] = {"epoch": len(self.per_epoch) + 1,
                               "train_loss": self.trainer.pop_epoch_loss()}
        if is_main():  # only rank 0's PRM is saved, so only it validates
            row.update(self._measure(row["epoch"]))
        self.per_epoch.append(row)
        if self.live is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.live.log_metric(key, value)
            self.live.next_step()


def _validate(model: PreTrainedModel, features: list[dict[str, list]], batch_size: int,
             pad_token_id: int) -> dict[str, float]:
    """Step accuracy and BCE on labelled (unpadded, untruncated-away) steps of ``features``."""
    positions = [[i for i, m in enumerate(f["mask"]) if m] for f in features]
    targets = [[f["target"][i] for i in pos] for f, pos in zip(features, positions)]
    scores = _probabilities(model, features, positions, batch_size, pad_token_id)
    flat_s = torch.tensor([s for path in scores for s in path]).clamp(1e-7, 1 - 1e-7)
    flat_y = torch.tensor([y for path in targets for y in path])
    return {"val_step_accuracy": step_accuracy(scores, targets),
            "val_loss": F.binary_cross_entropy(flat_s, flat_y).item()}


def train_prm(backbone_dir: str | Path, tokenizer: PreTrainedTokenizerBase,
              examples: Sequence[dict[str, Any]], cfg: PrmConfig, out_dir: str | Path,
              live_dir: str | Path | None = None, *, model_cfg: ModelConfig | None = None,
              ranking: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Train a PRM from ``backbone_dir`` on :func:`build_examples` output; save the best epoch.

    ``model_cfg`` supplies dtype, 4-bit loading (used only with ``cfg.lora``: QLoRA) and the
    LoRA hyper-parameters; by default float32 with the project's LoRA defaults. Returns
    ``{best_epoch, val_step_accuracy, train_steps (optimizer steps), per_epoch, ...}``;
    with a single question there is no validation, the last epoch is kept and the
    validation metrics are None. Under ``cfg.select`` 'ranking' the kept epoch is the one
    that ranks the ``ranking`` paths (:func:`ranking_set`) best, the start (epoch 0, the
    calibrated likelihood for lm_tokens) included; their questions join those the PRM
    lists as seen.

    Kind ``likelihood`` trains nothing: ``out_dir`` gets only its ``prm.json`` (scores come
    from the policy, :func:`likelihood_step_scores`) and the metrics say so.
    """
    model_cfg = model_cfg or ModelConfig()
    if cfg.kind == "likelihood":
        return _save_likelihood_marker(out_dir, backbone_dir, cfg, model_cfg, live_dir)
    train_ids, val_ids = split_questions([e["question_id"] for e in examples],
                                         cfg.val_fraction, cfg.seed)
    def features(e: dict[str, Any]) -> dict[str, list] | None:
        if cfg.kind == "lm_tokens":
            return encode_example(tokenizer, e, cfg.likelihood, cfg.max_length,
                                  hard=cfg.label == "hard")
        return encode(tokenizer, e, cfg)

    train = [f for e in examples if e["question_id"] in train_ids
             if (f := features(e)) is not None]
    val = [f for e in examples if e["question_id"] in val_ids
           if (f := features(e)) is not None]
    if not train:
        raise DataError("no training path has a labelled step within prm.max_length")
    if cfg.select == "ranking" and not ranking:
        raise DataError("prm.select is 'ranking' but no question outside the simulated ones "
                        "has both a right and a wrong path to rank: sample more questions "
                        "(sample.question_limit), simulate fewer (simulate.max_paths) or "
                        "set prm.select to step_accuracy")
    quantized = cfg.lora and model_cfg.load_in_4bit
    set_seed(cfg.seed)  # the new head is initialised here, before the Trainer seeds anything
    pad_id = _pad_id(tokenizer)
    if cfg.kind == "lm_tokens":
        model = _token_prm(str(backbone_dir), model_cfg, quantized, cfg, train, pad_id)
    else:
        model = _token_classifier(str(backbone_dir), model_cfg.dtype, quantized)
        if cfg.kind == "lm_head":
            start_from_lm_head(model, str(backbone_dir), model_cfg.dtype, tokenizer)
        if cfg.lora:
            model = attach_lora(model, model_cfg.lora_params, quantized, task_type="TOKEN_CLS")
    live = live_run(live_dir)
    with tempfile.TemporaryDirectory(prefix="sipf-prm-") as scratch:
        args = TrainingArguments(**training_args(scratch, cfg, logging_strategy="epoch",
                                                 remove_unused_columns=False))
        trainer = PrmTrainer(model=model, args=args, train_dataset=train,
                             data_collator=PrmCollator(pad_id))
        rank = None
        if cfg.select == "ranking":
            features, positions = path_features(model, tokenizer,
                                                [r["prefix"] for r in ranking],
                                                [r["steps"] for r in ranking])
            rank = _Ranking(features, positions, [r["question_id"] for r in ranking],
                            [bool(r["outcome"]) for r in ranking], cfg.aggregate)
        epoch_end = _EpochEnd(trainer, val, cfg.batch_size, pad_id, live, rank)
        trainer.add_callback(epoch_end)
        trainer.train()
    best = epoch_end.best
    # no validation: the last epoch
    best_epoch = best.epoch if best.key is not None else len(epoch_end.per_epoch)
    best.restore(trainer.model)
    rank_ids = {r["question_id"] for r in ranking} if rank is not None else set()
    _save(trainer.model, tokenizer, out_dir, backbone_dir, cfg, model_cfg, quantized,
          questions=train_ids | val_ids | rank_ids)
    kept = epoch_end.start if best_epoch == 0 else epoch_end.per_epoch[best_epoch - 1]
    best_accuracy = kept.get("val_step_accuracy")
    if live is not None:  # the summary otherwise shows the last epoch, not the kept one
        live.summary.update(best_epoch=best_epoch, best_val_step_accuracy=best_accuracy,
                            **({"best_val_ranking": kept["val_ranking"]}
                               if rank is not None else {}))
        live.end()
    return {"kind": cfg.kind, "select": cfg.select, "best_epoch": best_epoch,
            "val_step_accuracy": best_accuracy, "val_ranking": kept.get("val_ranking"),
            "train_steps": trainer.state.global_step,
            "train_questions": len(train_ids), "val_questions": len(val_ids),
            "train_paths": len(train), "val_paths": len(val),
            "ranking_questions": len(rank_ids),
            "ranking_paths": len(ranking) if rank is not None else 0,
            "start": epoch_end.start, "per_epoch": epoch_end.per_epoch}


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path,
          backbone_dir: str | Path, cfg: PrmConfig, model_cfg: ModelConfig,
          quantized: bool, questions: Iterable[str] = ()) -> None:
    """Model (or adapter + head), tokenizer and the metadata load_prm needs, atomically."""
    with atomic_path(out_dir, directory=True) as tmp:
        if isinstance(model, TokenPrm):
            save_weights(model.lm, tmp)
            calibration = model.calibration.detach().tolist()
        else:
            save_weights(model, tmp)
            calibration = None
        tokenizer.save_pretrained(tmp)
        _write_meta(tmp, backbone_dir, cfg, model_cfg, quantized, calibration, questions)


def _write_meta(directory: Path, backbone_dir: str | Path, cfg: PrmConfig,
                model_cfg: ModelConfig, quantized: bool,
                calibration: list[float] | None = None, questions: Iterable[str] = ()) -> None:
    # questions: those whose paths trained or picked the PRM, so that `score` can also
    # report on the paths of questions it never saw (its training paths flatter it)
    meta = {"kind": _KIND, "prm_kind": cfg.kind, "backbone": str(backbone_dir),
            "lora": cfg.lora, "load_in_4bit": quantized, "dtype": model_cfg.dtype,
            "config": dataclasses.asdict(cfg), "questions": sorted(questions, key=str)}
    if calibration is not None:  # kind lm_tokens: P(correct) = sigmoid(a + b · r)
        meta["calibration"] = calibration
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _save_likelihood_marker(out_dir: str | Path, backbone_dir: str | Path, cfg: PrmConfig,
                            model_cfg: ModelConfig, live_dir: str | Path | None
                            ) -> dict[str, Any]:
    """Kind likelihood: a directory holding only prm.json (no weights are copied: the score
    stage reads the policy it is given), and metrics with nothing trained."""
    with atomic_path(out_dir, directory=True) as tmp:
        _write_meta(tmp, backbone_dir, cfg, model_cfg, False)
    live = live_run(live_dir)
    if live is not None:
        live.summary.update(kind="likelihood", best_epoch=None, best_val_step_accuracy=None)
        live.end()
        # dvc.yaml declares the PRM's curves as an output: nothing was trained, so the
        # curve is there with its header and no point (DVC fails on a missing output)
        curves = Path(live_dir) / "plots" / "metrics"
        curves.mkdir(parents=True, exist_ok=True)
        (curves / "val_step_accuracy.tsv").write_text("step\tval_step_accuracy\n")
    return {"kind": "likelihood", "likelihood": cfg.likelihood, "best_epoch": None,
            "val_step_accuracy": None, "train_steps": 0, "per_epoch": []}
