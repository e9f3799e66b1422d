"""Sandbox throughput: trivial programs judged per second, one worker against several.

    python benchmarks/sandbox_throughput.py --programs 200 --workers 1,2

Each program is a one-line function with two asserts, so the number measures the sandbox's
per-program cost (a fresh interpreter, namespaces, limits, the kill and clean-up), not the
programs. Prints one JSON line per worker count.
"""

from __future__ import annotations

import json
import os
import time

import click

from sipf.code.sandbox import Job, isolation, judge_many


@click.command()
@click.option("--programs", default=200, help="Programs judged per worker count.")
@click.option("--workers", "worker_counts", default="1,2", help="Comma-separated worker counts.")
@click.option("--timeout", "timeout_s", default=10.0, help="Per-program timeout (seconds).")
def main(programs: int, worker_counts: str, timeout_s: float) -> None:
    # Distinct programs (no caching anywhere to benefit from), all of which pass.
    jobs = [Job(f"def f(x):\n    return x + {i}\n", (f"assert f(1) == {i + 1}",
                                                      f"assert f(-{i}) == 0"))
            for i in range(programs)]
    judge_many(jobs[:2], workers=1, timeout_s=timeout_s)  # warm-up: page cache, imports
    setup = isolation()
    for workers in (int(w) for w in worker_counts.split(",")):
        started = time.perf_counter()
        verdicts = judge_many(jobs, workers=workers, timeout_s=timeout_s)
        seconds = time.perf_counter() - started
        click.echo(json.dumps({
            "workers": workers, "programs": programs,
            "passed": sum(v.passed for v in verdicts), "seconds": round(seconds, 2),
            "programs_per_second": round(programs / seconds, 1),
            "mean_judge_seconds": round(sum(v.seconds for v in verdicts) / programs, 4),
            "cpus": os.cpu_count(), **setup}))


if __name__ == "__main__":
    main()
