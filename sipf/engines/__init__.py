"""Which engine generates: the ``generation`` section of params.yaml picks one.

Stages name the model they generate with (a :class:`ModelRef`) and call
:func:`open_generator`; the engine loads it where it runs (this process, a vLLM engine,
or each Ray actor), so a stage never depends on which engine is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sipf.config import GenerationConfig, ModelConfig
    from sipf.generation import Generator


@dataclass(frozen=True)
class ModelRef:
    """A model to generate with, as paths (picklable: Ray actors load it themselves).

    ``model_dir`` is a checkpoint or a LoRA adapter (stacked over its parents down to
    ``base_dir``); ``simulator`` instead names another model (simulate.simulator: a hub id,
    a local directory or a .gguf file) and ``model_dir``/``base_dir`` are then unused.
    """

    model_dir: str
    base_dir: str
    model: ModelConfig
    simulator: str = ""

    @classmethod
    def policy(cls, model_dir: str | Path, base_dir: str | Path, model: ModelConfig) -> ModelRef:
        return cls(str(model_dir), str(base_dir), model)

    @classmethod
    def other(cls, spec: str, model: ModelConfig) -> ModelRef:
        return cls("", "", model, simulator=spec)


def open_generator(cfg: GenerationConfig, ref: ModelRef, batch_size: int) -> Generator:
    """The generator ``cfg`` chooses, for the model ``ref`` names."""
    if cfg.engine == "ray":
        from sipf.engines.ray import RayGenerator

        return RayGenerator(cfg, ref, batch_size)
    return local_generator(cfg.backend, ref, batch_size, cfg)


def local_generator(backend: str, ref: ModelRef, batch_size: int,
                    cfg: GenerationConfig | None = None) -> Generator:
    """A generator in this process: transformers' ``generate`` or vLLM (``cfg``: its knobs)."""
    if backend == "vllm":
        from sipf.engines.vllm import VLLMGenerator

        return VLLMGenerator(ref, batch_size, cfg)
    from sipf.generation import HFGenerator
    from sipf.models import load_policy, load_simulator, load_tokenizer

    if ref.simulator:
        model, tokenizer = load_simulator(ref.simulator, ref.model)
    else:
        model = load_policy(ref.model_dir, ref.base_dir, ref.model, merged=True)
        tokenizer = load_tokenizer(ref.base_dir)
    return HFGenerator(model, tokenizer, batch_size=batch_size)
