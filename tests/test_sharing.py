"""Sharing a run through an S3 remote: a colleague reuses it instead of recomputing it.

Two clones of one git repository (a bare git remote in a temp dir) and an S3 remote served
by moto on 127.0.0.1 (tests/s3.py; DVC itself is not mocked, it runs as the `dvc` command).
A runs the tiny pipeline with two loop iterations once per module, and an experiment
(``or_weight=1.0``) of iteration 1; each test starts from an empty bucket, so A pushes again.

The targets are every stage but the SFT control's and M0's evaluations (``TARGETS``): the
loop through iteration 2's adapter and both iterations' evaluations, in seconds per stage.

The faults (remote down during push and during pull, bad credentials, an object missing on
the remote, a push killed halfway) each give an error naming the remote or the output,
change nothing in the workspace or the local cache, and a retry completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import tiny_params

pytest.importorskip("moto.server", reason="moto[server] is not installed (the dev extra)")
pytest.importorskip("dvc_s3", reason="dvc-s3 is not installed (dvc[s3])")
from tests.s3 import KEY_ID, REGION, SECRET, S3Server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BUCKET, REMOTE = "sipf", "shared"
TARGETS = ("evaluate_it@it1", "evaluate_it@it2")
# Pushed and pulled: these targets and every stage they depend on (the stages left out have no
# outputs to move, and `dvc pull` without targets fails on them).
WITH_DEPS = ("--with-deps", *TARGETS)
# The loop in seconds: a model trained for seconds never answers right, so pairs are made by
# any reward gap (require_outcome: false), as in tests/test_loop_stages.py.
LOOP = {"simulate": {"k": 2, "max_paths": 0, "max_new_tokens": 16, "batch_size": 16},
        "prm": {"epochs": 1, "batch_size": 8, "val_fraction": 0.25},
        "prefs": {"margin": 1e-9, "require_outcome": False},
        "align": {"max_steps": 2, "batch_size": 4, "logging_steps": 1},
        "sample": {"question_limit": 3, "per_round": 2, "max_rounds": 1, "max_new_tokens": 16}}
# botocore retries a refused connection with backoff, per file: with its default (5 attempts)
# `dvc push --run-cache` to a stopped server took 171 s to fail on this project; 2 attempts, 14 s.
RETRIES = "2"


def run(*args: str, cwd: Path, check: bool = True, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": REGION, "AWS_MAX_ATTEMPTS": RETRIES,
           "AWS_EC2_METADATA_DISABLED": "true",
           # never the user's own ~/.aws profile
           "AWS_CONFIG_FILE": str(cwd.parent / "aws-none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(cwd.parent / "aws-none"),
           "GIT_AUTHOR_NAME": "sipf", "GIT_AUTHOR_EMAIL": "sipf@localhost",
           "GIT_COMMITTER_NAME": "sipf", "GIT_COMMITTER_EMAIL": "sipf@localhost",
           **env_vars}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check:
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def ran(log: str) -> list[str]:
    return [line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")]


def errors(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("ERROR")]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every file of a clone (workspace and DVC cache, git's own files and DVC's temporary
    files left out) -> its MD5."""
    return {p.relative_to(root).as_posix(): md5(p) for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts[:1]
            and not p.relative_to(root).as_posix().startswith(".dvc/tmp")}


def lock_outs(root: Path) -> dict[str, str]:
    """Every output dvc.lock records (metrics included) -> its MD5 (``.dir`` for a directory)."""
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", [])}


def matches_lock(root: Path, path: str, want: str) -> bool:
    """The file or directory at ``path`` has the hash dvc.lock records: a file's MD5, or a
    directory's (the MD5 of DVC's JSON listing of its files, sorted by path)."""
    target = root / path
    if not want.endswith(".dir"):
        return target.is_file() and md5(target) == want
    listing = [{"md5": md5(p), "relpath": p.relative_to(target).as_posix()}
               for p in sorted(target.rglob("*")) if p.is_file()]
    listing.sort(key=lambda entry: entry["relpath"])
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir" == want


# `dvc push --run-cache` sends the run-cache entries (.dvc/cache/runs) but not the outputs
# they restore, and outputs with `cache: false` (every stage's metrics) are never pushed at
# all: without these, a colleague's `dvc repro` finds the entry but reruns the stage. This
# pushes, from the local cache, every object an entry names (the step a `make push` needs).
# What `make push` runs after `dvc push --run-cache` (sipf/share.py): the outputs the entries
# restore, which DVC itself does not push.
PUSH_RUN_OUTPUTS = ("-m", "sipf.share")


@pytest.fixture(scope="module")
def s3_server():
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def s3(s3_server):
    """The server with an empty bucket: state reset before every test, as DVC's S3 plugin
    does in its fixtures, and the server up again after a test that stopped it."""
    if not s3_server.running:
        s3_server.start()
    s3_server.reset()
    s3_server.client().create_bucket(Bucket=BUCKET)
    yield s3_server
    if not s3_server.running:
        s3_server.start()
    s3_server.reset()


@pytest.fixture(scope="module")
def team(tmp_path_factory, s3_server):
    """A's run: a git repository pushed to a bare remote, the S3 remote in .dvc/config
    (endpoint only; the credentials come from the environment), the pipeline run and
    committed, then an experiment with or_weight=1.0 of iteration 1, run and kept as an
    experiment ref while A's workspace goes back to its commit."""
    if shutil.which("dvc", path=str(BIN)) is None:
        pytest.skip("dvc is not installed in this environment")
    root = tmp_path_factory.mktemp("team")
    (root / "aws-none").write_text("")
    origin, a = root / "origin.git", root / "a"
    run("git", "init", "-q", "--bare", "-b", "main", str(origin), cwd=root)
    a.mkdir()
    shutil.copytree(REPO / "sipf", a / "sipf", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", a)
    tiny_params(a / "params.yaml", **LOOP)
    params = yaml.safe_load((a / "params.yaml").read_text())
    params["loop"] = {name: params["loop"][name] for name in ("it1", "it2")}
    (a / "params.yaml").write_text(yaml.safe_dump(params))
    run("git", "init", "-q", "-b", "main", cwd=a)
    run("dvc", "init", "-q", cwd=a)
    run("dvc", "remote", "add", "-d", REMOTE, f"s3://{BUCKET}/store", cwd=a)
    run("dvc", "remote", "modify", REMOTE, "endpointurl", s3_server.url, cwd=a)
    run("git", "add", "-A", cwd=a)
    run("git", "commit", "-qm", "init", cwd=a)
    log = run("dvc", "repro", *TARGETS, cwd=a).stdout
    run("git", "add", "-A", cwd=a)
    run("git", "commit", "-qm", "run", cwd=a)
    run("git", "remote", "add", "origin", str(origin), cwd=a)
    run("git", "push", "-q", "origin", "main", cwd=a)
    exp = run("dvc", "exp", "run", "-n", "or1", "-S", "or_weight=1.0", "evaluate_it@it1",
              cwd=a).stdout
    exp_lock = yaml.safe_load(run("git", "show", "refs/exps/" + _exp_ref(a, "or1") + ":dvc.lock",
                                  cwd=a).stdout)
    run("git", "checkout", "-q", "--", ".", cwd=a)
    run("dvc", "checkout", "--with-deps", *TARGETS, cwd=a)
    assert run("git", "status", "--porcelain", cwd=a).stdout == ""
    return {"root": root, "origin": origin, "a": a, "log": log, "exp_log": exp,
            "exp_lock": exp_lock}


def _exp_ref(repo: Path, name: str) -> str:
    refs = run("git", "for-each-ref", "--format=%(refname)", "refs/exps", cwd=repo).stdout
    ref = next(line for line in refs.splitlines() if line.endswith("/" + name))
    return ref.removeprefix("refs/exps/")


def exp_out(team, path: str) -> str:
    """The hash the experiment's dvc.lock records for ``path``."""
    return next(out["md5"] for stage in team["exp_lock"]["stages"].values()
                for out in stage.get("outs", []) if out["path"] == path)


def clone(team, name: str) -> Path:
    b = team["root"] / name
    shutil.rmtree(b, ignore_errors=True)
    run("git", "clone", "-q", str(team["origin"]), str(b), cwd=team["root"])
    return b


def test_a_runs_the_loop_through_iteration_2(team):
    assert sorted(ran(team["log"])) == sorted([
        "inputs", "prepare", "base", "sft", *(f"{stage}@it{k}" for k in (1, 2) for stage in (
            "sample", "simulate", "train_prm", "score", "prefs", "align", "evaluate_it"))])
    assert sorted(ran(team["exp_log"])) == ["align@it1", "evaluate_it@it1", "inputs"]


def test_b_pulls_every_output_and_repro_runs_no_stage(team, s3):
    a = team["a"]
    pushed = run("dvc", "push", "--run-cache", *WITH_DEPS, cwd=a).stdout
    assert "files pushed" in pushed
    on_remote = s3.keys(BUCKET)
    assert any(key.startswith("store/runs/") for key in on_remote)  # the run cache

    b = clone(team, "b")
    run("dvc", "pull", *WITH_DEPS, cwd=b)
    outs = lock_outs(b)
    assert len(outs) > 30
    assert [path for path, want in outs.items() if not matches_lock(b, path, want)] == []
    log = run("dvc", "repro", *TARGETS, cwd=b).stdout
    assert ran(log) == ["inputs"]  # always run: it hashes the files params.yaml names
    assert run("git", "status", "--porcelain", cwd=b).stdout == ""


def test_b_pulls_only_iteration_2s_adapter_and_evaluates_it_to_a_s_metrics(team, s3):
    a = team["a"]
    run("dvc", "push", *WITH_DEPS, cwd=a)
    b = clone(team, "b-adapter")
    # The adapter, the model it is a LoRA of (models/it2/policy/parent.json), the base model
    # directory (its tokenizer) and the questions.
    run("dvc", "pull", "models/it2/policy", "models/sft", "models/base", "data/prepared", cwd=b)
    for absent in ("models/it1/policy", "models/it1/prm", "models/it2/prm", "data/it1/samples.parquet",
                   "data/it2/prefs.parquet", "data/predictions/it2.parquet"):
        assert not (b / absent).exists(), absent
    evaluated = run(str(BIN / "sipf"), "evaluate", "--model", "models/it2/policy", "--name", "it2",
                    cwd=b)
    assert "train_runtime" not in evaluated.stdout + evaluated.stderr  # nothing trained
    assert not (b / "models/it1/policy").exists()
    for path in ("metrics/eval/it2.json", "data/predictions/it2.parquet"):
        assert (b / path).read_bytes() == (a / path).read_bytes(), path
    assert run("git", "status", "--porcelain", cwd=b).stdout == ""  # A's metrics, to the byte

    # The same adapter outside the project: plain transformers + PEFT.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from sipf.config import load_params
    from sipf.models import load_policy

    base = AutoModelForCausalLM.from_pretrained(b / "models/sft")
    outside = PeftModel.from_pretrained(base, b / "models/it2/policy").eval()
    cwd = os.getcwd()
    os.chdir(b)
    try:
        inside = load_policy("models/it2/policy", "models/base", load_params().model).eval()
    finally:
        os.chdir(cwd)
    plain = AutoModelForCausalLM.from_pretrained(b / "models/sft").eval()
    ids = torch.tensor([[1, 5, 9, 12, 7, 3]])
    with torch.no_grad():
        assert torch.equal(outside(ids).logits, inside(ids).logits)
        assert not torch.equal(outside(ids).logits, plain(ids).logits)  # the adapter matters


def test_b_flips_a_param_to_a_run_of_a_and_back_from_the_run_cache(team, s3):
    """A ran or_weight 0.1 and 1.0 (the experiment); B, with the run cache, gets either back
    from the remote without recomputing (`dvc repro --pull` fetches what an entry restores)."""
    a = team["a"]
    run("dvc", "push", "--run-cache", *WITH_DEPS, cwd=a)
    assert "files pushed" in run(sys.executable, *PUSH_RUN_OUTPUTS, cwd=a).stdout
    b = clone(team, "b-runcache")
    run("dvc", "pull", "--run-cache", *WITH_DEPS, cwd=b)
    params = (b / "params.yaml").read_text()
    assert "or_weight: 0.1\n" in params
    exp_adapter = exp_out(team, "models/it1/policy")
    for value, adapter in (("1.0", exp_adapter), ("0.1", lock_outs(a)["models/it1/policy"])):
        (b / "params.yaml").write_text(params.replace("or_weight: 0.1\n", f"or_weight: {value}\n"))
        log = run("dvc", "repro", "--pull", TARGETS[0], cwd=b).stdout
        assert ran(log) == ["inputs"], log
        for stage in ("align@it1", "evaluate_it@it1"):
            assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in log, log
        assert lock_outs(b)["models/it1/policy"] == adapter
        assert matches_lock(b, "models/it1/policy", adapter)
    assert run("git", "status", "--porcelain", cwd=b).stdout == ""  # back to A's bytes


def test_an_experiment_travels_through_git_and_the_remote(team, s3):
    a = team["a"]
    run("dvc", "exp", "push", "origin", "or1", cwd=a)
    b = clone(team, "b-exp")
    run("dvc", "exp", "pull", "--no-cache", "origin", "or1", cwd=b)  # the git refs
    shown = run("dvc", "exp", "show", "--no-pager", "--md", cwd=b).stdout
    assert "or1" in shown
    run("dvc", "exp", "apply", "or1", cwd=b, check=False)  # its outputs are not here yet
    assert "or_weight: 1.0" in (b / "params.yaml").read_text()
    run("dvc", "pull", "models/it1/policy", cwd=b)  # its adapter, from the S3 remote
    want = exp_out(team, "models/it1/policy")
    assert want != lock_outs(a)["models/it1/policy"]  # another adapter than A's main run's
    assert lock_outs(b)["models/it1/policy"] == want and matches_lock(b, "models/it1/policy", want)


# ---- faults -------------------------------------------------------------------------------

def test_push_while_the_remote_is_down_then_again(team, s3):
    a = team["a"]
    before = snapshot(a)
    s3.stop()
    failed = run("dvc", "push", "--run-cache", *WITH_DEPS, cwd=a, check=False)
    assert failed.returncode != 0
    # DVC prints one "failed to transfer" line per run-cache entry, then this last line.
    last = errors(failed)[-1]
    assert last.startswith("ERROR: unexpected error - Could not connect to the endpoint URL")
    assert f"{s3.url}/{BUCKET}/store/" in last
    assert snapshot(a) == before
    s3.start()
    run("dvc", "push", "--run-cache", *WITH_DEPS, cwd=a)
    assert "in sync" in run("dvc", "status", "--cloud", *WITH_DEPS, cwd=a).stdout
    assert snapshot(a) == before


def test_pull_while_the_remote_is_down_then_again(team, s3):
    a = team["a"]
    run("dvc", "push", *WITH_DEPS, cwd=a)
    b = clone(team, "b-down")
    before = snapshot(b)
    s3.stop()
    failed = run("dvc", "pull", *WITH_DEPS, cwd=b, check=False)
    assert failed.returncode != 0
    first, *rest = errors(failed)
    assert first == (f"ERROR: failed to connect to s3 ({BUCKET}/store/files/md5) - Could not "
                     f'connect to the endpoint URL: "{s3.url}/{BUCKET}/store/files/md5"')
    assert len(rest) == 1 and rest[0].startswith("ERROR: failed to pull data from the cloud - ")
    assert rest[0].endswith(" files failed to download")
    assert snapshot(b) == before  # nothing half-written, nothing removed
    s3.start()
    run("dvc", "pull", *WITH_DEPS, cwd=b)
    assert all(matches_lock(b, path, want) for path, want in lock_outs(b).items())


def test_bad_credentials(team, s3):
    a = team["a"]
    key_id, secret = s3.iam_user(BUCKET)  # authentication on: only this key pair works
    wrong = {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    right = {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
    b = clone(team, "b-creds")
    before = snapshot(a)
    failed = run("dvc", "push", *WITH_DEPS, cwd=a, check=False, **wrong)
    assert failed.returncode != 0
    # Push: the error names neither the remote nor a path (DVC 3.67 with dvc-s3 3.3).
    assert errors(failed) == ["ERROR: unexpected error - Forbidden: An error occurred (403) "
                              "when calling the HeadObject operation: Forbidden"]
    assert snapshot(a) == before
    before = snapshot(b)
    failed = run("dvc", "pull", *WITH_DEPS, cwd=b, check=False, **wrong)
    assert failed.returncode != 0
    assert errors(failed)[0] == (f"ERROR: failed to connect to s3 ({BUCKET}/store/files/md5) - "
                                 "Forbidden: An error occurred (403) when calling the HeadObject "
                                 "operation: Forbidden")
    assert snapshot(b) == before
    assert s3.keys(BUCKET, key_id, secret) == {}
    run("dvc", "push", *WITH_DEPS, cwd=a, **right)
    run("dvc", "pull", *WITH_DEPS, cwd=b, **right)
    assert all(matches_lock(b, path, want) for path, want in lock_outs(b).items())


def test_an_object_missing_on_the_remote(team, s3):
    a = team["a"]
    run("dvc", "push", *WITH_DEPS, cwd=a)
    missing = lock_outs(a)["data/predictions/it2.parquet"]
    s3.client().delete_object(Bucket=BUCKET, Key=f"store/files/md5/{missing[:2]}/{missing[2:]}")
    b = clone(team, "b-missing")
    failed = run("dvc", "pull", *WITH_DEPS, cwd=b, check=False)
    assert failed.returncode != 0
    printed = failed.stdout + failed.stderr
    assert f"Missing cache files:\nmd5: {missing}" in printed  # the hash, not the path
    assert errors(failed) == [
        "ERROR: failed to pull data from the cloud - Checkout failed for following targets:"]
    failed_targets = printed.split("following targets:\n")[1].split("\nIs your cache")[0]
    assert "data/predictions/it2.parquet" in failed_targets.splitlines()
    assert not (b / "data/predictions/it2.parquet").exists()  # no half-written file
    assert matches_lock(b, "models/it2/policy", lock_outs(b)["models/it2/policy"])
    # A's push notices the object is gone (it asks the remote, not a local index).
    assert "1 file pushed" in run("dvc", "push", *WITH_DEPS, cwd=a).stdout
    run("dvc", "pull", *WITH_DEPS, cwd=b)
    assert all(matches_lock(b, path, want) for path, want in lock_outs(b).items())


def test_a_push_killed_halfway_then_run_again(team, s3):
    a = team["a"]
    before = snapshot(a)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": REGION, "AWS_MAX_ATTEMPTS": RETRIES,
           "AWS_CONFIG_FILE": str(a.parent / "aws-none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(a.parent / "aws-none")}
    with s3.uploads_held_after(10) as gate:
        push = subprocess.Popen(["dvc", "push", "--run-cache", *WITH_DEPS], cwd=a, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            assert gate.held.wait(120), "the push never reached its 11th upload"
        finally:
            os.killpg(push.pid, signal.SIGKILL)
            push.wait()
    halfway = s3.keys(BUCKET)
    assert len(halfway) == 10
    assert snapshot(a) == before
    run("dvc", "push", "--run-cache", *WITH_DEPS, cwd=a)
    everything = s3.keys(BUCKET)
    assert set(halfway) < set(everything)
    assert snapshot(a) == before
    b = clone(team, "b-killed")
    run("dvc", "pull", *WITH_DEPS, cwd=b)
    for path in lock_outs(b):
        for file in ([a / path] if (a / path).is_file() else sorted((a / path).rglob("*"))):
            if file.is_file():
                mine = b / file.relative_to(a)
                assert mine.read_bytes() == file.read_bytes(), mine
