"""`make repro` of several commits, one after another in one run, stage by stage.

Wall time moves with the machine (the same steps of SFT took 237 s one day and 277 s the
next), so a speed claim compares commits in the same run, never against a number from
another day. Each commit is cloned afresh next to this repository (so `../shared` resolves
as it does for main), `make repro` runs in it with every output line stamped, and a table
gives each stage's seconds (from its "Running stage" line to the next one's) per commit.

    python benchmarks/repro_wall_time.py 27058e0 HEAD        # ~15 min a commit on 2 cores

Stop every other process on the machine for the run; the logs stay in `--workdir`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGE = re.compile(r"Running stage '([^']+)'")


def timed_repro(commit: str, clone: Path, log: Path) -> tuple[list[tuple[str, float]], float, int]:
    """Clone `commit` into `clone`, run `make repro`; return (stage, start s) pairs, total s, rc."""
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
    starts: list[tuple[str, float]] = [("install", 0.0)]
    t0 = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(["make", "repro"], cwd=clone, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic() - t0
            out.write(f"{now:8.1f} {line}")
            out.flush()
            if m := STAGE.search(line):
                starts.append((m.group(1), now))
        rc = proc.wait()
    return starts, time.monotonic() - t0, rc


def durations(starts: list[tuple[str, float]], total: float) -> dict[str, float]:
    """Each stage's seconds, from its start to the next stage's (the last one to the end)."""
    ends = [t for _, t in starts[1:]] + [total]
    return {name: end - t for (name, t), end in zip(starts, ends)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("commits", nargs="+", help="commits to time, in this order")
    ap.add_argument("--workdir", type=Path, default=REPO.parent / "repro_wall_time",
                    help="where the clones and logs go; must sit beside the repository "
                         "so that ../shared/data resolves (default: %(default)s)")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    runs: dict[str, tuple[dict[str, float], float, int]] = {}
    for i, commit in enumerate(args.commits):
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", commit],
                             check=True, capture_output=True, text=True).stdout.strip()
        # The clone sits one level below workdir's parent, i.e. beside the repository.
        clone = args.workdir.parent / f"{args.workdir.name}_{i}_{sha}"
        starts, total, rc = timed_repro(sha, clone, args.workdir / f"{i}_{sha}.log")
        runs[sha] = (durations(starts, total), total, rc)
        print(f"{sha}: make repro rc {rc}, {total:.1f} s ({total / 60:.1f} min)", flush=True)

    names: list[str] = []
    for stage_s, _, _ in runs.values():
        names += [n for n in stage_s if n not in names]
    print("\n| stage | " + " | ".join(runs) + " |")
    print("|---|" + "---|" * len(runs))
    for name in names:
        cells = [f"{s[name]:.1f}" if name in s else "–" for s, _, _ in runs.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    totals = [f"**{t:.1f}** (rc {rc})" for _, t, rc in runs.values()]
    print("| **total** | " + " | ".join(totals) + " |")


if __name__ == "__main__":
    main()
