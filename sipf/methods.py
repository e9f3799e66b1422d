"""The paper's methods as switches on one pipeline (docs/method.md section 7, Tables 1-4).

Every method runs the same DVC stages (sample, simulate, train_prm, score, prefs, align,
evaluate); a method only changes what each stage does:

* ``iterations``: loop iterations it runs; the stages of later iterations write
  placeholders (``skipped``) instead, so ``dvc exp run -S method=rft`` needs no other edit.
* ``greedy``: sample one greedy path per question (STaR) instead of temperature sampling.
* ``feedback``: how steps and paths are rewarded. ``process``: Monte-Carlo step labels and
  a PRM (SIPF); ``outcome``: every step gets its path's outcome and the same model is
  trained on that (an ORM: SIOF); ``none``: no reward model, a path's reward is its
  outcome (RFT, STaR, SRF, RPO).
* ``reward_filter``: keep only the top ``prefs.keep_fraction`` of each question's correct
  paths by reward (pRFT, pSRF: "a PRM filters the samples").
* ``data``: ``pairs`` by reward gap (``prefs.margin``), ``outcome_pairs`` (a correct path
  over a wrong one, whatever the reward) or ``correct`` (every kept correct path, for SFT).
* ``objective``: ``orpo`` (NLL + λ odds ratio), ``dpo``, ``rpo`` (DPO + NLL on the chosen
  path) or ``sft`` (NLL on the chosen path only).
* ``control``: also train the gold-data SFT control of each iteration (SIPF only: it is the
  yardstick the loop is measured against, and costs a training run per iteration).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sipf import layout
from sipf.config import METHOD_NAMES, SampleConfig
from sipf.errors import ConfigError

FEEDBACKS = ("process", "outcome", "none")
DATA = ("pairs", "outcome_pairs", "correct")
OBJECTIVES = ("orpo", "dpo", "rpo", "sft")


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    iterations: int = 3
    greedy: bool = False
    feedback: str = "process"
    reward_filter: bool = False
    data: str = "pairs"
    objective: str = "orpo"
    control: bool = False

    def __post_init__(self) -> None:
        assert self.feedback in FEEDBACKS and self.data in DATA \
            and self.objective in OBJECTIVES, self  # the table below is code, not input

    def skip_reason(self, stage: str, k: int) -> str | None:
        """Why ``stage`` of iteration ``k`` does not run under this method (None: it runs)."""
        if stage not in layout.LOOP_STAGES:
            raise ValueError(f"not a loop stage: {stage!r}")
        if k > self.iterations:
            runs = f"{self.iterations} iteration{'s' * (self.iterations != 1)}"
            return f"method {self.name} runs {runs}"
        if stage == "simulate" and self.feedback == "none":
            return f"method {self.name} has no step labels (feedback: none)"
        if stage == "train_prm" and self.feedback == "none":
            return f"method {self.name} has no reward model (feedback: none)"
        if stage == "control" and not self.control:
            return f"method {self.name} has no gold-SFT control (only sipf does)"
        return None

    def sample_config(self, cfg: SampleConfig) -> SampleConfig:
        """The sampling settings this method uses: STaR decodes one greedy path per question
        and keeps it only when it is right (it trains on no wrong path)."""
        if not self.greedy:
            return cfg
        return replace(cfg, temperature=0.0, per_round=1, max_rounds=1, n_correct=1, n_wrong=0)


# The same names, in the same order, as sipf.config.METHOD_NAMES, which params.yaml is checked
# against (tests/test_methods.py keeps the two equal).
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("cot", "the base model, prompted (no training)", iterations=0),
    Method("sft", "M0: supervised fine-tuning on the gold solutions", iterations=0),
    Method("rft", "sample from M0 at T=1, SFT on the distinct correct paths; not iterated",
           iterations=1, feedback="none", data="correct", objective="sft"),
    Method("prft", "RFT on the correct paths the PRM rewards most", iterations=1,
           feedback="process", reward_filter=True, data="correct", objective="sft"),
    Method("star", "SFT on greedy paths that reach the right answer, iterated", iterations=3,
           greedy=True, feedback="none", data="correct", objective="sft"),
    Method("srf", "DPO on correct-over-wrong pairs of M0's samples (outcome labels)",
           iterations=1, feedback="none", data="outcome_pairs", objective="dpo"),
    Method("psrf", "SRF on pairs whose chosen path the PRM rewards most", iterations=1,
           feedback="process", reward_filter=True, data="outcome_pairs", objective="dpo"),
    Method("rpo", "DPO + NLL on the chosen path, correct over wrong, one iteration",
           iterations=1, feedback="none", data="outcome_pairs", objective="rpo"),
    Method("siof", "SIPF with outcome feedback: an ORM instead of the PRM", feedback="outcome"),
    Method("sipf", "self-iterative process feedback: PRM-ranked pairs, ORPO", control=True),
    Method("sipf_no_or", "ablation: SFT on SIPF's chosen paths (no odds ratio)",
           objective="sft"),
    Method("sipf_no_pf_or", "ablation: SFT on the ORM's chosen paths (neither)",
           feedback="outcome", objective="sft"),
)}


def method_named(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"method: {name!r} is not one of {', '.join(METHOD_NAMES)}") from None
