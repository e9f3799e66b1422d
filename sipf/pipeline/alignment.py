"""Step 6 of an iteration: ORPO on the preference pairs (docs/method.md §5, Eq. 7-8); DPO and
RPO for the baselines that use them (docs/method.md §7).

``L = NLL(chosen) − λ · log σ(log odds(chosen) − log odds(rejected))`` through TRL's
ORPOTrainer (λ is TRL's ``beta``), always into a LoRA adapter. How TRL encodes a pair:

* EOS: TRL appends the tokenizer's EOS id to both completions unless the text already
  ends in it, and the chosen EOS is inside the NLL term, so the model learns to stop
  after a preferred path. Nothing is appended here.
* BOS: TRL prepends the tokenizer's BOS to the prompt. ``sipf.pipeline.sft`` and
  ``sipf.generation`` encode with ``add_special_tokens=False``, so :func:`_drop_added_bos`
  removes that BOS again: the policy must see prompts as it will at sampling time.
* Logged metrics (averaged over each logging window): ``loss``, ``nll_loss``,
  ``log_odds_ratio`` (mean log σ(log odds)), ``log_odds_chosen`` (mean log odds),
  ``logps/chosen`` and ``logps/rejected`` (mean per-token log-likelihoods: the paper's
  Figure 3), ``logits/chosen|rejected``, ``rewards/chosen|rejected|margins|accuracies``
  (β · logps), ``grad_norm``, ``learning_rate``, ``epoch``. Through DVCLive they land in
  ``<live_dir>/plots/metrics/logps/chosen.tsv`` etc.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback, set_seed
from trl import DPOConfig, DPOTrainer

from sipf.config import AlignConfig, SftConfig
from sipf.errors import DataError
from sipf.models import ADAPTER_CONFIG, lora_config
from sipf.pipeline.training import dvclive_callbacks, live_run, schedule_args, training_args

with warnings.catch_warnings():  # trl pins this trainer; its "experimental" note is noise
    warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer


def starting_adapter(cfg: AlignConfig, previous_adapter: Path | None) -> Path | None:
    """The adapter ORPO continues from: M_{k-1}'s under ``init: previous`` when it is a LoRA
    adapter (at iteration 1, M0 may be a full checkpoint), else None (a fresh adapter)."""
    if cfg.init == "previous" and previous_adapter is not None \
            and (Path(previous_adapter) / ADAPTER_CONFIG).is_file():
        return Path(previous_adapter)
    return None


_TOKEN_FIELDS = ("input_ids", "attention_mask", "labels")


def _trl_added_bos(prompt: str, prompt_ids: list[int],
                   tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether TRL prepended a BOS to ``prompt_ids`` that the tokenizer itself does not put
    there with ``add_special_tokens=False`` (see the module doc)."""
    bos = tokenizer.bos_token_id
    return (bos is not None and prompt_ids[:1] == [bos]
            and tokenizer(prompt, add_special_tokens=False)["input_ids"][:1] != [bos])


def _drop_added_bos(row: dict, tokenizer: PreTrainedTokenizerBase) -> dict:
    """``row`` (a tokenized ORPO example) without the BOS TRL prepended, if it did."""
    if not _trl_added_bos(row["prompt"], row["prompt_input_ids"], tokenizer):
        return row
    # TRL put the BOS at position 0 of every prompt_/chosen_/rejected_ token sequence.
    return {key: values[1:] for key, values in row.items() if key.endswith(_TOKEN_FIELDS)}


def with_adapter(model: PreTrainedModel, cfg: AlignConfig,
                 adapter_dir: Path | None, stack: bool = True) -> PeftModel:
    """``model`` wrapped in a trainable LoRA adapter: loaded from ``adapter_dir``, or fresh.

    An adapter M0 is folded into its weights first, except on 4-bit weights with ``stack``:
    folding would quantize the sum again (docs/scale.md), so M0's adapters stay unmerged,
    frozen and active under the new one (the stack ``load_policy`` rebuilds)."""
    if isinstance(model, PeftModel):
        if stack and getattr(model, "is_loaded_in_4bit", False):
            return _on_top(model, cfg, adapter_dir)
        # M0 trained as an adapter: the ORPO adapter sits on M0's merged weights.
        model = model.merge_and_unload()
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    if adapter_dir is not None:
        _check_adapter(adapter_dir)
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
    set_seed(cfg.seed)  # the adapter's random initialisation
    return get_peft_model(model, lora_config(cfg.lora))


def _check_adapter(adapter_dir: Path) -> None:
    if not (Path(adapter_dir) / ADAPTER_CONFIG).is_file():
        raise DataError("not a LoRA adapter directory (no adapter_config.json)", file=adapter_dir)


def _on_top(model: PeftModel, cfg: AlignConfig, adapter_dir: Path | None) -> PeftModel:
    """A trainable adapter "default" over ``model``'s adapters, which stay active, frozen."""
    frozen = list(model.peft_config)
    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    if adapter_dir is not None:
        _check_adapter(adapter_dir)
        model.load_adapter(str(adapter_dir), adapter_name="default", is_trainable=True)
    else:
        set_seed(cfg.seed)  # the adapter's random initialisation
        model.add_adapter("default", lora_config(cfg.lora))
    model.base_model.set_adapter([*frozen, "default"])  # every active adapter trainable ...
    model.set_requires_grad(frozen, requires_grad=False)  # ... but the new one
    return model


def control_config(cfg: AlignConfig) -> SftConfig:
    """SFT with ORPO's budget and learning rate, so it takes exactly as many steps of the
    same size (with SFT's cosine decay where ORPO decays linearly): the gold-data control
    (stage `control`) and the methods whose objective is SFT on self-generated paths."""
    return SftConfig(epochs=cfg.epochs, max_steps=cfg.max_steps,
                     learning_rate=cfg.learning_rate, warmup_ratio=cfg.warmup_ratio,
                     batch_size=cfg.batch_size, max_length=cfg.max_length,
                     logging_steps=cfg.logging_steps,
                     gradient_checkpointing=cfg.gradient_checkpointing, seed=cfg.seed,
                     accuracy_every=0.0, stop_at_accuracy=0.0)  # exactly the budget, no probe


def _pair_dataset(pairs: Sequence[dict]) -> Dataset:
    if not pairs:
        raise DataError("no preference pairs to train on")
    return Dataset.from_dict({key: [p[key] for p in pairs]
                              for key in ("prompt", "chosen", "rejected")})


def _response_nll(orpo_trainer: type) -> type:
    """ORPOTrainer with the NLL term over the chosen *response* only.

    TRL (like the ORPO authors' code) takes the NLL over prompt and response; SIPF's
    L_NLL(tau_w | q) conditions on the question. Over the prompt it teaches the policy to
    write questions, which wrecked the from-scratch model (71% -> 31% at lr 1e-3). The
    chosen log-probability TRL already computes is the per-token mean over the response.
    """

    class ResponseNllORPOTrainer(orpo_trainer):  # type: ignore[misc, valid-type]
        def concatenated_forward(self, model, batch):  # noqa: ANN001, ANN201
            output = super().concatenated_forward(model, batch)
            chosen_logps = output[0]
            return (*output[:4], -chosen_logps.mean(), *output[5:])

    return ResponseNllORPOTrainer


def _training_args(cfg: AlignConfig, output_dir: Path) -> dict:
    """The settings ORPO and DPO share: budget, schedule, batch, logging, seeds, device."""
    return training_args(output_dir, cfg, **schedule_args(cfg, "linear"),
                         max_grad_norm=cfg.max_grad_norm,
                         activation_checkpointing=cfg.gradient_checkpointing,
                         remove_unused_columns=False)


def build_trainer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                  pairs: Sequence[dict], or_weight: float, cfg: AlignConfig, output_dir: Path,
                  adapter_dir: Path | None = None,
                  callbacks: Sequence[TrainerCallback] = ()) -> ORPOTrainer:
    """The ORPO trainer :func:`train_orpo` runs (separate so tests can inspect its data)."""
    # TRL zeroes every dropout by default (a DPO habit); ORPO has no reference model,
    # and the paper trains with LoRA dropout.
    args = ORPOConfig(**_training_args(cfg, output_dir), beta=or_weight, disable_dropout=False)
    dataset = _pair_dataset(pairs)
    model = with_adapter(model, cfg, adapter_dir)
    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()  # frozen embeddings would cut the gradient path
    trainer = _response_nll(ORPOTrainer)(model=model, args=args, train_dataset=dataset,
                                         processing_class=tokenizer, callbacks=list(callbacks))
    # The trainer tokenizes in __init__ and builds its dataloader from this attribute in train().
    trainer.train_dataset = trainer.train_dataset.map(
        _drop_added_bos, fn_kwargs={"tokenizer": tokenizer})
    return trainer


def train_orpo(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
               pairs: Sequence[dict], or_weight: float, cfg: AlignConfig,
               live_dir: Path | None = None, adapter_dir: Path | None = None) -> PeftModel:
    """Train a LoRA adapter on ``model`` with ORPO and return the PeftModel.

    ``pairs`` are rows of :func:`sipf.pipeline.preferences.build_pairs` (prompt, chosen, rejected);
    ``or_weight`` is λ. A fresh adapter unless ``adapter_dir`` names one to continue (see
    :func:`starting_adapter`); a PeftModel ``model`` is merged first. Save the result with
    ``save_pretrained``; it loads with ``PeftModel.from_pretrained`` on the same weights
    ``model`` held (for an adapter M0: M0 merged).
    """
    with tempfile.TemporaryDirectory(prefix="sipf-orpo-") as scratch:
        trainer = build_trainer(model, tokenizer, pairs, or_weight, cfg, Path(scratch),
                                adapter_dir, dvclive_callbacks(live_run(live_dir)))
        trainer.train()
    return trainer.model


def _drop_added_bos_dpo(row: dict, tokenizer: PreTrainedTokenizerBase) -> dict:
    """As :func:`_drop_added_bos`, for DPO's columns: only ``prompt_ids`` starts with it."""
    if not _trl_added_bos(row["prompt"], row["prompt_ids"], tokenizer):
        return row
    return {**row, "prompt_ids": row["prompt_ids"][1:]}


def build_dpo_trainer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      pairs: Sequence[dict], cfg: AlignConfig, output_dir: Path,
                      nll_weight: float = 0.0,
                      callbacks: Sequence[TrainerCallback] = ()) -> DPOTrainer:
    """TRL's DPO trainer on a fresh LoRA adapter over ``model`` (M0), which with the adapter
    switched off is also the reference model. ``nll_weight`` > 0 adds the NLL of the chosen
    completion (TRL's ``"sft"`` loss, over completion tokens only): RPO."""
    loss_type, weights = (["sigmoid", "sft"], [1.0, nll_weight]) if nll_weight else (
        ["sigmoid"], None)
    # Dropout off, TRL's default for DPO: the policy and the reference (the same network,
    # adapter off) then score a sequence without noise.
    args = DPOConfig(**_training_args(cfg, output_dir), beta=cfg.dpo_beta, loss_type=loss_type,
                     loss_weights=weights, disable_dropout=True)
    # stack=False: TRL computes the reference with one adapter active ("ref", a copy of the
    # fresh one), which would leave M0's own adapters out of it; M0 is folded in instead.
    trainer = DPOTrainer(model=with_adapter(model, cfg, None, stack=False), args=args,
                         train_dataset=_pair_dataset(pairs), processing_class=tokenizer,
                         callbacks=list(callbacks))
    trainer.train_dataset = trainer.train_dataset.map(
        _drop_added_bos_dpo, fn_kwargs={"tokenizer": tokenizer})
    return trainer


def train_dpo(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
              pairs: Sequence[dict], cfg: AlignConfig, nll_weight: float = 0.0,
              live_dir: Path | None = None) -> PeftModel:
    """DPO (SRF, pSRF) or, with ``nll_weight``, RPO into a fresh LoRA adapter on ``model``.

    Logs ``logps/chosen`` and ``logps/rejected`` as TRL computes them for DPO: summed over
    the completion's tokens (ORPO's are per-token means)."""
    with tempfile.TemporaryDirectory(prefix="sipf-dpo-") as scratch:
        trainer = build_dpo_trainer(model, tokenizer, pairs, cfg, Path(scratch), nll_weight,
                                    dvclive_callbacks(live_run(live_dir)))
        trainer.train()
    return trainer.model
