"""Arithmetic word problems: the pipeline's embedded offline task, and its step oracle.

Each problem is a short chain of operations on one running quantity, drawn from a
seed and written in GSM8K's solution format::

    Mia has 23 apples. She finds 4 bags with 6 apples each. She gives away 7 apples.
    How many apples does Mia have now?

    4*6=<<4*6=24>>24 apples are in the bags.
    Mia has 23+24=<<23+24=47>>47 apples.
    Mia has 47-7=<<47-7=40>>40 apples.
    The answer is 40

Problems are kept small (two-digit starts, one-digit operands, values below 1000)
so a ~1M-parameter character-level model trained for minutes on a CPU solves part
of them, and the whole pipeline runs with no download.

Because every problem comes from a known computation, the module is also an exact
oracle: :func:`step_labels` says which steps of any written solution are correct,
the per-step supervision that GSM8K itself cannot give.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass

from sipf.config import MUL_FACTORS, ArithConfig
from sipf.errors import ConfigError
from sipf.tasks.base import (MathRecord, annotation_holds, annotations, answers_match,
                             extract_answer, join_steps, normalize_number, split_steps)

SYMBOLS = {"add": "+", "sub": "-", "mul": "*"}  # groups is written as a product, then a sum
TEST_BUCKETS = 10  # a computation is in test iff the hash of its key % TEST_BUCKETS == 0

# Short words: a character-level model pays for every character it reads.
NAMES = (("Mia", "She"), ("Leo", "He"), ("Ava", "She"), ("Sam", "He"),
         ("Zoe", "She"), ("Tom", "He"), ("Ivy", "She"), ("Ben", "He"))
ITEMS = ("apples", "pens", "coins", "cards", "shells", "stamps", "marbles", "beads")
CONTAINERS = ("bags", "boxes", "packs", "jars")


# ----------------------------------------------------------------------------- computations
@dataclass(frozen=True)
class Op:
    """One question sentence: add/sub/mul by ``k``, or gain ``k`` groups of ``each``."""

    kind: str
    k: int
    each: int = 0

    def apply(self, value: int) -> int:
        if self.kind == "add":
            return value + self.k
        if self.kind == "sub":
            return value - self.k
        if self.kind == "mul":
            return value * self.k
        return value + self.k * self.each


@dataclass(frozen=True)
class Computation:
    """A problem stripped of its wording: what dedupe and the train/test split look at."""

    start: int
    ops: tuple[Op, ...]

    def key(self) -> str:
        """Canonical text, e.g. '23;groups:4x6;sub:7'."""
        parts = [f"{op.kind}:{op.k}x{op.each}" if op.kind == "groups" else f"{op.kind}:{op.k}"
                 for op in self.ops]
        return ";".join([str(self.start), *parts])

    def totals(self) -> list[int]:
        """The running quantity after each operation; the last one is the answer."""
        values, value = [], self.start
        for op in self.ops:
            value = op.apply(value)
            values.append(value)
        return values


def in_test_bucket(computation: Computation) -> bool:
    """Stable (unsalted) hash of the computation: train and test are disjoint by construction."""
    digest = hashlib.sha256(computation.key().encode()).digest()
    return int.from_bytes(digest[:8], "big") % TEST_BUCKETS == 0


@functools.lru_cache(maxsize=None)
def _operands(kind: str, value: int, cfg: ArithConfig) -> tuple[tuple[int, int], ...]:
    """Every ``(k, each)`` for ``kind`` that keeps the running quantity within [0, max_value]."""
    ks = range(cfg.operand_min, cfg.operand_max + 1)
    if kind == "add":
        return tuple((k, 0) for k in ks if value + k <= cfg.max_value)
    if kind == "sub":
        return tuple((k, 0) for k in ks if k <= value)
    if kind == "mul":  # value 0 is excluded: "0 times as many" changes nothing
        return tuple((k, 0) for k in ks if k in MUL_FACTORS and 0 < value * k <= cfg.max_value)
    return tuple((k, each) for k in ks for each in ks if value + k * each <= cfg.max_value)


def _draw(cfg: ArithConfig, rng: random.Random, n_ops: int, split: str) -> Computation | None:
    """A random computation: a uniform operation among those possible, then uniform operands.

    None when the running quantity reaches a value no operation can continue from.
    """
    start = value = rng.randint(*cfg.start_range(split))
    ops = []
    for _ in range(n_ops):
        options = [(kind, pairs) for kind in cfg.operations
                   if (pairs := _operands(kind, value, cfg))]
        if not options:
            return None
        kind, pairs = rng.choice(options)
        op = Op(kind, *rng.choice(pairs))
        ops.append(op)
        value = op.apply(value)
    return Computation(start, tuple(ops))


def problem_space(cfg: ArithConfig, split: str) -> int:
    """How many distinct computations ``split`` draws from (train and test share one space,
    test getting about 1/TEST_BUCKETS of it)."""
    lo, hi = cfg.step_range(split)

    @functools.lru_cache(maxsize=None)
    def continuations(value: int, ops_left: int) -> int:
        if ops_left == 0:
            return 1
        return sum(continuations(Op(kind, k, each).apply(value), ops_left - 1)
                   for kind in cfg.operations for k, each in _operands(kind, value, cfg))

    first, last = cfg.start_range(split)
    return sum(continuations(start, n) for start in range(first, last + 1)
               for n in range(lo, hi + 1))


# ----------------------------------------------------------------------------- text
@dataclass(frozen=True)
class Wording:
    """The words of one problem; they vary between problems but not within one."""

    name: str
    pronoun: str
    item: str
    container: str


def _calc(expr: str, value: int) -> str:
    return f"{expr}=<<{expr}={value}>>{value}"


def _sentence(op: Op, w: Wording) -> str:
    if op.kind == "add":
        return f"{w.pronoun} gets {op.k} more {w.item}."
    if op.kind == "sub":
        return f"{w.pronoun} gives away {op.k} {w.item}."
    if op.kind == "mul":
        return f"{w.pronoun} now has {op.k} times as many {w.item}."
    return f"{w.pronoun} finds {op.k} {w.container} with {op.each} {w.item} each."


def render(computation: Computation, w: Wording) -> tuple[str, str, str]:
    """``(question, solution, answer)``: digits for every number, one phrasing per step kind."""
    question = [f"{w.name} has {computation.start} {w.item}."]
    steps = []
    value = computation.start
    for op in computation.ops:
        question.append(_sentence(op, w))
        if op.kind == "groups":
            gained = op.k * op.each
            steps.append(f"{_calc(f'{op.k}*{op.each}', gained)} {w.item} are in the {w.container}.")
            expr = f"{value}+{gained}"
        else:
            expr = f"{value}{SYMBOLS[op.kind]}{op.k}"
        value = op.apply(value)
        steps.append(f"{w.name} has {_calc(expr, value)} {w.item}.")
    question.append(f"How many {w.item} does {w.name} have now?")
    answer = str(value)
    return " ".join(question), join_steps(steps, answer), answer


# ----------------------------------------------------------------------------- splits
def problems(cfg: ArithConfig, split: str) -> list[tuple[Computation, MathRecord]]:
    """The records of ``split`` with the computation behind each; see :func:`generate`."""
    count = cfg.count(split)
    lo, hi = cfg.step_range(split)
    # A string seed is hashed with SHA-512 by random.Random, so this is stable across runs.
    rng = random.Random(f"sipf.arith/{cfg.seed}/{split}")
    max_draws = 1000 + 100 * count  # test keeps ~1 draw in 10; this leaves a wide margin
    seen: set[str] = set()
    out: list[tuple[Computation, MathRecord]] = []
    draws = 0
    while len(out) < count:
        if draws == max_draws:
            raise ConfigError(
                f"arith: found only {len(out)} of {count} distinct {split} problems in "
                f"{draws} draws; the space holds {problem_space(cfg, split)} computations "
                f"(test gets ~1/{TEST_BUCKETS} of the in-domain ones). Widen the ranges or "
                f"ask for fewer problems.")
        draws += 1
        computation = _draw(cfg, rng, rng.randint(lo, hi), split)
        if computation is None or computation.key() in seen:
            continue
        if split != "ood" and in_test_bucket(computation) != (split == "test"):
            continue
        seen.add(computation.key())
        name, pronoun = rng.choice(NAMES)
        wording = Wording(name, pronoun, rng.choice(ITEMS), rng.choice(CONTAINERS))
        question, solution, answer = render(computation, wording)
        out.append((computation, MathRecord(f"arith-{split}-{len(out):05d}", question, answer,
                                            solution)))
    return out


def generate(cfg: ArithConfig, split: str) -> list[MathRecord]:
    """``cfg.n_<split>`` distinct problems of ``split`` ('train', 'test' or 'ood').

    Deterministic for a given config. Train and test never share a computation (start
    value, operations and operands), whatever their wording; out-of-domain problems have
    more operations than either. Raises ConfigError when the ranges are too narrow to
    supply the requested count.
    """
    return [record for _, record in problems(cfg, split)]


# ----------------------------------------------------------------------------- oracle
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


def _numbers(text: str) -> set[str]:
    """Normalised numbers in ``text``; commas go first, as :func:`safe_eval` drops them too."""
    return {normalize_number(n) for n in _NUMBER_RE.findall(text.replace(",", ""))}


def _needed(record: MathRecord) -> set[str]:
    """Every quantity the computation produces: the gold annotations' results."""
    return {normalize_number(value) for step in split_steps(record.solution)
            for _, value in annotations(step)}


def _judge(step: str, known: set[str], needed: set[str]) -> set[str] | None:
    """The values a correct step establishes, or None when the step is wrong."""
    pairs = annotations(step)
    if not pairs:
        return None
    available = set(known)
    for expr, value in pairs:
        if not annotation_holds(expr, value) or not _numbers(expr) <= available:
            return None
        available.add(normalize_number(value))
    if normalize_number(pairs[-1][1]) not in needed:
        return None
    return available - known


def _walk(record: MathRecord, steps: list[str]) -> tuple[list[bool], set[str]]:
    """Labels of ``steps`` and the numbers known after the last one."""
    needed = _needed(record)
    known = _numbers(record.question)
    labels = []
    for step in steps:
        established = _judge(step, known, needed)
        labels.append(established is not None)
        known |= established or set()
    return labels, known


def step_labels(record: MathRecord, steps: list[str]) -> list[bool]:
    """Whether each step of a written solution is correct, from the record alone.

    Uses only the question's numbers and the gold solution's annotations, so it works
    on any stored row, not just on freshly generated problems. A step is correct iff

    1. it carries at least one ``<<expr=value>>`` annotation;
    2. every annotation's arithmetic holds;
    3. every number in each annotation's expression is already known: stated in the
       question, established by an earlier step of this path that was itself judged
       correct, or produced by an earlier annotation of the same step;
    4. its result, the last annotation's value, is a quantity the problem needs: one of
       the gold solution's annotation results.

    Edge cases, by design:

    - recomputing an already-established value is correct (it is still true and needed);
    - a step built on a wrong earlier result is wrong even when its own arithmetic
      holds: the wrong result never became known;
    - a correct step after a wrong one can still be correct, as long as it uses only
      numbers that are known; errors do not poison unrelated later steps;
    - merging gold steps into one (``<<23+4*6=47>>``) is correct;
    - the oracle judges values, not the route: a needed value reached from known
      numbers by another expression counts, and so does one that coincides by chance;
    - only the annotation is checked; the prose around it is not.
    """
    return _walk(record, steps)[0]


def first_error(record: MathRecord, steps: list[str]) -> int | None:
    """Index of the first wrong step, or None when every step is correct."""
    return next((i for i, ok in enumerate(step_labels(record, steps)) if not ok), None)


def solution_is_correct(record: MathRecord, solution: str) -> bool:
    """Every step correct, and the stated answer right and computed by those steps.

    The last condition rejects a solution that states the answer without deriving it
    (unless the answer happens to be a number the question states).
    """
    labels, known = _walk(record, split_steps(solution))
    answer = extract_answer(solution)
    return (bool(labels) and all(labels) and answers_match(answer, record.answer)
            and normalize_number(record.answer) in known)
