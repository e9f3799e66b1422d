"""Iteration 0: supervised fine-tuning on gold solutions through TRL's SFTTrainer.

The loss covers the completion only (the gold solution plus EOS), never the prompt.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sipf.config import SftConfig


def train_sft(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
              prompts: list[str], completions: list[str], cfg: SftConfig,
              live_dir: Path | None = None) -> PreTrainedModel:
    """Fine-tune ``model`` on (prompt, completion) pairs; TRL appends EOS to each completion."""
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_dict({"prompt": prompts, "completion": completions})
    callbacks = []
    live = None
    if live_dir is not None:
        from dvclive import Live
        from dvclive.huggingface import DVCLiveCallback

        # Stage outputs are versioned by dvc.yaml itself: no dvc.yaml edits, no experiments.
        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)
        callbacks.append(DVCLiveCallback(live=live))
    on_gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="sipf-sft-") as scratch:
        args = SFTConfig(
            output_dir=scratch, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
            learning_rate=cfg.learning_rate, lr_scheduler_type="cosine",
            warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,  # a float is a ratio
            per_device_train_batch_size=cfg.batch_size, max_length=cfg.max_length,
            completion_only_loss=True, gradient_checkpointing=cfg.gradient_checkpointing,
            train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
            logging_steps=cfg.logging_steps, logging_first_step=True,
            save_strategy="no", report_to="none", seed=cfg.seed, data_seed=cfg.seed,
            bf16=on_gpu and torch.cuda.is_bf16_supported(), use_cpu=not on_gpu,
            disable_tqdm=True, dataloader_num_workers=0)
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset,
                             processing_class=tokenizer, callbacks=callbacks)
        trainer.train()
    if live is not None:
        live.end()
    return trainer.model
