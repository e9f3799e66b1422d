"""Loading, building and adapting causal LMs.

Every later stage sees a model directory the way it would see a hub model:
``models/base`` is either a saved checkpoint (the from-scratch model, or a GGUF
file dequantized once) or a ``source.json`` that points at a hub id / local
directory, so multi-GB pretrained weights are not copied into the DVC cache.
Trained policies are saved as full checkpoints (from scratch) or LoRA adapters.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig,
                          LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase,
                          PreTrainedTokenizerFast)

from sipf.config import LoraParams, ModelConfig, ScratchModelParams
from sipf.errors import ConfigError, DataError
from sipf.sources import ModelSource, fingerprint, resolve_source

if TYPE_CHECKING:
    from peft import LoraConfig  # peft loads when used: a second more for every stage

SOURCE_FILE = "source.json"
PARENT_FILE = "parent.json"  # beside a LoRA adapter: the model directory it was trained on
ADAPTER_CONFIG = "adapter_config.json"  # PEFT's: a directory holding one is a LoRA adapter
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>",
                  "unk_token": "<unk>"}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_char_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A character-level tokenizer over the characters of ``texts`` plus printable ASCII.

    One token per character keeps arithmetic digit-by-digit, which a model with a
    few million parameters learns far more easily than BPE-merged numbers.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    chars = sorted(set(string.printable) | {c for text in texts for c in text})
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS.values())}
    for char in chars:
        vocab.setdefault(char, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL_TOKENS)
    tokenizer.padding_side = "left"
    return tokenizer


def build_bpe_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer learnt from ``texts``: any text encodes, frequent words
    become one token, and every digit stays its own token (a small model learns arithmetic
    digit by digit, as with the character tokenizer), at a fraction of the tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL_TOKENS)
    tokenizer.padding_side = "left"
    return tokenizer


def build_scratch_tokenizer(params: ScratchModelParams, texts: list[str]
                            ) -> PreTrainedTokenizerFast:
    if params.tokenizer == "bpe":
        return build_bpe_tokenizer(texts, params.vocab_size)
    return build_char_tokenizer(texts)


def build_scratch_model(params: ScratchModelParams, tokenizer: PreTrainedTokenizerBase,
                        seed: int) -> LlamaForCausalLM:
    """A small Llama initialised from ``seed``."""
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=params.hidden_size,
        intermediate_size=params.intermediate_size, num_hidden_layers=params.num_layers,
        num_attention_heads=params.num_heads, num_key_value_heads=params.num_heads,
        max_position_embeddings=params.max_position, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


# ----------------------------------------------------------------------------- base checkpoint
def materialize_base(cfg: ModelConfig, train_texts: list[str], out_dir: Path, seed: int) -> None:
    """Write ``out_dir`` as the base model every stage starts from."""
    source = resolve_source(cfg.policy)
    out_dir.mkdir(parents=True, exist_ok=True)
    if source.kind == "scratch":
        tokenizer = build_scratch_tokenizer(cfg.scratch, train_texts)
        model = build_scratch_model(cfg.scratch, tokenizer, seed)
    elif source.kind == "gguf":
        model, tokenizer = _load_source(source, cfg.dtype)
    else:
        try:  # fail here, in one line, not in the first stage that loads the weights
            AutoConfig.from_pretrained(source.location)
        except (OSError, ValueError) as err:
            raise ConfigError(f"model.policy: cannot load {source.location} "
                              f"({str(err).splitlines()[0]})") from None
        # The pointer carries the weights' fingerprint: new weights at the same path change
        # models/base, so DVC reruns every stage that loads them through it.
        pointer = {"location": source.location, "files": fingerprint([source.location])}
        (out_dir / SOURCE_FILE).write_text(json.dumps(pointer, sort_keys=True) + "\n")
        return
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _load_source(source: ModelSource, dtype: str
                 ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer from a hub id, a directory or a GGUF file (dequantized, plain)."""
    kwargs: dict = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
    model = load_weights(AutoModelForCausalLM, source.location, dtype,
                         gguf_file=source.gguf_file)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_weights(auto_class: type, location: str | Path, dtype: str, *,
                 load_in_4bit: bool = False, gguf_file: str | None = None,
                 **kwargs: object) -> PreTrainedModel:
    """``auto_class.from_pretrained(location)`` in ``dtype`` (a ``model.dtype`` name): 4-bit
    NF4 weights with ``load_in_4bit``, and a ``gguf_file`` dequantized into a plain model."""
    kwargs["dtype"] = _DTYPES[dtype]
    if load_in_4bit:
        kwargs["quantization_config"] = nf4_config(kwargs.pop("keep_full", None))
        if torch.cuda.is_available():  # 4-bit weights are not moved later: each process's GPU
            kwargs.setdefault("device_map", {"": int(os.environ.get("LOCAL_RANK", "0"))})
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    model = auto_class.from_pretrained(location, **kwargs)
    if gguf_file:
        _strip_gguf_quantizer(model)
    return model


def _strip_gguf_quantizer(model: PreTrainedModel) -> None:
    # GGUF weights are dequantized on load, but the model keeps the GGUF quantizer and then
    # refuses training and save_pretrained; dropping it leaves a plain model.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def nf4_config(keep_full: list[str] | None = None):
    """QLoRA's 4-bit NF4 weights with double quantization (bitsandbytes; loads on CPU too);
    modules named in ``keep_full`` stay in full precision (None: transformers' default)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=keep_full,
        bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32)


def base_location(base_dir: str | Path) -> str:
    """The directory or hub id holding the base weights named by ``models/base``."""
    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        raise DataError("no such model directory (run the stage that writes it first)",
                        file=base_dir)
    pointer = base_dir / SOURCE_FILE
    if pointer.is_file():
        return json.loads(pointer.read_text())["location"]
    return str(base_dir)


def load_tokenizer(base_dir: str | Path) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(base_location(base_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_base_model(base_dir: str | Path, cfg: ModelConfig) -> PreTrainedModel:
    """The base weights, optionally 4-bit NF4 (QLoRA)."""
    location = base_location(base_dir)
    try:
        return load_weights(AutoModelForCausalLM, location, cfg.dtype,
                            load_in_4bit=cfg.load_in_4bit)
    except OSError as err:
        raise ConfigError(f"cannot load base model from {location}: {err}") from err


def attach_lora(model: PreTrainedModel, params: LoraParams, quantized: bool,
                task_type: str = "CAUSAL_LM") -> PreTrainedModel:
    """Trainable LoRA adapters (TOKEN_CLS also trains and saves a new head in full)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model)
    return get_peft_model(model, lora_config(params, task_type))


def lora_config(params: LoraParams, task_type: str = "CAUSAL_LM") -> LoraConfig:
    """PEFT's LoraConfig for ``params``."""
    from peft import LoraConfig

    return LoraConfig(r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout,
                      target_modules=list(params.target_modules), task_type=task_type)


STACKED = "stack{}"  # a 4-bit policy's adapters, unmerged: stack0 sits on the base weights


def adapter_chain(model_dir: str | Path, base_dir: str | Path) -> tuple[list[Path], Path]:
    """The LoRA adapters a policy is made of, ``model_dir``'s own first, each trained on the
    next (its PARENT_FILE, else the base), and the directory of the weights under them all."""
    chain, here = [], Path(model_dir)
    while (here / ADAPTER_CONFIG).is_file():
        chain.append(here)
        parent_file = here / PARENT_FILE
        here = Path(json.loads(parent_file.read_text())["parent"] if parent_file.is_file()
                    else base_dir)
    return chain, here


def load_policy(model_dir: str | Path, base_dir: str | Path, cfg: ModelConfig,
                merged: bool = False) -> PreTrainedModel:
    """A trained policy: a full checkpoint, or LoRA adapters on the base model.

    Adapters stack (base -> SFT adapter -> iteration adapter). On full-precision weights
    each parent adapter is folded into the weights before the next goes on top, and
    ``merged`` folds the last one too: faster generation, no longer trainable. On 4-bit
    weights folding an adapter in quantizes the sum again, which moves the logits
    (docs/scale.md), so there every adapter stays unmerged and active (``STACKED`` names,
    frozen) and ``merged`` is ignored.
    """
    chain, weights_dir = adapter_chain(model_dir, base_dir)
    if weights_dir.resolve() == Path(base_dir).resolve():
        model = load_base_model(base_dir, cfg)
    elif (weights_dir / "config.json").is_file():
        model = load_weights(AutoModelForCausalLM, weights_dir, cfg.dtype)
    else:
        raise ConfigError(f"{weights_dir}: neither a model checkpoint nor a LoRA adapter")
    if not chain:
        return model
    from peft import PeftModel

    if getattr(model, "is_loaded_in_4bit", False):
        return stack_adapters(model, chain)
    for adapter in reversed(chain):
        if isinstance(model, PeftModel):
            model = model.merge_and_unload()
        model = PeftModel.from_pretrained(model, str(adapter))
    return model.merge_and_unload() if merged else model


def stack_adapters(model: PreTrainedModel, chain: list[Path]) -> PreTrainedModel:
    """``model`` with every adapter of ``chain`` (child first, as adapter_chain returns it)
    loaded unmerged, all active and frozen: on 4-bit weights a merge would re-quantize."""
    from peft import PeftModel

    names = [STACKED.format(i) for i in range(len(chain))]
    for name, adapter in zip(names, reversed(chain)):
        if isinstance(model, PeftModel):
            model.load_adapter(str(adapter), adapter_name=name)
        else:
            model = PeftModel.from_pretrained(model, str(adapter), adapter_name=name)
    model.base_model.set_adapter(names, inference_mode=True)
    return model


def save_weights(model: PreTrainedModel, out_dir: str | Path) -> None:
    """``model.save_pretrained(out_dir)``, the same bytes for the same model in every run.

    PEFT writes a set-valued field of an adapter's config (``target_modules``) as a list in
    hash-seed order, so equal adapters hashed differently from run to run and every stage
    after one missed DVC's run cache. Each such field is rewritten sorted; the file is
    otherwise as PEFT wrote it (its keys, indentation and key order)."""
    adapters = getattr(model, "peft_config", {})
    # A 4-bit policy trains its adapter ("default") on its parents' unmerged adapters
    # (load_policy's STACKED ones), which are saved already, in their own directories.
    stacked = any(name.startswith(STACKED.format("")) for name in adapters)
    model.save_pretrained(out_dir, **({"selected_adapters": ["default"]} if stacked else {}))
    for name, config in adapters.items():
        if stacked and name != "default":
            continue
        unordered = [key for key, value in vars(config).items() if isinstance(value, set)]
        # PEFT saves adapter "default" in out_dir itself, any other in a subdirectory.
        config_file = Path(out_dir) / ("" if name == "default" else name) / ADAPTER_CONFIG
        if not unordered or not config_file.is_file():
            continue
        written = json.loads(config_file.read_text())
        for key in unordered:
            if isinstance(written.get(key), list):
                written[key] = sorted(written[key])
        config_file.write_text(json.dumps(written, indent=2, sort_keys=True))  # as PEFT does


def save_policy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path,
                parent: str | Path) -> None:
    """Save a trained policy: a full checkpoint, or a LoRA adapter that names its parent."""
    save_weights(model, out_dir)  # a PeftModel saves its adapter only
    tokenizer.save_pretrained(out_dir)
    if (out_dir / ADAPTER_CONFIG).is_file():
        (out_dir / PARENT_FILE).write_text(json.dumps({"parent": str(parent)}) + "\n")


def load_simulator(spec: str, cfg: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Another model as the simulator: a hub id, a local directory or a GGUF file."""
    source = resolve_source(spec, "simulate.simulator")
    if source.kind == "scratch":
        raise ConfigError("simulate.simulator: 'scratch' is not a trained model")
    try:
        return _load_source(source, cfg.dtype)
    except OSError as err:
        raise ConfigError(f"simulate.simulator: cannot load {spec}: {err}") from err
