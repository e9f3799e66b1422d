"""Do the gold solutions pass their own tests in our sandbox? MBPP's 974, HumanEval's 164.

    python benchmarks/mbpp_reference.py --data ../shared/data --out /work/diag/reference.json

Each MBPP task's ``code`` is judged as the program, with its ``test_setup_code`` and its 3
asserts (``test_list``); each HumanEval problem's program is its prompt + canonical solution,
with ``check(entry_point)`` (what :meth:`CodeRecord.program` makes of the reference). Every
failure is then run again outside the sandbox, in a plain ``python -c`` of program + setup +
tests (10 s), to tell a wrong gold solution from a sandbox limitation. Prints a summary and
every failure; writes all verdicts as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click

from sipf.code.judge import judge_completions
from sipf.code.sandbox import isolation
from sipf.code.programs import CodeRecord
from sipf.code.humaneval import load_humaneval
from sipf.code.mbpp import load_mbpp


def plain_run(record: CodeRecord, completion: str) -> str:
    """The record's program for ``completion``, its setup and tests in one unsandboxed
    interpreter (its own process, no limits but 10 s): "passed" or the error. Also used by
    harness_agreement.py."""
    source = "\n".join([record.program(completion), record.setup, *record.tests]) + "\n"
    try:
        result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                                timeout=10, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "timeout (10 s)"
    if result.returncode == 0:
        return "passed"
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"


def judge_set(name: str, records, workers: int, timeout_s: float) -> dict:
    started = time.perf_counter()
    verdicts = judge_completions(records, [r.reference for r in records], workers=workers,
                                 timeout_s=timeout_s)
    seconds = time.perf_counter() - started
    failures = []
    for record, verdict in zip(records, verdicts):
        if verdict.passed:
            continue
        failures.append({"id": record.id, "reason": verdict.reason, "detail": verdict.detail,
                         "seconds": verdict.seconds,
                         "outside_sandbox": plain_run(record, record.reference)})
    passed = sum(v.passed for v in verdicts)
    click.echo(f"{name}: {passed}/{len(records)} gold solutions pass in the sandbox "
               f"({seconds:.1f} s, {workers} workers, timeout {timeout_s} s)")
    for failure in failures:
        click.echo(f"  {failure['id']}: {failure['reason']} | {failure['detail'][:160]!r} | "
                   f"outside the sandbox: {failure['outside_sandbox'][:160]}")
    return {"set": name, "records": len(records), "passed": passed,
            "seconds": round(seconds, 1), "failures": failures,
            "verdicts": {r.id: v.reason for r, v in zip(records, verdicts)}}


@click.command()
@click.option("--data", default="../shared/data", type=click.Path(exists=True, file_okay=False),
              help="The shared benchmark data directory.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Write every verdict here as JSON.")
@click.option("--workers", default=2, help="Sandbox worker processes.")
@click.option("--timeout", "timeout_s", default=3.0, help="Per-program timeout (seconds).")
def main(data: str, out: str | None, workers: int, timeout_s: float) -> None:
    root = Path(data)
    mbpp = load_mbpp(root / "mbpp" / "mbpp.jsonl", ("all",))["all"]
    humaneval = load_humaneval(root / "humaneval" / "HumanEval.jsonl.gz")
    click.echo(f"sandbox isolation here: {isolation()}")
    results = [judge_set("MBPP (all 974)", mbpp, workers, timeout_s),
               judge_set("HumanEval (164)", humaneval, workers, timeout_s)]
    if out:
        Path(out).write_text(json.dumps(results, indent=1))
        click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
