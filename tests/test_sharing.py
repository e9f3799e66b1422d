"""Sharing a run through an S3 remote: a colleague reuses it instead of recomputing it.

Two clones of one git repository (a bare git remote in a temp dir) and an S3 remote served
by moto on 127.0.0.1 (tests/s3.py), one server per module. A runs the tiny pipeline through
iteration 2's adapter and its evaluation, and an experiment (``or_weight=1.0``) of iteration
1's adapter, and pushes, once per module; a copy of that bucket made on the server restores it
before each test, so every test starts from A's push whatever ran before it (the fault tests
empty the bucket or delete objects from it).

For speed everything runs in this process: DVC's own CLI (`dvc.cli.main`), the sharing
commands (`python -m sipf.share`, through click's runner) and the stage commands DVC starts
(`sipf ...`, run by `sipf.cli` here instead of a new Python that imports torch for each).
Nothing of DVC is mocked but the line that starts a stage's process; S3 is reached over HTTP.
The killed push runs `python -m sipf.share push` as a real process, to kill it.

The faults (remote down before and during a push, and during a pull; bad credentials on push
and pull; objects missing on the remote; a push killed halfway) each give one line naming
the remote or the outputs and exit status 1, change nothing in the workspace or the local
cache, and a retry completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.helpers import tiny_params

pytest.importorskip("moto.server", reason="moto[server] is not installed (the dev extra)")
pytest.importorskip("dvc_s3", reason="dvc-s3 is not installed (dvc[s3])")
from tests.s3 import KEY_ID, REGION, SECRET, S3Server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUCKET, REMOTE = "sipf", "shared"
PUSHED = "sipf-pushed"  # A's push, kept on the server: each test starts from it
URL = f"s3://{BUCKET}/store"
# The smallest run with iteration 2's adapter and an evaluation of it (the adapter test
# compares B's evaluation with A's); iteration 1's evaluation and the controls are left out.
TARGETS = ("evaluate_it@it2",)
# Pushed and pulled: the target and every stage it depends on (the stages left out have no
# outputs to move, and a pull without targets fails on them).
WITH_DEPS = ("--with-deps", *TARGETS)
# The loop in seconds: a model trained for seconds never answers right, so pairs are made by
# any reward gap (require_outcome: false), as in tests/test_loop_stages.py.
# SFT's accuracy probes are off (its curve is then empty): nothing here reads them.
LOOP = {"sft": {"accuracy_every": 0.0, "stop_at_accuracy": 0.0},
        "simulate": {"k": 2, "max_paths": 0, "max_new_tokens": 16, "batch_size": 16},
        "prm": {"epochs": 1, "batch_size": 8, "val_fraction": 0.25},
        "prefs": {"margin": 1e-9, "require_outcome": False},
        "align": {"max_steps": 2, "batch_size": 4, "logging_steps": 1},
        "sample": {"question_limit": 3, "per_round": 2, "max_rounds": 1, "max_new_tokens": 16},
        "evaluate": {"batch_size": 4, "max_new_tokens": 16}}
# botocore retries a refused connection with backoff, per request: 2 attempts keep a fault
# test to seconds (docs/sharing.md measures its default of 5).
ENV = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": REGION,
       "AWS_MAX_ATTEMPTS": "2", "AWS_EC2_METADATA_DISABLED": "true", "DVC_NO_ANALYTICS": "1",
       "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "GIT_AUTHOR_NAME": "sipf", "GIT_AUTHOR_EMAIL": "sipf@localhost",
       "GIT_COMMITTER_NAME": "sipf", "GIT_COMMITTER_EMAIL": "sipf@localhost"}

STAGES_RUN: list[str] = []  # what DVC started since the last `stages_run`


@contextmanager
def inside(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _run_stage_here(executable, cmd: str, cwd: str, env: dict, **kwargs) -> None:
    """What DVC calls to run a stage's command (dvc.stage.run._run): a `sipf` command runs
    in this process, as tests/helpers.run does; anything else as DVC would."""
    from click.testing import CliRunner
    from dvc.stage.exceptions import StageCmdFailedError

    from sipf.cli import main

    argv = shlex.split(cmd)
    if argv[0] != "sipf":
        return _DVC_RUN(executable, cmd, cwd=cwd, env=env, **kwargs)
    STAGES_RUN.append(env["DVC_STAGE"])
    with inside(Path(cwd)):
        result = CliRunner().invoke(main, argv[1:])
    if result.exit_code != 0:
        print(result.output, file=sys.stderr)
        raise StageCmdFailedError(cmd, result.exit_code) from result.exception


_DVC_RUN = None


def _fresh_clients() -> None:
    """s3fs keeps one client per set of arguments, and so the credentials and connections of
    the first command: a command in a new process starts with none."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def dvc(*args: str, cwd: Path, check: bool = True) -> int:
    """`dvc ARGS` in ``cwd``, in this process; its exit status."""
    from dvc.cli import main
    from dvc.ui import ui

    _fresh_clients()
    with inside(cwd):
        code = main(list(args))
    ui._enabled = False  # main() turns DVC's console on for the process; a new one starts off
    assert not check or code == 0, f"dvc {' '.join(args)} in {cwd}: exit status {code}"
    return code


def stages_run(*args: str, cwd: Path) -> list[str]:
    """The stages a `dvc ARGS` (repro, exp run) ran, in order."""
    STAGES_RUN.clear()
    dvc(*args, cwd=cwd)
    return list(STAGES_RUN)


def share(*args: str, cwd: Path):
    """`python -m sipf.share ARGS` in ``cwd``, in this process: the click Result."""
    from click.testing import CliRunner

    from sipf.share import main

    _fresh_clients()
    with inside(cwd):
        return CliRunner().invoke(main, list(args))


def shared(*args: str, cwd: Path) -> str:
    done = share(*args, cwd=cwd)
    assert done.exit_code == 0, done.output
    return done.output


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


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


def all_match(root: Path) -> bool:
    return all(matches_lock(root, path, want) for path, want in lock_outs(root).items())


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The module's environment: S3 credentials for moto and never the user's own AWS
    profile, and stage commands run in this process."""
    global _DVC_RUN
    import dvc.stage.run

    none = tmp_path_factory.mktemp("aws") / "none"
    none.write_text("")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENV.items():
            patch.setenv(name, value)
        for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            patch.setenv(name, str(none))
        patch.delenv("AWS_PROFILE", raising=False)
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        _DVC_RUN = dvc.stage.run._run
        patch.setattr(dvc.stage.run, "_run", _run_stage_here)
        yield


@pytest.fixture(scope="module")
def s3_server(env):
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def published(team, s3_server):
    """A's push of the run (its outputs, the run cache and the outputs the entries restore)
    to an empty bucket, once per module, copied on the server to PUSHED; the push's line and
    every object it left on the remote (key -> MD5)."""
    s3_server.reset()
    for bucket in (BUCKET, PUSHED):
        s3_server.client().create_bucket(Bucket=bucket)
    line = shared("push", *WITH_DEPS, cwd=team["a"])
    s3_server.mirror(BUCKET, PUSHED)
    return {"line": line, "objects": s3_server.objects(PUSHED)}


@pytest.fixture()
def s3(s3_server, published):
    """The server up, authentication off, and the bucket holding exactly A's push: restored
    from PUSHED on the server before every test (state reset between tests, as DVC's S3
    plugin does in its fixtures), and the server up again after a test that stopped it."""
    if not s3_server.running:
        s3_server.start()
    s3_server.auth_off()
    s3_server.mirror(PUSHED, BUCKET)
    yield s3_server
    if not s3_server.running:
        s3_server.start()
    s3_server.auth_off()


@pytest.fixture(scope="module")
def team(tmp_path_factory, s3_server):
    """A's run: a git repository pushed to a bare remote, the S3 remote in .dvc/config
    (endpoint only; the credentials come from the environment), the pipeline run and
    committed, then an experiment with or_weight=1.0 of iteration 1's adapter, run and kept
    as an experiment ref while A's workspace goes back to its commit."""
    root = tmp_path_factory.mktemp("team")
    origin, a = root / "origin.git", root / "a"
    git("init", "-q", "--bare", "-b", "main", str(origin), cwd=root)
    a.mkdir()
    shutil.copytree(REPO / "sipf", a / "sipf", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", a)
    tiny_params(a / "params.yaml", **LOOP)
    params = yaml.safe_load((a / "params.yaml").read_text())
    params["loop"] = {name: params["loop"][name] for name in ("it1", "it2")}
    (a / "params.yaml").write_text(yaml.safe_dump(params))
    git("init", "-q", "-b", "main", cwd=a)
    dvc("init", "-q", cwd=a)
    dvc("remote", "add", "-q", "-d", REMOTE, URL, cwd=a)
    dvc("remote", "modify", REMOTE, "endpointurl", s3_server.url, cwd=a)
    git("add", "-A", cwd=a)
    git("commit", "-qm", "init", cwd=a)
    ran = stages_run("repro", *TARGETS, cwd=a)
    git("add", "-A", cwd=a)
    git("commit", "-qm", "run", cwd=a)
    git("remote", "add", "origin", str(origin), cwd=a)
    git("push", "-q", "origin", "main", cwd=a)
    exp_ran = stages_run("exp", "run", "-n", "or1", "-S", "or_weight=1.0", "align@it1", cwd=a)
    exp_lock = yaml.safe_load(git("show", "refs/exps/" + _exp_ref(a, "or1") + ":dvc.lock", cwd=a))
    git("checkout", "-q", "--", ".", cwd=a)
    dvc("checkout", "-q", "--with-deps", *TARGETS, cwd=a)
    assert git("status", "--porcelain", cwd=a) == ""
    return {"root": root, "origin": origin, "a": a, "ran": ran, "exp_ran": exp_ran,
            "exp_lock": exp_lock}


def _exp_ref(repo: Path, name: str) -> str:
    refs = git("for-each-ref", "--format=%(refname)", "refs/exps", cwd=repo)
    ref = next(line for line in refs.splitlines() if line.endswith("/" + name))
    return ref.removeprefix("refs/exps/")


def exp_out(team, path: str) -> str:
    """The hash the experiment's dvc.lock records for ``path``."""
    return next(out["md5"] for stage in team["exp_lock"]["stages"].values()
                for out in stage.get("outs", []) if out["path"] == path)


def clone(team, name: str) -> Path:
    b = team["root"] / name
    shutil.rmtree(b, ignore_errors=True)
    git("clone", "-q", str(team["origin"]), str(b), cwd=team["root"])
    return b


def where(s3: S3Server) -> str:
    """How the commands name the remote."""
    return f"remote '{REMOTE}' ({URL} at {s3.url})"


def test_a_runs_the_loop_through_iteration_2(team):
    assert team["ran"] == ["inputs", "prepare", "base", "sft", "verifier", *(f"{stage}@it{k}" for k in (1, 2) for stage in (
        "sample", "simulate", "train_prm", "score", "prefs", "align")), "evaluate_it@it2"]
    assert team["exp_ran"] == ["inputs", "align@it1"]


def test_b_pulls_every_output_and_repro_runs_no_stage(team, s3, published):
    pushed = published["line"]  # A's push to the empty bucket
    assert re.fullmatch(rf"\d+ files pushed to {re.escape(where(s3))} \(\d+ run-cache entries\)\n",
                        pushed), pushed
    assert int(pushed.split()[0]) > 25
    assert any(key.startswith("store/runs/") for key in s3.keys(BUCKET))  # the run cache

    b = clone(team, "b")
    assert shared("pull", *WITH_DEPS, cwd=b).endswith(f" files pulled from {where(s3)}\n")
    outs = lock_outs(b)
    assert len(outs) > 25
    assert [path for path, want in outs.items() if not matches_lock(b, path, want)] == []
    assert stages_run("repro", *TARGETS, cwd=b) == ["inputs"]  # always run: it hashes inputs
    assert git("status", "--porcelain", cwd=b) == ""


def test_b_pulls_only_iteration_2s_adapter_and_evaluates_it_to_a_s_metrics(team, s3):
    from tests.helpers import run as sipf

    a = team["a"]
    b = clone(team, "b-adapter")
    # The adapter, the model it is a LoRA of (models/it2/policy/parent.json), the base model
    # directory (its tokenizer) and the questions.
    shared("pull", "models/it2/policy", "models/sft", "models/base", "data/prepared", cwd=b)
    for absent in ("models/it1/policy", "models/it1/prm", "models/it2/prm", "data/it1/samples.parquet",
                   "data/it2/prefs.parquet", "data/predictions/it2.parquet"):
        assert not (b / absent).exists(), absent
    with inside(b):
        evaluated = sipf("evaluate", "--model", "models/it2/policy", "--name", "it2")
    assert evaluated.exit_code == 0, evaluated.output
    assert "train_runtime" not in evaluated.output  # nothing trained
    assert not (b / "models/it1/policy").exists()
    for path in ("metrics/eval/it2.json", "data/predictions/it2.parquet"):
        assert (b / path).read_bytes() == (a / path).read_bytes(), path
    assert git("status", "--porcelain", cwd=b) == ""  # A's metrics, to the byte

    # The same adapter outside the project: plain transformers + PEFT.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from sipf.config import load_params
    from sipf.models import load_policy

    base = AutoModelForCausalLM.from_pretrained(b / "models/sft")
    outside = PeftModel.from_pretrained(base, b / "models/it2/policy").eval()
    with inside(b):
        inner = load_policy("models/it2/policy", "models/base", load_params().model).eval()
    plain = AutoModelForCausalLM.from_pretrained(b / "models/sft").eval()
    ids = torch.tensor([[1, 5, 9, 12, 7, 3]])
    with torch.no_grad():
        assert torch.equal(outside(ids).logits, inner(ids).logits)
        assert not torch.equal(outside(ids).logits, plain(ids).logits)  # the adapter matters


def test_b_flips_a_param_to_a_run_of_a_and_back_from_the_run_cache(team, s3):
    """A ran or_weight 0.1 and 1.0 (the experiment); B, with the run cache, gets either back
    from the remote without recomputing (`dvc repro --pull` fetches what an entry restores,
    which `push` put there)."""
    a = team["a"]
    b = clone(team, "b-runcache")
    shared("pull", *WITH_DEPS, cwd=b)  # with the run cache
    params = (b / "params.yaml").read_text()
    assert "or_weight: 0.1\n" in params
    exp_adapter = exp_out(team, "models/it1/policy")
    for value, adapter in (("1.0", exp_adapter), ("0.1", lock_outs(a)["models/it1/policy"])):
        (b / "params.yaml").write_text(params.replace("or_weight: 0.1\n", f"or_weight: {value}\n"))
        assert stages_run("repro", "--pull", "align@it1", cwd=b) == ["inputs"]  # align restored
        assert lock_outs(b)["models/it1/policy"] == adapter
        assert matches_lock(b, "models/it1/policy", adapter)
    assert git("status", "--porcelain", cwd=b) == ""  # back to A's bytes


def test_an_experiment_travels_through_git_and_the_remote(team, s3):
    a = team["a"]
    dvc("exp", "push", "-q", "origin", "or1", cwd=a)  # its git ref and its outputs
    b = clone(team, "b-exp")
    dvc("exp", "pull", "-q", "--no-cache", "origin", "or1", cwd=b)  # the git ref
    assert _exp_ref(b, "or1")
    dvc("exp", "apply", "-q", "or1", cwd=b, check=False)  # its outputs are not here yet
    assert "or_weight: 1.0" in (b / "params.yaml").read_text()
    shared("pull", "models/it1/policy", cwd=b)  # its adapter, from the S3 remote
    want = exp_out(team, "models/it1/policy")
    assert want != lock_outs(a)["models/it1/policy"]  # another adapter than A's main run's
    assert lock_outs(b)["models/it1/policy"] == want and matches_lock(b, "models/it1/policy", want)


# ---- faults: one line, exit status 1, nothing changed, a retry completes -------------------

def test_push_while_the_remote_is_down_then_again(team, s3, published):
    a = team["a"]
    s3.empty(BUCKET)
    before = snapshot(a)
    s3.stop()
    failed = share("push", *WITH_DEPS, cwd=a)
    # That one line on stderr, nothing on stdout.
    assert (failed.exit_code, failed.stdout, failed.stderr) == (
        1, "", f"error: push: cannot reach {where(s3)}; nothing was pushed\n")
    assert snapshot(a) == before
    s3.start()
    assert s3.objects(BUCKET) == {}
    shared("push", *WITH_DEPS, cwd=a)
    assert s3.objects(BUCKET) == published["objects"]  # all of A's push, as pushed at first
    assert snapshot(a) == before


def test_the_remote_goes_down_during_a_push_then_again(team, s3, published):
    a = team["a"]
    s3.empty(BUCKET)
    before = snapshot(a)
    results: list = []
    with s3.uploads_held_after(10) as gate:
        pushing = threading.Thread(target=lambda: results.append(share("push", *WITH_DEPS, cwd=a)))
        pushing.start()
        assert gate.held.wait(60), "the push never reached its 11th upload"
        s3.stop()  # answers the held upload 503, then refuses every connection
        pushing.join(120)
    failed, = results
    assert (failed.exit_code, failed.output) == (
        1, f"error: push: cannot reach {where(s3)} midway; run the push again to complete it\n")
    assert snapshot(a) == before
    s3.start()
    assert len(s3.objects(BUCKET)) == 10
    shared("push", *WITH_DEPS, cwd=a)
    assert s3.objects(BUCKET) == published["objects"]  # all of A's push, as pushed at first


def test_pull_while_the_remote_is_down_then_again(team, s3):
    b = clone(team, "b-down")
    before = snapshot(b)
    s3.stop()
    failed = share("pull", *WITH_DEPS, cwd=b)
    assert (failed.exit_code, failed.output) == (
        1, f"error: pull: cannot reach {where(s3)}; nothing was pulled\n")
    assert snapshot(b) == before  # nothing half-written, nothing removed
    s3.start()
    shared("pull", *WITH_DEPS, cwd=b)
    assert all_match(b)


def test_bad_credentials(team, s3, published, monkeypatch):
    a = team["a"]
    s3.empty(BUCKET)
    key_id, secret = s3.iam_user(BUCKET)  # authentication on: only this key pair works
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    b = clone(team, "b-creds")
    refused = (f"{where(s3)} refused the credentials (check AWS_ACCESS_KEY_ID and "
               "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials)")
    before_a, before_b = snapshot(a), snapshot(b)
    failed = share("push", *WITH_DEPS, cwd=a)
    assert (failed.exit_code, failed.output) == (1, f"error: push: {refused}; nothing was pushed\n")
    failed = share("pull", *WITH_DEPS, cwd=b)
    assert (failed.exit_code, failed.output) == (1, f"error: pull: {refused}; nothing was pulled\n")
    assert (snapshot(a), snapshot(b)) == (before_a, before_b)
    assert s3.keys(BUCKET, key_id, secret) == {}
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    shared("push", *WITH_DEPS, cwd=a)
    assert s3.keys(BUCKET, key_id, secret).keys() == published["objects"].keys()
    shared("pull", *WITH_DEPS, cwd=b)
    assert all_match(b)


def test_objects_missing_on_the_remote(team, s3):
    """A file output and one file of a directory output deleted from the remote: the pull
    names both and fetches nothing (a directory's listing is read, not stored)."""
    a = team["a"]
    gone = ("data/predictions/it2.parquet", "models/it2/policy/adapter_model.safetensors")
    for path in gone:
        oid = md5(a / path)
        s3.client().delete_object(Bucket=BUCKET, Key=f"store/files/md5/{oid[:2]}/{oid[2:]}")
    b = clone(team, "b-missing")
    before = snapshot(b)
    failed = share("pull", *WITH_DEPS, cwd=b)
    assert (failed.exit_code, failed.output) == (
        1, f"error: pull: {where(s3)} lacks {', '.join(gone)}; nothing was pulled (push it "
           "again from a clone that has it, or pull other targets)\n")
    assert snapshot(b) == before
    # A's push notices the objects are gone (it asks the remote, not a local index).
    shared("push", *WITH_DEPS, cwd=a)
    keys = s3.keys(BUCKET)
    assert all(f"store/files/md5/{md5(a / p)[:2]}/{md5(a / p)[2:]}" in keys for p in gone)
    shared("pull", *WITH_DEPS, cwd=b)
    assert all_match(b)


def test_a_push_killed_halfway_then_run_again(team, s3, published):
    a = team["a"]
    s3.empty(BUCKET)
    before = snapshot(a)
    with s3.uploads_held_after(10) as gate:
        push = subprocess.Popen([sys.executable, "-m", "sipf.share", "push", *WITH_DEPS], cwd=a,
                                env={**os.environ, "PYTHONPATH": str(REPO)},
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
    shared("push", *WITH_DEPS, cwd=a)
    everything = s3.keys(BUCKET)
    assert set(halfway) < set(everything)
    assert s3.objects(BUCKET) == published["objects"]
    assert snapshot(a) == before
    b = clone(team, "b-killed")
    shared("pull", *WITH_DEPS, cwd=b)
    for path in lock_outs(b):
        for file in ([a / path] if (a / path).is_file() else sorted((a / path).rglob("*"))):
            if file.is_file():
                mine = b / file.relative_to(a)
                assert mine.read_bytes() == file.read_bytes(), mine
