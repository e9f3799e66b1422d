"""A colleague reuses a finished run instead of recomputing it: how long that takes, against
the run itself, and how many bytes go to the remote (docs/sharing.md).

    python benchmarks/sharing.py --run /path/to/finished/run --log /path/to/its/make-repro.log

``--run`` is a repository where `dvc repro` has finished (never modified: it is cloned and
its DVC cache copied). A's side: the clone gets the run's dvc.lock, params and metrics,
commits them and pushes to a bare git remote; then `python -m sipf.share push` (`make push`:
the outputs, the run cache and the outputs its entries restore) to an S3 server (moto on
127.0.0.1, tests/s3.py). B's side, in a fresh clone: `python -m sipf.share pull`, then
`dvc repro`, which must run no stage but `inputs` (always run). A's time is the "Elapsed (wall clock) time" of the
`/usr/bin/time -v` output at the end of ``--log`` (or ``--a-seconds``).

Runs on the CPU; the machine's load is printed with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.s3 import KEY_ID, REGION, SECRET, S3Server  # noqa: E402

BIN = Path(sys.executable).parent
BUCKET = "bench"


def ran(log: str) -> list[str]:
    """The stages a `dvc repro` log says it ran."""
    return [line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")]


def wall_seconds(log: Path) -> float:
    """The last "Elapsed (wall clock) time (h:mm:ss or m:ss): ..." of a `/usr/bin/time -v` log."""
    found = re.findall(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)",
                       log.read_text(errors="replace"))
    if not found:
        raise SystemExit(f"{log}: no 'Elapsed (wall clock) time' line (has the run finished?)")
    seconds = 0.0
    for part in found[-1].split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run's repository")
    parser.add_argument("--log", type=Path, help="its `make repro` log (/usr/bin/time -v at the end)")
    parser.add_argument("--a-seconds", type=float, help="A's wall time, instead of --log")
    parser.add_argument("--targets", nargs="*", default=[],
                        help="push/pull/repro only these stages with their dependencies "
                             "(for a run of part of the pipeline, e.g. the tiny test config)")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="also write the numbers here as JSON")
    args = parser.parse_args()
    if args.a_seconds is None and args.log is None:
        parser.error("give --log or --a-seconds")
    a_seconds = args.a_seconds if args.a_seconds is not None else wall_seconds(args.log)
    work = args.work or Path(tempfile.mkdtemp(prefix="sipf-sharing-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "aws-none").write_text("")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": str(work / "aws-none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(work / "aws-none"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@localhost",
           "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@localhost"}
    timings: dict[str, float] = {}

    def sh(*cmd: str, cwd: Path, timed: str | None = None, code: Path | None = None) -> str:
        start = time.perf_counter()
        # A clone's `sipf` stages import the clone's own code, as on a colleague's machine;
        # the sharing commands are this checkout's (``code``), whatever the run's age.
        done = subprocess.run(cmd, cwd=cwd, env={**env, "PYTHONPATH": str(code or cwd)},
                              capture_output=True, text=True)
        if timed:
            timings[timed] = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    with_deps = ["--with-deps", *args.targets] if args.targets else []
    server = S3Server()
    server.start()
    try:
        server.client().create_bucket(Bucket=BUCKET)
        origin, a, b = work / "origin.git", work / "a", work / "b"
        for path in (origin, a, b):
            shutil.rmtree(path, ignore_errors=True)
        sh("git", "init", "-q", "--bare", str(origin), cwd=work)
        # A: the finished run, committed. Its repository is only read.
        sh("git", "clone", "-q", str(args.run), str(a), cwd=work)
        for name in ("dvc.lock", "params.yaml"):
            shutil.copy2(args.run / name, a / name)
        shutil.rmtree(a / "metrics", ignore_errors=True)
        shutil.copytree(args.run / "metrics", a / "metrics")
        for ignore in args.run.glob("[dm]*/**/.gitignore"):  # data/, models/: DVC's own
            (a / ignore.relative_to(args.run)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ignore, a / ignore.relative_to(args.run))
        shutil.rmtree(a / ".dvc/cache", ignore_errors=True)
        shutil.copytree(args.run / ".dvc/cache", a / ".dvc/cache")
        sh("dvc", "remote", "add", "-f", "-d", "bench", f"s3://{BUCKET}/store", cwd=a)
        sh("dvc", "remote", "modify", "bench", "endpointurl", server.url, cwd=a)
        sh("git", "add", "-A", cwd=a)
        sh("git", "commit", "-qm", "the run", "--allow-empty", cwd=a)
        sh("git", "push", "-q", str(origin), "HEAD:main", cwd=a)
        sh(sys.executable, "-m", "sipf.share", "push", *with_deps, cwd=a, code=REPO,
           timed="A: python -m sipf.share push")
        keys = server.keys(BUCKET)
        pushed_bytes = sum(keys.values())
        # B: a fresh clone that pulls instead of recomputing.
        sh("git", "clone", "-q", "-b", "main", str(origin), str(b), cwd=work,
           timed="B: git clone")
        sh(sys.executable, "-m", "sipf.share", "pull", *with_deps, cwd=b, code=REPO,
           timed="B: python -m sipf.share pull")
        log = sh("dvc", "repro", *args.targets, cwd=b, timed="B: dvc repro")
        stages = ran(log)
        if stages != ["inputs"]:
            raise SystemExit(f"B's dvc repro ran {stages}, not only inputs:\n{log}")
        status = sh("git", "status", "--porcelain", cwd=b)
        if status:
            raise SystemExit(f"B's workspace differs from A's commit after dvc repro:\n{status}")
    finally:
        server.stop()
    b_seconds = sum(v for k, v in timings.items() if k.startswith("B:"))
    result = {"a_seconds": round(a_seconds, 1), "b_seconds": round(b_seconds, 1),
              "ratio": round(b_seconds / a_seconds, 5), "pushed_bytes": pushed_bytes,
              "pushed_objects": len(keys), "timings": {k: round(v, 1) for k, v in timings.items()},
              "b_repro_ran": stages, "load_average": os.getloadavg(),
              "run": str(args.run), "targets": args.targets}
    print(f"| step | seconds |\n|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"\nA's run: {a_seconds:.0f} s; B ready (clone + pull + repro): {b_seconds:.1f} s = "
          f"{100 * b_seconds / a_seconds:.2f}% of A's time; pushed {pushed_bytes:,} bytes in "
          f"{len(keys)} objects; B's dvc repro ran {stages}; load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
