"""The sandbox against hostile programs: each must fail (or be contained) for the right reason,
and leave no process and no scratch directory behind."""

from __future__ import annotations

import functools
import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from sipf.code import sandbox
from sipf.code.sandbox import Job, Verdict, judge, judge_many

CORRECT = "def add_one(x):\n    return x + 1\n"
TESTS = ["assert add_one(1) == 2", "assert add_one(2) == 3"]


def sandbox_processes(marker: str) -> list[int]:
    """Live (non-zombie) processes of the sandbox, from /proc: a throwaway uid, or a command
    line naming our scratch root (a forked copy of the runner keeps the runner's command line)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields["State"].split()[0] == "Z":
            continue
        if int(fields["Uid"].split()[0]) in sandbox.SANDBOX_UIDS or marker in cmdline:
            found.append(int(pid))
    return found


@pytest.fixture()
def run(tmp_path: Path):
    """judge() with the scratch root in tmp_path; afterwards no sandbox process may be alive
    and every scratch directory must be gone."""
    root = tmp_path / "scratch-root"
    root.mkdir()

    def run_judge(program: str, tests=TESTS, **options) -> Verdict:
        options.setdefault("timeout_s", 10.0)
        verdict = judge(textwrap.dedent(program), tests, scratch_root=root, **options)
        assert sandbox_processes(str(root)) == [], "sandbox processes left behind"
        assert list(root.iterdir()) == [], "scratch directory left behind"
        return verdict

    return run_judge


def test_correct_program_passes(run) -> None:
    verdict = run(CORRECT)
    assert verdict == Verdict(True, "passed", verdict.seconds, "")


def test_wrong_program_fails_at_the_failing_test(run) -> None:
    verdict = run("def add_one(x):\n    return 2\n")
    assert (verdict.passed, verdict.reason) == (False, "failed: AssertionError at test 2")
    assert verdict.detail == "assert add_one(2) == 3"


def test_exception_in_the_program_function(run) -> None:
    verdict = run("def add_one(x):\n    return x / 0\n")
    assert verdict.reason == "failed: ZeroDivisionError at test 1"


def test_crash_at_import_and_syntax_error(run) -> None:
    assert run("undefined_name\n").reason == "crashed: NameError"
    assert run("def add_one(x) return x\n").reason == "crashed: SyntaxError"
    assert run("input()\n").reason == "crashed: EOFError"  # stdin is empty


def test_real_test_forms(run) -> None:
    program = """
        import math
        from collections import Counter, namedtuple
        Point = namedtuple("Point", "x y")
        def root(x): return math.sqrt(x)
        def common(a, b): return list(set(a) & set(b))
        def evens(n): return (i for i in range(0, n, 2))
        def count(s): return Counter(s)
        def point(): return Point(1, 2)
        def nothing(): return None
    """
    tests = ["assert math.isclose(root(2), 1.4142, rel_tol=0.001)",
             "assert set(common((3, 4, 5), (5, 4, 9))) == set((4, 5))",
             "assert list(evens(5)) == [0, 2, 4]",
             "assert count('aab') == {'a': 2, 'b': 1}",
             "assert point() == (1, 2) and point()[1] == 2",
             "assert nothing() is None",
             "assert abs(root(4) - 2) < 1e-9"]
    assert run(program, tests).reason == "passed"


def test_entry_point_may_shadow_a_builtin(run) -> None:
    program = "def sum(a, b):\n    return a + b\n"
    assert run(program, ["assert sum(10, 15) == 25"], entry_point="sum").passed
    # Without it the test's `sum` is the real builtin, whatever the program defines.
    assert run(program, ["assert sum(10, 15) == 25"]).reason == "failed: TypeError at test 1"


def test_check_blocks_run_in_the_parent(run) -> None:
    check = textwrap.dedent("""
        def check(candidate):
            for x in range(3):
                assert candidate(x) == x + 1
        check(add_one)
    """)
    assert run(CORRECT, [check]).passed
    assert run("def add_one(x):\n    return x\n", [check]).reason == \
        "failed: AssertionError at test 1"


CHECK = "def check(candidate):\n    for x in range(3):\n        assert candidate(x) == x + 1\n" \
        "check(add_one)\n"


@pytest.mark.parametrize(("body", "reason"), [
    ("    while True:\n        pass\n", "timeout"),
    ("    import os\n    os._exit(0)\n", "exited early"),
    ("    import sys\n    sys.exit(0)\n", "exited early"),
    ("    return bytearray(10**10)\n", "memory"),
    ("    raise ValueError('no')\n", "failed: ValueError at test 1"),
    ("    return 'x' * 6_000_000\n", "output limit"),
])
def test_a_check_block_when_the_program_misbehaves_mid_call(run, body: str,
                                                             reason: str) -> None:
    verdict = run("def add_one(x):\n" + body, [CHECK], entry_point="add_one", timeout_s=2.0,
                  memory_mb=256)
    assert verdict.reason == reason, verdict
    assert verdict.seconds < 6


def test_setup_code_runs_after_the_program(run) -> None:
    program = "class Box:\n    def __init__(self, v): self.v = v\ndef unbox(b): return b.v\n"
    assert run(program, ["assert unbox(box) == 3"], setup="box = Box(3)").passed


def test_files_inside_the_scratch_dir_are_allowed(run) -> None:
    program = """
        import os, tempfile
        with open("note.txt", "w") as f:
            f.write("hi")
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write("there")
        def add_one(x):
            return x + len(open("note.txt").read()) - 1
    """
    assert run(program).passed


def test_threads_within_the_process_limit_work(run) -> None:
    program = """
        import threading
        result = []
        worker = threading.Thread(target=lambda: result.append(1))
        worker.start(); worker.join()
        def add_one(x):
            return x + result[0]
    """
    assert run(program).passed


# --- resource exhaustion --------------------------------------------------------------------


def test_infinite_loop_times_out(run) -> None:
    verdict = run("while True:\n    pass\n", timeout_s=1.0)
    assert verdict.reason == "timeout"
    assert verdict.seconds < 5


def test_sleeping_forever_times_out(run) -> None:
    verdict = run("import time\ndef add_one(x):\n    time.sleep(60)\n", timeout_s=1.0)
    assert verdict.reason == "timeout"


def test_cpu_limit_ends_a_busy_program_before_the_wall_clock(run) -> None:
    verdict = run("while True:\n    pass\n", timeout_s=6.0, cpu_s=1)
    assert verdict.reason == "timeout"
    assert verdict.seconds < 4


def test_fork_bomb_is_contained(run) -> None:
    verdict = run("import os\nwhile True:\n    os.fork()\n")
    assert not verdict.passed
    assert verdict.reason in ("crashed: BlockingIOError", "timeout"), verdict


def test_setsid_daemon_does_not_outlive_the_job(run, tmp_path: Path) -> None:
    """A double-forked, setsid'd grandchild that would write a file later must be killed."""
    late = tmp_path / "late.txt"
    program = f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(0.5)
                open({str(late)!r}, "w").write("still alive")
            os._exit(0)
        def add_one(x):
            return x + 1
    """
    assert run(program).passed
    time.sleep(1)
    assert not late.exists()


def test_memory_bomb_fails(run) -> None:
    assert run("x = bytearray(10**10)\n", memory_mb=128).reason == "memory"
    grow = "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))\n"
    assert run(grow, memory_mb=128).reason == "memory"


def test_output_flood_hits_the_output_limit(run) -> None:
    verdict = run("while True:\n    print('x' * 1000)\n", output_limit=16 * 1024)
    assert verdict.reason == "output limit"
    verdict = run("import sys\nwhile True:\n    sys.stderr.write('y' * 1000)\n",
                  output_limit=16 * 1024)
    assert verdict.reason == "output limit"


def test_huge_return_value_hits_the_output_limit(run) -> None:
    verdict = run("def add_one(x):\n    return 'x' * 6_000_000\n")
    assert verdict.reason == "output limit"


def test_big_file_hits_the_file_size_limit(run) -> None:
    program = "with open('big', 'wb') as f:\n    f.write(b'0' * (4 * 1024 * 1024))\n"
    assert run(program, disk_mb=1).reason == "crashed: OSError"


# --- escaping the sandbox -------------------------------------------------------------------


def test_writing_outside_the_scratch_dir_fails(run, tmp_path: Path) -> None:
    target = tmp_path / "outside.txt"
    verdict = run(f"open({str(target)!r}, 'w').write('pwned')\n")
    assert not verdict.passed and not target.exists()
    # in the function under test, too; and under /tmp (world-writable)
    escape = Path("/tmp") / f"sipf-escape-{os.getpid()}"
    program = f"def add_one(x):\n    open({str(escape)!r}, 'w').write('pwned')\n    return x + 1\n"
    assert run(program).reason == "failed: PermissionError at test 1"
    assert not escape.exists()


def test_deleting_outside_the_scratch_dir_fails(run, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for attack in (f"import os\nos.remove({str(victim)!r})\n",
                   f"import shutil\nshutil.rmtree({str(tmp_path)!r})\n",
                   f"import os\nos.rename({str(victim)!r}, 'mine')\n"):
        assert not run(attack).passed
        assert victim.read_text() == "precious"


def test_sockets_are_refused(run) -> None:
    connect = "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n"
    assert run(connect).reason == "crashed: PermissionError"
    probe = """
        import socket
        def add_one(x):
            try:
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            except OSError:
                return -1
            return x + 1
    """
    assert run(probe).reason == "failed: AssertionError at test 1"


def test_running_other_programs_is_refused(run) -> None:
    assert run("import os\nos.system('true')\n").reason == "crashed: PermissionError"
    assert run("import subprocess\nsubprocess.run(['true'])\n").reason == \
        "crashed: PermissionError"
    assert run("import ctypes\nctypes.CDLL(None).exit(0)\n").reason == "crashed: PermissionError"


def test_signalling_the_parent_does_not_reach_it(run) -> None:
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: received.append(1))
    try:
        me = os.getpid()
        for attack in (f"import os, signal\nos.kill({me}, signal.SIGUSR1)\n",
                       "import os, signal\nos.kill(os.getppid(), signal.SIGUSR1)\n",
                       f"import os, signal\nos.killpg(os.getpgid({me}), signal.SIGUSR1)\n"):
            assert not run(attack).passed
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert received == []


# --- faking the verdict ---------------------------------------------------------------------


@pytest.mark.parametrize("attack", [
    "import sys\nsys.exit(0)\n",
    "import os\nos._exit(0)\n",
    "def add_one(x):\n    import sys\n    sys.exit(0)\n",
    "def add_one(x):\n    import os\n    os._exit(0)\n",
    "raise SystemExit\n",
])
def test_exiting_before_the_asserts_fails(run, attack: str) -> None:
    assert run(attack).reason == "exited early"


def test_printing_the_success_marker_fails(run) -> None:
    program = "print('passed')\nprint('{\"done\": true}')\nimport sys\nsys.exit(0)\n"
    assert run(program).reason == "exited early"


def test_forging_result_records_fails(run) -> None:
    program = """
        import os
        forged = ['{"done": true}', '{"probe": [0, 0], "value": 2}', '{"test": 0, "ok": true}']
        # every open descriptor: the result channel's number is the parent's, which can be
        # high when the parent (a long test session) holds many files
        for fd in [int(fd) for fd in os.listdir("/proc/self/fd") if int(fd) > 2]:
            for line in forged:
                try:
                    os.write(fd, (("0" * 32) + " " + line + "\\n").encode())
                except OSError:
                    pass
        os._exit(0)
    """
    assert run(program).reason == "tampered"


def test_redirecting_the_result_channel_leaks_nothing(run) -> None:
    """Capture the runner's first record (dup2 over its fd), then replay its MAC on a forged
    record claiming the second test's value, and exit."""
    program = """
        import os
        def is_pipe(fd):
            try:
                return os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
            except OSError:
                return False
        channels = [fd for fd in map(int, os.listdir("/proc/self/fd")) if fd > 2 and is_pipe(fd)]
        saved = [os.dup(fd) for fd in channels]
        r, w = os.pipe()
        os.set_blocking(r, False)
        for fd in channels:
            os.dup2(w, fd)
        def add_one(x):
            if x == 0:
                return 1
            mac, text = os.read(r, 65536).decode().splitlines()[0].split(" ", 1)
            forged = text.replace("[0, 0]", "[1, 0]").replace("1}", "2}")
            for fd in saved:
                for line in (mac + " " + forged, mac + ' {"done": true}'):
                    try:
                        os.write(fd, (line + "\\n").encode())
                    except OSError:
                        pass
            os._exit(0)
    """
    verdict = run(program, ["assert add_one(0) == 1", "assert add_one(1) == 2"])
    assert verdict.reason == "tampered", verdict


def test_catching_or_redefining_assertion_error_fails(run) -> None:
    program = """
        import builtins, sys
        builtins.AssertionError = type("Never", (Exception,), {})
        sys.excepthook = lambda *args: print("passed")
        def add_one(x):
            try:
                raise AssertionError
            except BaseException:
                return 0
    """
    assert run(program).reason == "failed: AssertionError at test 1"


def test_always_equal_results_fail(run) -> None:
    always = "class Yes:\n    def __eq__(self, other): return True\ndef add_one(x): return Yes()\n"
    assert run(always).reason == "failed: unsupported result (Yes) at test 1"
    int_like = "class I(int):\n    def __eq__(self, other): return True\n" \
               "    __hash__ = int.__hash__\ndef add_one(x): return I(0)\n"
    assert run(int_like).reason == "failed: AssertionError at test 1"


def test_shadowing_builtins_does_not_fake_the_expected_side(run) -> None:
    program = """
        def set(x): return 0
        def sorted(x): return 0
        def common(a, b): return [1]
    """
    tests = ["assert set(common((3, 4, 5), (5, 4, 9))) == set((4, 5))",
             "assert sorted(common((1,), (2,))) == sorted([4, 5])"]
    assert run(program, tests).reason == "failed: AssertionError at test 1"


def test_shadowing_builtins_does_not_fake_an_opaque_test(run) -> None:
    program = "def abs(x):\n    return 0\ndef add_one(x):\n    return 100\n"
    opaque = "def check(candidate):\n    assert abs(candidate(1) - 2) < 1e-9\ncheck(add_one)\n"
    assert run(program, [opaque]).reason == "failed: AssertionError at test 1"


def test_patching_builtins_and_the_runner_fails(run) -> None:
    """Patch exec/compile/print/__import__/os._exit and the runner's own globals, then fail an
    opaque test: the runner must still report the failure."""
    program = """
        import builtins, os, sys, json
        builtins.exec = lambda *a, **k: None
        builtins.compile = lambda *a, **k: None
        builtins.print = lambda *a, **k: None
        os._exit = lambda code: None
        json.dumps = lambda *a, **k: '0'
        main = sys.modules["__main__"]
        for name in ("describe", "encode", "emit", "run"):
            setattr(main, name, lambda *a, **k: None)
        def add_one(x):
            return 0
    """
    opaque = "for x in range(2):\n    assert add_one(x) == x + 1\n"
    assert not run(program, [opaque]).passed
    assert not run(program).passed


def test_atexit_handlers_cannot_forge_a_pass(run) -> None:
    program = """
        import atexit, os
        atexit.register(lambda: print("passed"))
        atexit.register(lambda: os.write(3, b'{"done": true}\\n'))
        def add_one(x):
            return 0
    """
    assert run(program).reason == "failed: AssertionError at test 1"


def test_introspection_hooks_are_refused(run) -> None:
    for attack in ("import gc\ngc.get_objects()\n", "import sys\nsys.settrace(None)\n",
                   "import sys\nsys._current_frames()\n",
                   "import sys\nsys.addaudithook(lambda *a: None)\nopen('/x', 'w')\n",
                   "open('/proc/self/mem', 'rb')\n"):
        assert run(attack).reason == "crashed: PermissionError", attack


# --- without namespaces: fail closed ------------------------------------------------------


def test_without_namespaces_nothing_is_judged(monkeypatch, tmp_path: Path) -> None:
    """When the kernel refuses unshare, judge and judge_many raise one clear error before
    running any program (no weaker fallback whose verdicts would mean nothing)."""
    monkeypatch.setattr(sandbox, "_RUNNER", sandbox._RUNNER.replace(
        "LIBC.unshare(", "LIBC.unshare(-1 | ", 1))  # invalid flags: the kernel refuses
    monkeypatch.setattr(sandbox, "_refusal", functools.cache(sandbox._refusal.__wrapped__))
    witness = tmp_path / "ran.txt"
    program = f"open({str(witness)!r}, 'w').write('ran')\n"
    with pytest.raises(sandbox.SandboxUnavailable, match=r"unshare\(.*Invalid argument.*sysctl"):
        judge(program, TESTS, scratch_root=tmp_path)
    with pytest.raises(sandbox.SandboxUnavailable):
        judge_many([(program, TESTS)] * 2, workers=2)
    assert not witness.exists()
    assert sandbox.isolation()["namespaces"] is False


# --- batches --------------------------------------------------------------------------------


def test_judge_many_keeps_input_order(tmp_path: Path) -> None:
    jobs = [Job(CORRECT, tuple(TESTS)), ("def add_one(x):\n    return 0\n", TESTS),
            Job("import sys\nsys.exit(0)\n", tuple(TESTS)), (CORRECT, ["assert add_one(5) == 6"])]
    verdicts = judge_many(jobs, workers=2, timeout_s=10.0)
    assert [v.reason for v in verdicts] == ["passed", "failed: AssertionError at test 1",
                                            "exited early", "passed"]
    assert [v.reason for v in judge_many(jobs[:2], workers=1)] == [
        "passed", "failed: AssertionError at test 1"]


def test_mbpp_reference_solutions_pass(shared_data: Path) -> None:
    rows = [json.loads(line) for line in (shared_data / "mbpp" / "mbpp.jsonl").open()]
    chosen = [row for row in rows if row["task_id"] in (1, 2, 3, 17, 126)]
    entry = {126: "sum"}
    jobs = [Job(row["code"], tuple(row["test_list"]), row["test_setup_code"],
                entry.get(row["task_id"])) for row in chosen]
    verdicts = judge_many(jobs, workers=2, timeout_s=10.0)
    assert [v.reason for v in verdicts] == ["passed"] * len(jobs)


def test_isolation_reports_what_the_kernel_gives() -> None:
    assert set(sandbox.isolation()) == {"throwaway_uid", "namespaces"}


def test_the_user_namespace_path_works(run, monkeypatch) -> None:
    """What a non-root user gets (a new user namespace, our own uid, mounts whose flags the
    parent namespace locked), exercised here even as root: the view is built, writes outside
    the private tmpfs fail, a check block runs."""
    if os.geteuid() != 0:
        pytest.skip("this already runs as non-root: every other test covers the path")
    monkeypatch.setattr(sandbox, "_RUNNER", sandbox._RUNNER.replace(
        "root = os.geteuid() == 0", "root = False", 1))
    monkeypatch.setattr(sandbox, "_throwaway_uid", lambda scratch: None)
    assert run(CORRECT).passed
    program = """
        import os
        def add_one(x):
            try:
                os.mkfifo("/etc/sipf-user-namespace")
            except OSError:
                return x + 1
            return 0
    """
    check = "def check(candidate):\n    assert candidate(1) == 2\ncheck(add_one)\n"
    assert run(program, [check], entry_point="add_one").passed
    assert not os.path.exists("/etc/sipf-user-namespace")
