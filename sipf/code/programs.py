"""The code-task interface (MBPP, HumanEval): records, prompts, steps, program extraction.

A code question is a :class:`CodeRecord`: a task description, the tests that decide it, and
what a prompt may show of them. The prompt is the SIPF authors' MBPP format::

    '''
    Write a function to ... Your code should satisfy these tests:
    assert f(1) == 2
    assert f(2) == 3
    '''

followed by ``record.header`` (empty for MBPP, where the model writes the whole program; for
HumanEval the imports, helper functions and the ``def`` line, so the model writes the body).

A completion is turned into the program that is judged by :meth:`CodeRecord.program`:
``record.prefix + extract_program(completion)``. ``prefix`` is empty for MBPP and, for
HumanEval, the problem's original prompt, exactly what OpenAI's harness puts in front of a
completion: both judge the same program.

A step is one non-empty line of the program (docs/method.md, Notation): split the *extracted
completion* (what the model wrote), not ``program(...)``, whose HumanEval prefix is prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

# Where generation stops and a completion is cut: a top-level (column 0) line starting a test
# (`assert`), driver code (`print`, `if __name__`), a code fence, or the next task's `'''`
# block. The SIPF authors stop on the same five words; matching them only at the start of a
# line keeps an indented `assert`/`print` inside a function. It is a plain prefix match, as a
# stop string is (a top-level `printed = 1` stops too), so extract_program cuts exactly where
# generation with STOP_SEQUENCES stops.
STOP_WORDS: tuple[str, ...] = ("assert", "print", "if __name__", "```", "'''")
# The same as stop strings for a generator (``SamplingParams.stop``): each after a newline.
STOP_SEQUENCES: tuple[str, ...] = tuple("\n" + word for word in STOP_WORDS)

TESTS_HEADER = " Your code should satisfy these tests:"

_FENCE_OPEN = re.compile(r"[ \t]*```[\w+-]*[ \t]*\r?(?:\n|$)")


@dataclass(frozen=True)
class CodeRecord:
    """One programming task.

    ``text`` is the task description; ``shown`` the tests a prompt may show (MBPP: its three
    asserts; HumanEval: the docstring's examples, doctests written as asserts); ``tests`` the
    trusted test code that decides a program (MBPP: the three asserts, all must pass;
    HumanEval: one ``check(candidate)`` block plus ``check(<entry point>)``); ``setup`` trusted
    code run after the program and before the tests (MBPP's ``test_setup_code``);
    ``entry_point`` the function under test; ``reference`` a gold *completion*
    (``program(reference)`` is the gold program); ``header`` code the prompt ends with and the
    completion continues; ``prefix`` code put before the completion in the judged program;
    ``source_id`` the dataset's own id (MBPP ``task_id``, HumanEval ``task_id``).
    """

    id: str
    text: str
    shown: tuple[str, ...]
    tests: tuple[str, ...]
    entry_point: str
    reference: str
    setup: str = ""
    header: str = ""
    prefix: str = ""
    source_id: str = ""

    def program(self, completion: str) -> str:
        """The program judged for a model completion: ``prefix + extract_program(completion)``."""
        return self.prefix + extract_program(completion)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class CodePrompt:
    """One prompt variant of a record: which tests it shows, and the prompt text."""

    id: str
    record: CodeRecord
    shown: tuple[str, ...]
    text: str


def format_code_prompt(record: CodeRecord, tests_shown: Sequence[str]) -> str:
    """The prompt: ``'''``, the description and the shown tests, ``'''``, then the header.

    With no tests to show the "Your code should satisfy these tests:" line is left out. Each
    shown test is one line or more, written as given (its indentation kept).
    """
    body = record.text.strip()
    if tests_shown:
        body += TESTS_HEADER + "\n" + "\n".join(test.rstrip() for test in tests_shown)
    return f"'''\n{body}\n'''\n{record.header}"


def prompt_variant(record: CodeRecord, indices: Sequence[int], number: int) -> CodePrompt:
    """The prompt showing ``record.shown[i]`` for each i in ``indices``, id ``<id>/v<number>``."""
    shown = tuple(record.shown[i] for i in indices)
    return CodePrompt(f"{record.id}/v{number}", record, shown, format_code_prompt(record, shown))


def split_code_steps(program: str) -> list[str]:
    """The steps of a program: its non-empty lines (whitespace-only lines are not steps),
    each kept as written (indentation included) without its line ending."""
    return [line for line in program.splitlines() if line.strip()]


def join_code_steps(steps: Sequence[str]) -> str:
    """Inverse of :func:`split_code_steps` up to blank lines: one step per line."""
    return "".join(step + "\n" for step in steps)


def extract_program(completion: str) -> str:
    """The code in a model completion.

    A markdown fence opening the completion (its first non-blank line is ```` ``` ```` or
    ```` ```python ````) is removed; then the text is cut before the first line that starts,
    at column 0, with one of :data:`STOP_WORDS` (a closing fence included); trailing
    whitespace is dropped. Leading indentation is kept: a HumanEval completion is a function
    body.
    """
    text = completion
    stripped = text.lstrip("\r\n")
    fence = _FENCE_OPEN.match(stripped)
    if fence is not None:
        text = stripped[fence.end():]
    lines = text.splitlines(keepends=True)
    kept = []
    for line in lines:
        if line.startswith(STOP_WORDS):
            break
        kept.append(line)
    return "".join(kept).rstrip()

