"""Run untrusted, model-written Python programs against our tests and return a verdict.

``judge(program, tests)`` runs a program in its own fresh interpreter (``python -I -S`` in a new
session, cwd/HOME/TMPDIR a private scratch directory) and returns a :class:`Verdict`;
``judge_many`` judges a batch on a pool of worker processes. Linux only, standard library
only. This package is the parent side; the child side is ``runner.py``, whose text the child
runs (``python -I -S -c``) without importing anything from sipf.

Threat model: the program is hostile. It may loop, fork-bomb, eat memory, flood output, write
or read files through any call (``ctypes`` included), open sockets, signal its parent, exit
early, patch builtins, modules or the test's helpers, walk the stack to the runner, print
"passed" or try to forge the result. Our tests, ``setup`` code and ``trusted`` code are
trusted. The defences, strongest first:

1. **Comparisons never run in the sandbox** (how a verdict is made unforgeable). Each
   ``assert`` test is split by its AST: every smallest sub-expression that uses a program name
   (``f(3)``; with a builtin wrapper, ``sorted(f(3))``; in a truth context, ``bool(f(3))``) is
   a *probe*, evaluated in the child; only its value comes back, as plain data (None, bool,
   int, float, complex, str, bytes, list, tuple, dict, set; subclasses read through their base
   type, so an always-true ``__eq__`` is not carried over; an iterator as the list it yields,
   read back as an iterator). The parent evaluates the rest of the assert (``== 8``,
   ``math.isclose(_, 1.5)``) itself with the real builtins. A test that is not plain asserts
   but needs nothing of the program except its entry point (HumanEval's ``check(candidate)``
   block) is a *parent test*: it runs here, in a fresh namespace with the real builtins and
   the job's ``trusted`` code (HumanEval's original prompt: its imports and helpers such as
   ``poly``, ``encode_cyclic``), and ``candidate`` is a proxy: each call sends its arguments to
   the child as data, the child calls the program's function and sends the result back by
   value. So patching ``math``, ``abs``, the helpers or ``check`` in the child, catching the
   assert, ``sys.exit(0)``, ``atexit``, printing a marker or result objects with a faked
   ``__eq__``/``__sub__`` cannot turn a wrong answer into a pass: the only way to pass is to
   produce the right values. Arguments that are not data fail the test as "unsupported
   argument". Only a test that needs other program names (none in MBPP or HumanEval) is
   *opaque*: it runs in the child and passes by the runner's "ok" record, which a program that
   walks the stack to the runner's key can forge.
2. **Result records are authenticated.** The child reports on a pipe of its own (not stdout),
   one ``<mac> <json>`` line per result, MAC'd with a per-job BLAKE2b key that the runner reads
   from a job file and deletes before any program code runs. Every callable the runner uses
   after program code has started is bound beforehand. A bad MAC, bad JSON or an unexpected
   record shape fails the job as "tampered". (A program that walks the stack can still find
   the key; with probes and parent tests that only lets it report values it could have
   returned.)
3. **The kernel contains the process**, whatever it does. The child gets new **mount, PID,
   network** (a down loopback) and **IPC** namespaces (in a new user namespace when not root),
   and a filesystem view built for it (``runner.build_root``): a fresh tmpfs root holding only
   read-only binds of the system directories (/usr, /etc, /bin, /lib...), the interpreter's
   standard library (its site-packages replaced by an empty read-only tmpfs), five devices
   (null, zero, full, random, urandom), a read-only /proc of its own PID namespace, and empty
   size-limited private tmpfs on /tmp, /var/tmp, /dev/shm and the scratch dir, the only
   writable places. The runner enters it with ``pivot_root`` and detaches the old root, so
   writes by any call (mkfifo, mknod, AF_UNIX bind, sqlite3, ctypes...) land in tmpfs that
   vanish with the job, and nothing else exists there to read: not the project, the
   benchmark data, home directories, caches or third-party packages. **As root** it also runs
   as a random throwaway uid that owns nothing (the kernel refuses its signals to our
   processes and enforces ``max_processes`` exactly: RLIMIT_NPROC does not apply to uid 0).
   Then RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE=0,
   RLIMIT_NPROC, ``PR_SET_NO_NEW_PRIVS`` and no capabilities; a wall-clock timeout over the
   whole job (parent tests included) that kills the whole tree; capped reads of stdout,
   stderr and results. A trusted supervisor process stays between us and the program as a
   *child subreaper* outside the PID namespace; when the namespace's init exits, the kernel
   kills every process in it.
4. **An audit hook** (``sys.addaudithook``) refuses sockets, running programs, ctypes, new
   audit hooks, settrace/setprofile, gc referrer walks, ``sys._current_frames``, signals to
   other processes, ``/proc/*/mem`` and writes outside scratch. Defence in depth only: the
   tests check every containment above with the hook removed.

**Fail closed.** Where the kernel refuses the namespaces or the mounts, :func:`judge` and
:func:`judge_many` raise :class:`SandboxUnavailable` before running anything, naming what was
refused and how to allow it (checked once per process by judging a trivial job); there is no
weaker fallback. Not enforced: non-root, the program runs as our uid in its user namespace
(only what the view shows is reachable, all read-only but the tmpfs) and RLIMIT_NPROC is our
user's current task count + ``max_processes``. A parent test's own computation on the
program's values runs in our process, bounded by the data's size cap (4 MB) but checked against
the deadline only at each call. Mutations of an argument by the program are not seen by the
test (the child has a copy). Results that are not plain data or iterators (class instances)
fail as "unsupported result", unless an assert only needs their truth value.
"""

from __future__ import annotations

import ast
import builtins
import concurrent.futures
import functools
import hashlib
import hmac
import importlib
import json
import logging
import math
import multiprocessing
import os
import random
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sipf.code.sandbox import runner

_log = logging.getLogger(__name__)

# Throwaway uids for root mode come from here; no real account or file should use them.
SANDBOX_UIDS = range(1_500_000_000, 2_000_000_000)

# Names a test may use that always mean the real thing, resolved in the parent: builtins and
# these stdlib modules (a program cannot shadow them to fake the expected side of an assert).
TRUSTED_MODULES = frozenset({"math", "cmath", "re", "string", "collections", "itertools",
                             "functools", "operator", "heapq", "bisect", "fractions", "decimal",
                             "statistics"})
# One-argument builtins that may wrap a probe and are evaluated in the child along with it, so
# e.g. `list(gen(3))` works although a generator cannot be sent back as data.
_LIFTED = frozenset({"list", "tuple", "set", "frozenset", "sorted", "dict", "str", "repr", "len",
                     "int", "float", "bool", "abs", "sum", "min", "max", "any", "all", "round"})
# Constructs whose names are scoped inside the expression: such asserts run opaque.
_SCOPED = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
           ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)
_RECORD_LIMIT = 4 * 1024 * 1024  # bytes of result records read from the child
_DRAIN_S = 0.5  # how long to keep reading pipes after the tree is killed
_ENABLE_HINT = (
    "The sandbox needs new mount, PID, network and IPC namespaces and refuses to run programs "
    "without them (a verdict without isolation would mean nothing). Run as root (in a "
    "container: with CAP_SYS_ADMIN and a seccomp/AppArmor profile that allows unshare and "
    "mount, e.g. docker run --cap-add SYS_ADMIN --security-opt seccomp=unconfined), or allow "
    "unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1, "
    "user.max_user_namespaces > 0, and on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0.")


class SandboxUnavailable(RuntimeError):
    """This machine cannot give the sandbox its isolation: nothing is judged (fail closed)."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of one program: ``reason`` is "passed", "failed: AssertionError at test 2"
    (tests count from 1), "failed: ZeroDivisionError at test 1", "failed: unsupported result
    (X) at test 1", "failed: unsupported argument (X) at test 1", "timeout", "memory",
    "output limit", "exited early", "crashed: NameError", "crashed: signal SIGSEGV",
    "tampered", or "sandbox error: ..."; ``detail`` is a short human hint (the failing test,
    an exception message)."""

    passed: bool
    reason: str
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class Job:
    """One program and its tests, for :func:`judge_many`. ``setup`` is trusted code run in the
    child after the program (MBPP's ``test_setup_code``); ``entry_point`` names the function
    under test when it shadows a builtin (MBPP task 126 defines ``sum``); ``trusted`` is trusted
    code that tests run in the parent may use (HumanEval's original prompt: its imports and
    helpers such as ``poly``), never the program's copy of it."""

    program: str
    tests: tuple[str, ...]
    setup: str = ""
    entry_point: str | None = None
    trusted: str = ""


def judge(program: str, tests: Sequence[str], timeout_s: float = 3.0, memory_mb: int = 512, *,
          setup: str = "", entry_point: str | None = None, trusted: str = "",
          output_limit: int = 64 * 1024, disk_mb: int = 16, max_processes: int = 4,
          cpu_s: int | None = None, scratch_root: str | os.PathLike[str] | None = None) -> Verdict:
    """Run ``program``, then ``setup``, then ``tests`` (Python statements, normally ``assert``
    lines) in a fresh sandboxed interpreter. A test that is not plain asserts and needs only
    ``entry_point`` (HumanEval's ``check`` block) runs here instead, after ``trusted`` code
    (the helpers it may use), calling the program's function in the child by value.

    ``timeout_s`` is wall clock for the whole child (start-up and parent tests included); ``cpu_s`` its CPU time
    (default: ``timeout_s`` rounded up); ``memory_mb`` its address space; ``output_limit``
    caps stdout and stderr, each; ``disk_mb`` caps each written file (and the private scratch
    tmpfs); ``max_processes`` caps the program's processes plus threads, itself included (exact
    under the throwaway uid; otherwise added to our user's current count). ``scratch_root``:
    where the scratch directory is made (default: the system temp dir).

    Raises :class:`SandboxUnavailable`, before running anything, when the kernel refuses the
    isolation (checked once per process)."""
    _require_sandbox()
    return _judge(program, tests, timeout_s, memory_mb, setup=setup, entry_point=entry_point,
                  trusted=trusted, output_limit=output_limit, disk_mb=disk_mb,
                  max_processes=max_processes, cpu_s=cpu_s, scratch_root=scratch_root)


def _judge(program: str, tests: Sequence[str], timeout_s: float = 3.0, memory_mb: int = 512, *,
           setup: str = "", entry_point: str | None = None, trusted: str = "",
           output_limit: int = 64 * 1024,
           disk_mb: int = 16, max_processes: int = 4, cpu_s: int | None = None,
           scratch_root: str | os.PathLike[str] | None = None) -> Verdict:
    started = time.monotonic()
    helpers = _defined_names(ast.parse(trusted))
    plans = [_plan_test(source, entry_point, helpers) for source in tests]
    key = secrets.token_bytes(32)
    scratch = Path(tempfile.mkdtemp(prefix="sipf-sandbox-", dir=scratch_root)).resolve()
    try:
        uid = _throwaway_uid(scratch)
        job = {"program": program, "setup": setup, "key": key.hex(), "uid": uid,
               "scratch": str(scratch), "expose": _interpreter_dirs(),
               "entry_point": entry_point,
               "tests": [plan.child_spec() for plan in plans],
               "limits": {"cpu_s": cpu_s or max(1, math.ceil(timeout_s)),
                          "memory_mb": memory_mb,
                          "disk_mb": disk_mb, "max_processes": max_processes}}
        job_path = scratch / ".job.json"
        with open(os.open(job_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            json.dump(job, f)
        serve = functools.partial(_serve, plans, trusted, entry_point)
        outcome = _run_child(scratch, job_path, timeout_s, output_limit, uid, key, serve)
    finally:
        _remove_tree(scratch)
    passed, reason, detail = _decide(plans, outcome)
    return Verdict(passed, reason, round(time.monotonic() - started, 4), detail)


def judge_many(jobs: Iterable[Job | tuple[str, Sequence[str]]], workers: int = 2,
               **options) -> list[Verdict]:
    """Judge many jobs on ``workers`` worker processes; verdicts come back in input order.
    ``options`` are :func:`judge`'s keyword arguments (limits), shared by all jobs. With
    ``workers <= 1`` the jobs run one after another in this process."""
    normalized = [job if isinstance(job, Job) else Job(job[0], tuple(job[1])) for job in jobs]
    _require_sandbox()  # here, not in each worker: one clear error before anything runs
    if workers <= 1 or len(normalized) <= 1:
        return [_judge_job(job, options) for job in normalized]
    # spawn: the workers do not inherit this process's threads/locks (e.g. torch's).
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(_judge_job, normalized, [options] * len(normalized)))


def isolation() -> dict[str, bool]:
    """What the kernel gives the sandbox here: ``throwaway_uid`` (we are root and may use any
    uid) and ``namespaces`` (the whole sandbox can be set up: without it nothing is judged)."""
    with tempfile.TemporaryDirectory() as directory:
        throwaway = _throwaway_uid(Path(directory)) is not None
    return {"throwaway_uid": throwaway, "namespaces": _refusal() is None}


def _require_sandbox() -> None:
    refusal = _refusal()
    if refusal is not None:
        raise SandboxUnavailable(f"the sandbox cannot be set up here: {refusal}. {_ENABLE_HINT}")


@functools.cache
def _refusal() -> str | None:
    """Why the sandbox cannot be set up here (what the kernel refused), or None: a trivial job
    run once per process, through the very setup every job goes through."""
    verdict = _judge("", ["assert True"], timeout_s=30.0)
    if verdict.reason.startswith("sandbox error: "):
        return verdict.reason.removeprefix("sandbox error: ")
    return None


def _judge_job(job: Job, options: Mapping[str, object]) -> Verdict:
    return _judge(job.program, job.tests, setup=job.setup, entry_point=job.entry_point,
                  trusted=job.trusted, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Planning: split each test into probes (run in the child) and a check (run here).


class _ProbeFailed(BaseException):
    """A probe or a call raised in the child, or a value could not be sent as data. A
    BaseException, so that a test's ``except Exception`` cannot swallow it."""

    def __init__(self, error: str, message: str = "") -> None:
        super().__init__(error)
        self.error = error
        self.message = message


class _ProbeMissing(BaseException):
    """The child never reported a probe or answered a call: it exited or was killed before, or
    the run stopped (timeout, output limit, tampering)."""


@dataclass
class _ProbeTest:
    """A test made only of asserts: ``checks`` are the asserts with each probe replaced by the
    name ``_sipf_probe_<j>``; ``probes`` are what the child evaluates."""

    checks: list[tuple[str, object]]  # (assert source, compiled rewritten expression)
    probes: list[dict[str, object]] = field(default_factory=list)
    modules: set[str] = field(default_factory=set)  # trusted modules the checks use

    def child_spec(self) -> dict[str, object]:
        return {"probes": self.probes}

    def outcome(self, index: int, records: _Records) -> tuple[str, str] | None:
        """None if every assert holds, else (reason, detail); raises _ProbeMissing."""
        scope = {"__builtins__": builtins}
        scope.update({name: importlib.import_module(name) for name in self.modules})
        values = _ProbeValues(index, records)
        for source, code in self.checks:
            try:
                holds = eval(code, scope, values)  # noqa: S307 - our own test, plain data
            except _ProbeMissing:
                raise
            except _ProbeFailed as failure:
                return _error_reason(failure.error, f"at test {index + 1}"), failure.message
            except Exception as error:  # the test itself raised on the program's values
                return f"failed: {type(error).__name__} at test {index + 1}", str(error)[:300]
            if not holds:
                return f"failed: AssertionError at test {index + 1}", source
        return None


@dataclass
class _OpaqueTest:
    """A test that is not plain asserts: it runs in the child; passing needs an ok record."""

    source: str

    def child_spec(self) -> dict[str, object]:
        return {"code": self.source}

    def outcome(self, index: int, records: _Records) -> tuple[str, str] | None:
        error = records.test_errors.get(index)
        if error is not None:
            return _error_reason(error[0], f"at test {index + 1}"), error[1]
        if index in records.test_ok:
            return None
        raise _ProbeMissing


@dataclass
class _ParentTest:
    """A test that is not plain asserts but needs nothing of the program except its entry
    point (HumanEval's ``check(candidate)``): it runs here, with the trusted helpers and the
    real builtins, and the entry point is a :class:`_Candidate` whose calls the child answers
    by value. The child cannot reach the test, its helpers or its comparisons."""

    source: str

    def child_spec(self) -> dict[str, object]:
        return {"serve": True}

    def run(self, index: int, channel: _Channel, trusted: str,
            entry_point: str) -> tuple[str, str] | None:
        """None if the test passes, else (reason, detail); raises _ProbeMissing."""
        scope: dict[str, object] = {"__name__": "__main__", "__builtins__": builtins}
        state = random.getstate()  # tests may draw from `random`: keep our process's stream
        try:
            exec(compile(trusted, "<trusted>", "exec"), scope)  # noqa: S102 - dataset code
            scope[entry_point] = _Candidate(channel, index)
            exec(compile(self.source, "<test>", "exec"), scope)  # noqa: S102 - our test
        except _ProbeFailed as failure:
            return _error_reason(failure.error, f"at test {index + 1}"), failure.message
        except Exception as error:  # the test failed on the program's values
            return f"failed: {type(error).__name__} at test {index + 1}", str(error)[:300]
        finally:
            random.setstate(state)
        return None

    def outcome(self, index: int, records: _Records) -> tuple[str, str] | None:
        if index not in records.parent:
            raise _ProbeMissing
        return records.parent[index]


def _serve(plans: Sequence[_ProbeTest | _ParentTest | _OpaqueTest], trusted: str,
           entry_point: str, channel: _Channel) -> None:
    """Run the parent tests in order while the child runs, until one does not pass."""
    for index, plan in enumerate(plans):
        if isinstance(plan, _ParentTest):
            result = plan.run(index, channel, trusted, entry_point)
            channel.records.parent[index] = result
            if result is not None:
                return
            channel.send([index, None])  # the test is over: the child goes on


class _Candidate:
    """The entry point, as a parent test sees it: a call sends its arguments to the child as
    data, and returns the child's result as data (or raises _ProbeFailed)."""

    def __init__(self, channel: _Channel, test: int) -> None:
        self._channel = channel
        self._test = test

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self._channel.call(self._test, args, kwargs)


def _names(tree: ast.AST, kinds: tuple[type, ...]) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)
            and isinstance(node.ctx, kinds)}


def _used_names(tree: ast.AST) -> set[str]:
    return _names(tree, (ast.Load,))


def _defined_names(tree: ast.AST) -> set[str]:
    """Every name the code binds anywhere (assignments, defs, parameters, imports, except)."""
    names = _names(tree, (ast.Store, ast.Del))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def _plan_test(source: str, entry_point: str | None,
               helpers: set[str]) -> _ProbeTest | _ParentTest | _OpaqueTest:
    """A probe test if it is plain asserts; else a parent test if the only program name it
    needs is the entry point (``helpers``: names the trusted code defines); else opaque."""
    tree = ast.parse(source)
    if not tree.body or not all(isinstance(node, ast.Assert) for node in tree.body) or any(
            isinstance(node, _SCOPED) for node in ast.walk(tree)):
        free = _used_names(tree) - _defined_names(tree) - helpers - set(dir(builtins))
        if entry_point is not None and free <= {entry_point}:
            return _ParentTest(source)
        return _OpaqueTest(source)
    plan = _ProbeTest([])
    rewriter = _ProbeRewriter(entry_point, plan)
    for statement in tree.body:
        shown = ast.unparse(statement)  # before the rewriter edits the tree in place
        expression = ast.Expression(rewriter.visit(_truth_context(statement.test, rewriter)))
        code = compile(ast.fix_missing_locations(expression), "<test>", "eval")
        plan.checks.append((shown, code))
    return plan


def _truth_context(node: ast.expr, rewriter: _ProbeRewriter) -> ast.expr:
    """In ``assert f(x)`` or ``assert not f(x) or g(y)`` only the truth of each probe counts, so
    probe ``bool(f(x))``: an arbitrary object (a ``re.Match``) cannot come back as data, but
    its truth can, and it is the program's own answer either way."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        node.operand = _truth_context(node.operand, rewriter)
    elif isinstance(node, ast.BoolOp):
        node.values = [_truth_context(value, rewriter) for value in node.values]
    elif rewriter.liftable(node):
        return ast.copy_location(ast.Call(ast.Name("bool", ast.Load()), [node], []), node)
    return node


class _ProbeRewriter(ast.NodeTransformer):
    """Replaces each program-dependent sub-expression by a probe name (see module docs)."""

    def __init__(self, entry_point: str | None, plan: _ProbeTest) -> None:
        self.entry_point = entry_point
        self.plan = plan

    def is_program_name(self, name: str) -> bool:
        if name == self.entry_point:
            return True
        return not hasattr(builtins, name) and name not in TRUSTED_MODULES

    def visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.expr) and self.liftable(node):
            return self.probe(node)
        if isinstance(node, ast.Name) and node.id in TRUSTED_MODULES:
            self.plan.modules.add(node.id)
        return self.generic_visit(node)

    def rooted(self, node: ast.expr) -> bool:
        """`f`, `f(x)`, `f(x)[0]`, `obj.method(x).attr`: a chain starting at a program name."""
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return isinstance(node, ast.Name) and self.is_program_name(node.id)

    def liftable(self, node: ast.expr) -> bool:
        """A rooted chain, or a one-argument trusted builtin (`sorted`, `set`, ...) around one."""
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _LIFTED and not self.is_program_name(node.func.id)
                and len(node.args) == 1 and not node.keywords
                and not isinstance(node.args[0], ast.Starred)):
            return self.liftable(node.args[0])
        return self.rooted(node)

    def probe(self, node: ast.expr) -> ast.Name:
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        self.plan.probes.append({
            "expr": ast.unparse(node),
            "names": sorted(n for n in names if self.is_program_name(n)),
            "modules": sorted(n for n in names if n in TRUSTED_MODULES and n != self.entry_point),
        })
        return ast.copy_location(ast.Name(f"_sipf_probe_{len(self.plan.probes) - 1}",
                                          ast.Load()), node)


class _ProbeValues(Mapping[str, object]):
    """The locals of a check: probe names resolve to the child's values (or raise)."""

    def __init__(self, test: int, records: _Records) -> None:
        self.test = test
        self.records = records

    def __getitem__(self, name: str) -> object:
        if not name.startswith("_sipf_probe_"):
            raise KeyError(name)  # fall through to the check's globals and builtins
        record = self.records.probes.get((self.test, int(name.removeprefix("_sipf_probe_"))))
        if record is None:
            raise _ProbeMissing
        return _value(record)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _value(record: dict) -> object:
    """The value a probe or call record reports, decoded; raises _ProbeFailed for an error."""
    if "value" in record:
        try:
            return runner.decode(record["value"])
        except (ValueError, TypeError, KeyError, RecursionError):
            raise _ProbeFailed("unsupported result") from None
    if "unsupported" in record:
        raise _ProbeFailed(f"unsupported result ({record['unsupported']})")
    raise _ProbeFailed(str(record.get("error")), str(record.get("message", "")))


# ---------------------------------------------------------------------------------------------
# Deciding: records and exit status to a verdict.


# The fields each kind of result record has, exactly (anything else is tampering).
_SHAPES = [{"probe", "value"}, {"probe", "error", "message"}, {"probe", "unsupported"},
           {"call", "value"}, {"call", "error", "message"}, {"call", "unsupported"},
           {"test", "ok"}, {"test", "error", "message"}, {"stage", "error", "message"},
           {"setup_error"}, {"done"}]


@dataclass
class _Records:
    """The authenticated result records of one run, read as they arrive (:meth:`feed`), and
    the outcomes of the tests run in the parent."""

    key: bytes
    probes: dict[tuple[int, int], dict] = field(default_factory=dict)
    calls: dict[tuple[int, int], dict] = field(default_factory=dict)
    parent: dict[int, tuple[str, str] | None] = field(default_factory=dict)
    test_ok: set[int] = field(default_factory=set)
    test_errors: dict[int, tuple[str, str]] = field(default_factory=dict)
    stage_error: tuple[str, str, str] | None = None  # (stage, error, message)
    setup_error: str | None = None
    done: bool = False
    tampered: bool = False
    read: int = 0  # bytes of the record stream parsed so far

    @classmethod
    def parse(cls, data: bytes, key: bytes) -> _Records:
        records = cls(key)
        records.feed(data)
        return records

    def feed(self, data: bytes | bytearray) -> None:
        """Parse the complete lines ``<mac> <json>`` of ``data`` (the whole stream so far) not
        parsed yet; a line whose MAC, JSON or shape is wrong marks tampering. A last line
        without newline waits for more (or was cut by a kill)."""
        end = data.rfind(b"\n") + 1
        for line in bytes(data[self.read:end]).split(b"\n")[:-1]:
            mac, _, text = line.partition(b" ")
            expected = hashlib.blake2b(text, key=self.key, digest_size=16).hexdigest().encode()
            try:
                if not hmac.compare_digest(mac, expected):
                    raise ValueError("bad MAC")
                record = json.loads(text, object_pairs_hook=_unique_keys)
                if set(record) not in _SHAPES:
                    raise ValueError("bad shape")
                self.add(record)
            except (ValueError, TypeError, RecursionError):
                self.tampered = True
        self.read = max(self.read, end)

    def add(self, record: dict) -> None:
        # First record wins: a duplicate can only come from a forked copy of the runner.
        if "probe" in record:
            test, probe = record["probe"]
            self.probes.setdefault((int(test), int(probe)), record)
        elif "call" in record:
            test, number = record["call"]
            self.calls.setdefault((int(test), int(number)), record)
        elif "test" in record:
            if "error" in record:
                self.test_errors.setdefault(int(record["test"]),
                                            (str(record["error"]), str(record["message"])))
            else:
                self.test_ok.add(int(record["test"]))
        elif "stage" in record:
            if self.stage_error is None:
                self.stage_error = (str(record["stage"]), str(record["error"]),
                                    str(record["message"]))
        elif "setup_error" in record:
            self.setup_error = str(record["setup_error"])
        else:
            self.done = True


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


@dataclass
class _Outcome:
    returncode: int
    timed_out: bool
    output_limited: bool
    records: _Records
    stderr: bytes


def _decide(plans: Sequence[_ProbeTest | _ParentTest | _OpaqueTest],
            outcome: _Outcome) -> tuple[bool, str, str]:
    stderr_tail = outcome.stderr[-500:].decode(errors="replace")
    if outcome.timed_out:
        return False, "timeout", ""
    if outcome.output_limited:
        return False, "output limit", ""
    records = outcome.records
    if records.tampered:
        return False, "tampered", "a result record that the runner did not write"
    if records.setup_error is not None:
        # A verdict, not an exception: one job must not abort a batch. But say it loudly.
        _log.warning("sandbox could not be set up: %s", records.setup_error)
        return False, f"sandbox error: {records.setup_error}", stderr_tail
    if records.stage_error is not None:
        stage, error, message = records.stage_error
        return False, _error_reason(error, "", crashed=True), f"{stage}: {message}"
    for index, plan in enumerate(plans):
        try:
            failure = plan.outcome(index, records)
        except _ProbeMissing:
            return False, _exit_reason(outcome.returncode), stderr_tail
        if failure is not None:
            return False, failure[0], failure[1]
    if outcome.returncode != 0 or not records.done:
        return False, _exit_reason(outcome.returncode), stderr_tail
    return True, "passed", ""


def _error_reason(error: str, where: str, crashed: bool = False) -> str:
    """The reason for an exception named ``error`` raised by program code."""
    if error == "MemoryError":
        return "memory"
    if error == "SystemExit":
        return "exited early"
    if crashed:
        return f"crashed: {error}"
    return f"failed: {error} {where}".rstrip()


def _exit_reason(returncode: int) -> str:
    """Why a child that did not report every result stopped."""
    if returncode == -signal.SIGXCPU:
        return "timeout"  # the CPU-time limit (the wall clock is handled before)
    if returncode < 0:
        return f"crashed: signal {signal.Signals(-returncode).name}"
    return "exited early" if returncode == 0 else f"exited early (status {returncode})"


# ---------------------------------------------------------------------------------------------
# Running: spawn the child, read its pipes with caps and a deadline, kill the whole tree.


def _run_child(scratch: Path, job_path: Path, timeout_s: float, output_limit: int,
               uid: int | None, key: bytes, serve: Callable[[_Channel], None]) -> _Outcome:
    """Run the child; while it runs, ``serve`` runs the parent tests over a :class:`_Channel`.
    The deadline covers both."""
    read_end, write_end = os.pipe()  # records, child to parent
    calls_read, calls_write = os.pipe()  # call requests, parent to child
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch),
           "LANG": "C.UTF-8"}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _RUNNER, str(job_path), str(write_end),
             str(calls_read)],
            cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=(write_end, calls_read), start_new_session=True)
    except BaseException:
        os.close(read_end)
        os.close(calls_write)
        raise
    finally:
        os.close(write_end)
        os.close(calls_read)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.fileno(), proc.stderr.fileno()
    pipes = _Pipes({out: output_limit, err: output_limit, read_end: _RECORD_LIMIT})
    records = _Records(key)
    try:
        with _ExitWatch(proc.pid) as watch:
            channel = _Channel(pipes, read_end, calls_write, watch, records,
                               time.monotonic() + timeout_s)
            try:
                serve(channel)
            except _ProbeMissing:
                pass  # the child stopped answering: what it did is in the records and status
            os.close(calls_write)  # end of file: the child stops waiting for calls
            calls_write = -1
            timed_out = channel.timed_out
            while not timed_out and not watch.exited() and not pipes.over_limit:
                remaining = channel.deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                pipes.pump(min(remaining, watch.poll_s), watch.fd)
            _kill_tree(proc.pid, uid)  # before reaping: the group id stays ours till then
        proc.wait()
        pipes.drain(_DRAIN_S)
    finally:
        if proc.returncode is None:
            _kill_tree(proc.pid, uid)
            proc.wait()
        if calls_write >= 0:
            os.close(calls_write)
        pipes.close()
        os.close(read_end)
        proc.stdout.close()
        proc.stderr.close()
    records.feed(pipes.data[read_end])
    return _Outcome(proc.returncode, timed_out, pipes.over_limit, records, bytes(pipes.data[err]))


class _Channel:
    """The parent's side of a running child for the parent tests: :meth:`call` sends a call of
    the entry point as data and waits for the child's answer, within the job's deadline."""

    def __init__(self, pipes: _Pipes, records_fd: int, calls_fd: int, watch: _ExitWatch,
                 records: _Records, deadline: float) -> None:
        self.pipes, self.records_fd, self.calls_fd = pipes, records_fd, calls_fd
        self.watch, self.records, self.deadline = watch, records, deadline
        self.timed_out = False
        self.exited = False  # the child has exited and everything it wrote has been read
        self.sent = 0
        os.set_blocking(calls_fd, False)

    def call(self, test: int, args: tuple, kwargs: dict) -> object:
        number = self.sent
        self.sent += 1
        try:
            request = [test, number, runner.encode(list(args)), runner.encode(kwargs)]
        except (TypeError, ValueError, RecursionError) as error:
            raise _ProbeFailed(f"unsupported argument ({error})",
                               "the test passed a value that cannot be sent as data") from None
        self.send(request)
        while (test, number) not in self.records.calls:
            self.wait()
        return _value(self.records.calls[(test, number)])

    def send(self, request: list) -> None:
        data = memoryview(json.dumps(request).encode() + b"\n")
        while data:
            try:
                data = data[os.write(self.calls_fd, data):]
            except BlockingIOError:
                self.wait(0.01)  # the child is not reading yet (still on earlier tests)
            except BrokenPipeError:
                raise _ProbeMissing from None

    def wait(self, at_most: float = 1.0) -> None:
        """Read what the child sends for up to ``at_most`` s; raise _ProbeMissing once it can
        no longer answer: exited, over a limit, tampering, or past the deadline."""
        if self.records.tampered or self.pipes.over_limit or self.exited:
            raise _ProbeMissing
        if self.watch.exited():  # read its last records; the caller looks at them once more
            self.pipes.drain(_DRAIN_S)
            self.exited = True
        else:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.timed_out = True
                raise _ProbeMissing
            self.pipes.pump(min(remaining, at_most, self.watch.poll_s), self.watch.fd)
        self.records.feed(self.pipes.data[self.records_fd])


class _Pipes:
    """Reads the child's pipes into buffers of at most ``limits[fd]`` bytes each."""

    def __init__(self, limits: dict[int, int]) -> None:
        self.limits = limits
        self.data = {fd: bytearray() for fd in limits}
        self.over_limit = False
        self.selector = selectors.DefaultSelector()
        for fd in limits:
            self.selector.register(fd, selectors.EVENT_READ)

    def pump(self, timeout: float, wake_fd: int | None = None) -> None:
        """Read what becomes ready within ``timeout`` (``wake_fd`` readable also returns)."""
        if wake_fd is not None:
            self.selector.register(wake_fd, selectors.EVENT_READ)
        try:
            ready = self.selector.select(timeout)
        finally:
            if wake_fd is not None:
                self.selector.unregister(wake_fd)
        for key, _ in ready:
            if key.fd in self.data and self.read(key.fd):
                return

    def read(self, fd: int) -> bool:
        """One read; True if it went over the limit."""
        chunk = os.read(fd, 65536)
        if not chunk:
            self.selector.unregister(fd)
            return False
        buffer = self.data[fd]
        buffer += chunk
        if len(buffer) > self.limits[fd]:
            del buffer[self.limits[fd]:]
            self.over_limit = True
        return self.over_limit

    def drain(self, seconds: float) -> None:
        """After the kill: read to EOF (bounded by ``seconds``, in case an escaped process
        still holds a pipe)."""
        until = time.monotonic() + seconds
        while self.selector.get_map() and not self.over_limit:
            remaining = until - time.monotonic()
            if remaining <= 0:
                break
            self.pump(remaining)

    def close(self) -> None:
        self.selector.close()


class _ExitWatch:
    """``exited()`` says whether the child has exited, without reaping it: while it is a zombie
    its pid (= its process group id) cannot be reused, so killing the group stays safe. ``fd``
    is a pidfd (readable on exit) where the kernel has them; otherwise we poll."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd: int | None = None
        self.poll_s = 0.02

    def __enter__(self) -> _ExitWatch:
        try:
            self.fd = os.pidfd_open(self.pid)
            self.poll_s = 1.0
        except (AttributeError, OSError):
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)

    def exited(self) -> bool:
        return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_tree(pid: int, uid: int | None) -> None:
    """SIGKILL the child's direct children (the PID namespace's init, if any: the whole
    namespace dies with it), its process group, and, as root, every process of its uid."""
    for child in _children(pid):
        _signal(os.kill, child)
    _signal(os.killpg, pid)
    if uid is not None:
        deadline = time.monotonic() + 2.0
        while (left := _live_pids_of(uid)) and time.monotonic() < deadline:
            for other in left:
                _signal(os.kill, other)
            time.sleep(0.005)


def _signal(kill: object, target: int) -> None:
    try:
        kill(target, signal.SIGKILL)  # type: ignore[operator]
    except (ProcessLookupError, PermissionError):
        pass


def _proc_stats() -> Iterator[tuple[int, str, int]]:
    """(pid, state, ppid) of every process, from /proc/<pid>/stat."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        yield int(name), fields[0].decode(), int(fields[1])


def _children(pid: int) -> list[int]:
    return [child for child, _, ppid in _proc_stats() if ppid == pid]


def _live_pids_of(uid: int) -> list[int]:
    """Processes (not zombies) whose real uid is ``uid``."""
    found = []
    for pid, state, _ in _proc_stats():
        if state == "Z":
            continue
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                uids = next(line for line in f if line.startswith(b"Uid:")).split()
        except (OSError, StopIteration):
            continue
        if int(uids[1]) == uid:
            found.append(pid)
    return found


def _remove_tree(path: Path) -> None:
    """Remove the scratch dir even if the program made parts of it unreadable."""
    def make_writable(function: object, failed: str, _exc: object) -> None:
        parent = os.path.dirname(failed)
        os.chmod(parent, stat.S_IRWXU)
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, stat.S_IRWXU)
            shutil.rmtree(failed, ignore_errors=True)
        else:
            os.unlink(failed)

    if path.exists():
        shutil.rmtree(path, onerror=make_writable)


@functools.cache
def _interpreter_dirs() -> list[str]:
    """The directories the child interpreter imports from (stdlib, lib-dynload), asked of it
    once: the only directories of it that the child's view holds (see the runner's build_root)."""
    command = [sys.executable, "-I", "-S", "-c", "import sys; print('\\n'.join(sys.path))"]
    paths = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [os.path.realpath(p) for p in paths.splitlines() if os.path.isdir(p)]


def _throwaway_uid(scratch: Path) -> int | None:
    """As root, a fresh uid that owns ``scratch``; None when not root, or when "root" cannot
    use arbitrary uids (a rootless container's user namespace; there RLIMIT_NPROC applies to
    uid 0 anyway, since it is not the real root)."""
    if os.geteuid() != 0:
        return None
    uid = secrets.choice(SANDBOX_UIDS)
    try:
        os.chown(scratch, uid, uid)
    except OSError:
        return None
    return uid


# ---------------------------------------------------------------------------------------------
# The runner: the child side, run as `python -I -S -c _RUNNER <job file> <record fd>`, where
# _RUNNER is the text of runner.py. It is passed as text (not imported as sipf.code.sandbox.runner)
# so the child imports nothing but what it needs; it must only use the standard library. It is a
# module so that it can be linted and its helpers unit-tested. Line 1 is its docstring and its
# entry point stands where the bare `main()` stood, so the line numbers in its tracebacks (which
# can end up in a verdict's detail) are those of the string literal it replaced.

_RUNNER = Path(__file__).with_name("runner.py").read_text(encoding="utf-8")
