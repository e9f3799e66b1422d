"""Near-duplicate removal for sampled programs, by edit distance (docs/method.md section 1).

The rule, as the SIPF authors implement it (``self_sampling.py`` and
``add_string_with_distance_check`` in ChenKy23/SIPF):

* **Normalise**: remove every whitespace character (spaces, tabs, newlines), so indentation
  and blank lines never make two programs different.
* **Threshold** for a candidate ``c`` against a kept program ``k``::

      distance(c, k) < 0.8 * (mean_line_length(c) + 1) + |len(c) - len(k)| / 2

  where lengths are of the normalised strings and ``mean_line_length(c)`` is the mean length,
  whitespace removed, of the *candidate's* non-empty lines (the authors' ``avg_len``; it is
  not symmetric: the candidate's own line length sets how much editing counts as "the same
  program", about one line's worth). A candidate within the threshold of any kept program is
  dropped; otherwise it is kept, and later candidates are compared with it too.
* A program with no non-whitespace character is always dropped (the authors' code divides by
  its zero line count and skips it).

``distance`` is the Levenshtein distance (unit-cost insertions, deletions, substitutions),
computed with Myers' bit-parallel algorithm on Python integers and cut off as soon as the
threshold cannot be met; two cheap lower bounds (length difference, character counts) settle
most pairs without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np


def normalize_code(program: str) -> str:
    """The program with every whitespace character removed."""
    return "".join(program.split())


def mean_line_length(program: str) -> float:
    """Mean length of the program's non-empty lines, whitespace removed (0.0 when none)."""
    lengths = [len(normalize_code(line)) for line in program.splitlines()]
    lengths = [n for n in lengths if n]
    return sum(lengths) / len(lengths) if lengths else 0.0


def threshold(candidate: str, kept_length: int) -> float:
    """The distance under which ``candidate`` (raw text) duplicates a kept program whose
    normalised length is ``kept_length``."""
    length = len(normalize_code(candidate))
    return 0.8 * (mean_line_length(candidate) + 1) + abs(length - kept_length) / 2


def levenshtein(a: str, b: str, limit: int | None = None) -> int:
    """The edit distance of ``a`` and ``b``; with ``limit``, any value >= ``limit`` may be
    returned as soon as the distance is known to reach it (exact below ``limit``)."""
    if len(a) < len(b):
        a, b = b, a  # b, the pattern, is the shorter: fewer bits per word
    m = len(b)
    if m == 0:
        return len(a)
    return _myers(_pattern_masks(b), m, a, limit)


def _pattern_masks(pattern: str) -> dict[str, int]:
    masks: dict[str, int] = {}
    for i, char in enumerate(pattern):
        masks[char] = masks.get(char, 0) | (1 << i)
    return masks


def _myers(peq: dict[str, int], m: int, text: str, limit: int | None) -> int:
    """Myers (1999) / Hyyrö (2001) bit-vector edit distance of a pattern (its masks ``peq``,
    length ``m``) and ``text``: column by column, the last row D[m][j] is tracked in
    ``score``. D[m][n] >= D[m][j] - (n - j), which gives the early exit."""
    full = (1 << m) - 1
    top = 1 << (m - 1)
    pv, mv, score = full, 0, m
    remaining = len(text)
    get = peq.get
    for char in text:
        eq = get(char, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & full)
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = mh | (~(xv | ph) & full)
        mv = ph & xv
        remaining -= 1
        if limit is not None and score - remaining >= limit:
            return score - remaining
    return score


_ALPHABET = 128  # character counts are kept per ASCII code; every other character shares 127


def _counts(text: str) -> np.ndarray:
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.bincount(np.minimum(codes, _ALPHABET - 1), minlength=_ALPHABET).astype(np.int32)


@dataclass
class CodeDeduper:
    """Keeps programs that are not near-duplicates of one kept earlier (module docs).

    ``add(program)`` returns True when the program is kept. Seed it with an earlier
    iteration's programs (``CodeDeduper.of(existing)``) to dedup new samples against them.
    Every kept program's character counts sit in one matrix, so the two lower bounds are
    checked against all kept programs at once; only the survivors need the edit distance.
    """

    kept: list[str] = field(default_factory=list, init=False)  # raw programs, in order kept
    comparisons: int = field(default=0, init=False)  # pairs that needed the edit distance
    _texts: list[str] = field(default_factory=list, init=False, repr=False)
    _masks: list[dict[str, int]] = field(default_factory=list, init=False, repr=False)
    _counts: np.ndarray = field(default_factory=lambda: np.zeros((16, _ALPHABET), np.int32),
                                init=False, repr=False)
    _lengths: np.ndarray = field(default_factory=lambda: np.zeros(16, np.int64), init=False,
                                 repr=False)

    @classmethod
    def of(cls, programs: Iterable[str]) -> CodeDeduper:
        """A deduper holding ``programs`` as kept, unconditionally (already deduplicated)."""
        deduper = cls()
        for program in programs:
            text = normalize_code(program)
            deduper._keep(program, text, _counts(text))
        return deduper

    def _keep(self, program: str, text: str, counts: np.ndarray) -> None:
        row = len(self._texts)
        if row == len(self._lengths):
            self._counts = np.concatenate([self._counts, np.zeros_like(self._counts)])
            self._lengths = np.concatenate([self._lengths, np.zeros_like(self._lengths)])
        self._counts[row] = counts
        self._lengths[row] = len(text)
        self.kept.append(program)
        self._texts.append(text)
        self._masks.append(_pattern_masks(text))

    def _check(self, program: str) -> tuple[bool, str, np.ndarray | None]:
        text = normalize_code(program)
        if not text:
            return True, text, None
        counts = _counts(text)
        rows = len(self._texts)
        if rows == 0:
            return False, text, counts
        base = 0.8 * (mean_line_length(program) + 1)
        gaps = np.abs(self._lengths[:rows] - len(text))
        bounds = base + gaps / 2
        difference = self._counts[:rows] - counts
        extra_kept = np.maximum(difference, 0).sum(axis=1)
        extra_new = np.maximum(-difference, 0).sum(axis=1)
        # Lower bounds on the distance: the length gap, and the characters one has in excess.
        lower = np.maximum(gaps, np.maximum(extra_kept, extra_new))
        for row in np.flatnonzero(lower < bounds):
            kept_text = self._texts[row]
            if kept_text == text:
                return True, text, counts
            bound = float(bounds[row])
            self.comparisons += 1
            # distance < bound  <=>  distance < ceil(bound), distances being integers
            if _myers(self._masks[row], len(kept_text), text, _ceil(bound)) < bound:
                return True, text, counts
        return False, text, counts

    def is_duplicate(self, program: str) -> bool:
        """True when ``program`` is empty or within the threshold of a kept program."""
        return self._check(program)[0]

    def add(self, program: str) -> bool:
        """Keep ``program`` unless it is a near-duplicate; True when kept."""
        duplicate, text, counts = self._check(program)
        if duplicate:
            return False
        self._keep(program, text, counts)  # type: ignore[arg-type]
        return True


def _ceil(value: float) -> int:
    whole = int(value)
    return whole if whole == value else whole + 1


def dedup_programs(programs: Sequence[str], existing: Iterable[str] = ()) -> list[int]:
    """Indices of the programs kept, in order: each is compared with the ``existing``
    programs and with those kept before it."""
    deduper = CodeDeduper.of(existing)
    return [i for i, program in enumerate(programs) if deduper.add(program)]
