"""The math-task interface every task module speaks: records, steps, answers.

A solution is written in GSM8K's format: one reasoning step per line, each
arithmetic step carrying a ``<<expr=value>>`` calculator annotation, and a
closing line ``The answer is N`` that is not itself a step.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from os import PathLike

from sipf.errors import DataError

ANSWER_PREFIX = "The answer is"

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"
_ANSWER_RE = re.compile(re.escape(ANSWER_PREFIX) + r"\s*:?\s*\$?\s*(" + _NUMBER + ")")
_ANNOTATION_RE = re.compile(r"<<([^<>=]*)=([^<>]*)>>")


@dataclass(frozen=True)
class MathRecord:
    """One question with its gold answer and gold step-by-step solution."""

    id: str
    question: str
    answer: str
    solution: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def answer_line(answer: str) -> str:
    return f"{ANSWER_PREFIX} {answer}"


def split_steps(solution: str) -> list[str]:
    """Non-empty lines of a solution, stopping before the closing answer line."""
    steps = []
    for line in solution.split("\n"):
        line = line.strip()
        if not line:
            continue
        if line.startswith(ANSWER_PREFIX):
            break
        steps.append(line)
    return steps


def join_steps(steps: list[str], answer: str | None = None) -> str:
    """Inverse of :func:`split_steps` (plus the closing line when an answer is given)."""
    lines = list(steps)
    if answer is not None:
        lines.append(answer_line(answer))
    return "\n".join(lines)


def _number(text: str) -> Decimal:
    """'1,234.50' -> Decimal('1234.50'), '$7' -> 7; ValueError when it is not a number.
    Decimal, not float: an integer answer above 2**53 must not be rounded."""
    cleaned = text.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None


def normalize_number(text: str) -> str:
    """'1,234.50' -> '1234.5'; '$7' -> '7'; keeps integers free of a trailing '.0' and exact
    at any size; other numbers as their shortest float repr."""
    value = _number(text)
    if value.is_finite() and value == value.to_integral_value():
        return str(int(value))
    return repr(float(value))


def extract_answer(text: str) -> str | None:
    """The number after the first 'The answer is', normalised; None when absent."""
    match = _ANSWER_RE.search(text)
    if match is None:
        return None
    try:
        return normalize_number(match.group(1))
    except ValueError:
        return None


def answers_match(predicted: str | None, gold: str) -> bool:
    """Numeric comparison, tolerant to formatting ('1,000' == '1000.0')."""
    if predicted is None:
        return False
    try:
        left, right = _number(predicted), _number(gold)
    except ValueError:
        return False
    if all(v.is_finite() and v == v.to_integral_value() for v in (left, right)):
        return left == right  # integers exactly: 2**53 + 1 is not 2**53
    return math.isclose(float(left), float(right), rel_tol=1e-9, abs_tol=1e-9)


def annotations(step: str) -> list[tuple[str, str]]:
    """The ``(expr, value)`` pairs of a step's ``<<expr=value>>`` annotations."""
    return [(m.group(1).strip(), m.group(2).strip()) for m in _ANNOTATION_RE.finditer(step)]


def safe_eval(expr: str) -> float | None:
    """Evaluate a calculator expression (+ - * / and parentheses) without ``eval``.

    Model-written text never reaches Python's ``eval``; anything that is not plain
    arithmetic on numbers returns None, as does division by zero.
    """
    import ast
    import operator

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv}

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        raise ValueError("not arithmetic")

    text = expr.replace(",", "").replace("x", "*").replace("×", "*").replace("÷", "/").strip()
    if not text or len(text) > 200:
        return None
    try:
        return walk(ast.parse(text, mode="eval").body)
    except (ValueError, SyntaxError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def annotation_holds(expr: str, value: str) -> bool:
    """True when ``expr`` evaluates to ``value`` (what GSM8K's calculator would print)."""
    computed = safe_eval(expr)
    if computed is None:
        return False
    try:
        claimed = float(normalize_number(value))
    except ValueError:
        return False
    return math.isclose(computed, claimed, rel_tol=1e-6, abs_tol=1e-6)


def read_jsonl(path: str | PathLike[str]) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSONL file (gzip-compressed
    when its name ends in .gz).

    Shared by every task loader so that a bad line is always reported the same way:
    a DataError naming the file and the 1-based line.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw_lines = handle.read().split(b"\n")
    except (OSError, EOFError) as err:  # a corrupt .gz fails while it is read
        raise DataError(f"cannot read file ({getattr(err, 'strerror', None) or err})",
                        file=path) from None
    for row, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise DataError("not valid UTF-8", file=path, row=row) from None
        except json.JSONDecodeError as err:
            raise DataError(f"invalid JSON ({err.msg})", file=path, row=row) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}",
                            file=path, row=row)
        yield row, obj
