"""What every trainer of the pipeline shares: SFT, the PRM, and alignment (ORPO, DPO, RPO).

:func:`training_args` holds the TrainingArguments they all set the same way,
:func:`schedule_args` the step budget and schedule that SFT and alignment read from their
sections alike, and :func:`live_run` / :func:`dvclive_callbacks` the DVCLive logging.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from dvclive import Live
from dvclive.huggingface import DVCLiveCallback
from transformers import TrainerCallback

from sipf.distributed import is_main, per_device_batch


def training_args(output_dir: str | Path, cfg: Any, **specific: Any) -> dict[str, Any]:
    """Keyword arguments of a TrainingArguments (or a TRL config): ``cfg``'s ``epochs``,
    ``learning_rate``, ``batch_size`` and ``seed`` (also of the data order), no checkpoints,
    no reporting (DVCLive logs through a callback), bf16 on a GPU that supports it, no
    progress bar, data loaded in the main process; plus the trainer's own ``specific``.

    ``cfg.batch_size`` is the global batch: under torchrun each process takes its share."""
    on_gpu = torch.cuda.is_available()
    batch = per_device_batch(cfg.batch_size, f"{type(cfg).__name__}.batch_size")
    return dict(output_dir=str(output_dir), num_train_epochs=cfg.epochs,
                learning_rate=cfg.learning_rate, per_device_train_batch_size=batch,
                save_strategy="no", report_to="none", seed=cfg.seed, data_seed=cfg.seed,
                bf16=on_gpu and torch.cuda.is_bf16_supported(), use_cpu=not on_gpu,
                disable_tqdm=True, dataloader_num_workers=0, **specific)


def schedule_args(cfg: Any, lr_scheduler_type: str) -> dict[str, Any]:
    """The budget and schedule of SFT and alignment: ``cfg.max_steps`` (0 = epochs), warm-up
    over ``cfg.warmup_ratio`` of the steps, sequences cut at ``cfg.max_length``, metrics
    every ``cfg.logging_steps`` steps from the first."""
    return dict(max_steps=cfg.max_steps or -1, lr_scheduler_type=lr_scheduler_type,
                warmup_steps=cfg.warmup_ratio,  # a float is a ratio
                max_length=cfg.max_length, logging_steps=cfg.logging_steps,
                logging_first_step=True)


def live_run(live_dir: str | Path | None) -> Live | None:
    """A DVCLive run writing into ``live_dir`` (None: no logging, and on every rank but 0)."""
    if live_dir is None or not is_main():
        return None
    # Stage outputs are versioned by dvc.yaml itself: no dvc.yaml edits, no experiments.
    return Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)


def is_wall_time(key: str) -> bool:
    """Whether a logged metric measures wall time (the Trainer's ``train_runtime``,
    ``train_samples_per_second``, ...): never the same twice, so never in a tracked file."""
    return key.endswith(("_runtime", "_per_second"))


class _DeterministicDVCLiveCallback(DVCLiveCallback):
    """DVCLive's callback without the wall-time metrics, which would make metrics.json and
    the plots differ between two runs of the same stage (and dvc.lock with them). They stay
    in the Trainer's printed log line."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # The arguments go to params.yaml beside the curves, which is committed with metrics/:
        # without the run's random scratch directories, two runs write the same file.
        params = {key: value for key, value in args.to_dict().items()
                  if key not in ("output_dir", "logging_dir")}
        self.live.log_params(params)

    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        logs = {key: value for key, value in kwargs["logs"].items() if not is_wall_time(key)}
        super().on_log(args, state, control, **{**kwargs, "logs": logs})


def dvclive_callbacks(live: Live | None) -> list[TrainerCallback]:
    """The Trainer callback that logs into ``live`` (none without one), wall time left out;
    it ends the run, writing metrics.json, when training ends."""
    return [] if live is None else [_DeterministicDVCLiveCallback(live=live)]
