"""The sandbox's child side: `python -I -S -c <this text> <job file> <record fd>`."""
import builtins, ctypes, json, os, resource, signal, sys
from _blake2 import blake2b

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x20000, 0x8000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
TMPFS_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
LIBC = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """The sandbox could not be set up: reported as "sandbox error", never blamed on the program."""


def check(result, what):
    if result != 0:
        raise SetupError(f"{what}: {os.strerror(ctypes.get_errno())}")


def mount(source, target, fstype, flags, data=None):
    encode = lambda s: None if s is None else s.encode()
    check(LIBC.mount(encode(source), encode(target), encode(fstype), flags, encode(data)),
          f"mount {target}")


def count_tasks(uid):
    """Tasks (processes and threads) of `uid` now: what RLIMIT_NPROC counts for a shared uid."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except (OSError, ValueError):
            continue
        if int(fields["Uid"].split()[0]) == uid:
            total += int(fields["Threads"])
    return total


def enter_namespaces(root):
    """New mount, PID, net and IPC namespaces (in a new user namespace unless root). False if
    the kernel refuses: the job then runs with rlimits and the audit hook only."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
    if LIBC.unshare(flags | (0 if root else CLONE_NEWUSER)) != 0:
        return False
    if not root:  # map our own uid, so files we create have an owner
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                           ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    return True


def hidden_ancestors(paths):
    """The topmost directory above each path that others cannot enter (e.g. /root, 0700)."""
    hidden = []
    for path in paths:
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            ancestor = "/" + "/".join(parts[:depth])
            try:
                mode = os.stat(ancestor).st_mode
            except OSError:
                break
            if not mode & 0o001:
                if ancestor not in hidden:
                    hidden.append(ancestor)
                break
    return hidden


def overlay(directory, keep, options):
    """Mount a fresh tmpfs on `directory`, bind-mounting back the `keep` paths below it."""
    inside = [p for p in keep if p.startswith(directory.rstrip("/") + "/")]
    inside = [p for p in inside if not any(p.startswith(q + "/") for q in inside)]
    fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in inside]
    mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options)
    for path, fd in zip(inside, fds):
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)


def private_filesystem(job):
    """Private tmpfs on /tmp, /var/tmp, /dev/shm and the scratch dir; for a throwaway uid, the
    interpreter's directories made reachable."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep, scratch, uid = job["expose"], job["scratch"], job["uid"]
    size = f"size={job['limits']['disk_mb']}m"
    for directory in TMPFS_DIRS:
        if os.path.isdir(directory) and not os.path.islink(directory):
            overlay(directory, keep, f"mode=1777,{size}")
    if uid is not None:
        for directory in hidden_ancestors(keep + [scratch]):
            overlay(directory, keep, "mode=755,size=1m")
    os.makedirs(scratch, exist_ok=True)
    owner = "" if uid is None else f",uid={uid},gid={uid}"
    mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=700,{size}{owner}")


def supervise_child(namespaced, cpu_s):
    """Fork the process that runs the program (pid 1 of the new PID namespace, if any) and
    return in it. This process stays behind as a subreaper: orphans of the program's processes
    (even double-forked, setsid'd ones) are re-parented to it, and it kills them all once the
    child exits. Then it relays the child's exit (as exit code, or by dying of the same
    signal; a SIGKILL from the CPU limit as SIGXCPU) and never returns."""
    check(LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(CHILD_SUBREAPER)")
    pid = os.fork()
    if pid == 0:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if namespaced:
            try:  # a /proc that shows only this namespace (refused in some containers: harmless)
                mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            except SetupError:
                pass
        return
    _, status, usage = os.wait4(pid, 0)
    if not namespaced:  # (with a PID namespace the kernel has killed them all already)
        kill_orphans()
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == signal.SIGKILL and usage.ru_utime + usage.ru_stime >= cpu_s - 0.05:
            number = signal.SIGXCPU  # RLIMIT_CPU's hard limit kills with SIGKILL
        try:
            signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), number)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def kill_orphans():
    """SIGKILL and reap our children until none are left."""
    me = str(os.getpid()).encode()
    while True:
        orphans = []
        for name in os.listdir("/proc"):
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[1] == me:
                        orphans.append(int(name))
            except (OSError, IndexError, ValueError):
                continue
        if not orphans:
            return
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def restrict(job, nproc):
    """Drop to the throwaway uid (root mode), give up privileges, set the rlimits."""
    uid = job["uid"]
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    header, data = (ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)()
    check(LIBC.capset(header, data), "capset")  # no capabilities, even in our user namespace
    limits = job["limits"]
    mb = 1024 * 1024
    for which, value in ((resource.RLIMIT_CPU, limits["cpu_s"]),
                         (resource.RLIMIT_AS, limits["memory_mb"] * mb),
                         (resource.RLIMIT_FSIZE, limits["disk_mb"] * mb),
                         (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NPROC, nproc)):
        resource.setrlimit(which, (value, value))  # soft = hard: CPU time ends in SIGKILL


def install_guards(scratch):
    """The audit hook (defence in depth; see the docs of sipf/code/sandbox/__init__.py)."""
    realpath, fsdecode, getpid = os.path.realpath, os.fsdecode, os.getpid
    blocked = {"os.system", "os.forkpty", "sys.addaudithook", "sys.settrace", "sys.setprofile",
               "sys._current_frames", "gc.get_objects", "gc.get_referrers", "gc.get_referents"}
    blocked_prefixes = ("socket.", "ctypes.", "subprocess.", "os.exec", "os.posix_spawn",
                        "os.spawn", "pty.")
    # event -> positions of the path arguments it changes
    changes = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
               "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.link": (1,),
               "os.symlink": (1,), "os.utime": (0,), "shutil.rmtree": (0,),
               "os.setxattr": (0,), "os.removexattr": (0,)}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

    def inside(path):
        if isinstance(path, int):
            return True  # an fd we already hold
        real = realpath(fsdecode(path))
        return real == scratch or real.startswith(scratch + "/") or real == "/dev/null"

    def deny(event):
        raise PermissionError(f"sandbox: {event} is not allowed")

    def hook(event, args):
        if event in blocked or event.startswith(blocked_prefixes):
            deny(event)
        elif event == "open":
            path, mode, flags = args
            writes = (flags or 0) & write_flags or any(c in (mode or "") for c in "wax+")
            if writes and not inside(path):
                deny(f"writing {path!r}")
            real = "" if isinstance(path, int) else realpath(fsdecode(path))
            if real.startswith("/proc/") and real.endswith("/mem"):  # our own memory: secrets
                deny(f"opening {path!r}")
        elif event in changes:
            if not all(inside(args[i]) for i in changes[event]):
                deny(f"{event} outside the scratch dir")
        elif event in ("os.kill", "os.killpg") and args[0] != getpid():
            deny(f"{event} of another process")

    sys.addaudithook(hook)


def encode(value, depth=0):
    """Plain data as tagged JSON. Subclasses are read through their base type's own methods, so
    overridden __eq__/__iter__/__repr__ do not matter. Raises TypeError for anything else."""
    kind = type(value)
    if depth > 100:
        raise TypeError("nested too deeply")
    if value is None or kind is bool:
        return value
    if issubclass(kind, int):
        number = int.__index__(value)
        return number if -2**53 < number < 2**53 else {"I": format(number, "x")}
    if issubclass(kind, float):
        return float.__float__(value)
    if issubclass(kind, complex):
        number = complex.__complex__(value)
        return {"C": [number.real, number.imag]}
    if issubclass(kind, str):
        return str.__str__(value)
    if issubclass(kind, bytes):
        return {"B": bytes.hex(value)}
    if issubclass(kind, bytearray):
        return {"Y": bytearray.hex(value)}
    if issubclass(kind, dict):
        return {"D": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict.items(value)]}
    for base, tag in ((list, "L"), (tuple, "T"), (set, "S"), (frozenset, "F")):
        if issubclass(kind, base):
            return {tag: [encode(item, depth + 1) for item in base.__iter__(value)]}
    raise TypeError(kind.__name__)


def main():
    os.umask(0o022)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    job_path, fd = sys.argv[1], int(sys.argv[2])
    with open(job_path) as f:
        job = json.load(f)
    os.unlink(job_path)
    emit = make_emitter(fd, bytes.fromhex(job.pop("key")))
    root = os.geteuid() == 0
    try:
        nproc = job["limits"]["max_processes"]
        if job["uid"] is None:
            nproc += count_tasks(os.getuid())
        namespaced = job["namespaces"] and enter_namespaces(root)
        if namespaced:
            private_filesystem(job)
        elif job["uid"] is not None and hidden_ancestors(job["expose"] + [job["scratch"]]):
            raise SetupError("Python is not readable by a throwaway uid and there are no "
                             "mount namespaces to expose it")
        supervise_child(namespaced, job["limits"]["cpu_s"])
        os.chdir(job["scratch"])
        restrict(job, nproc)
    except (SetupError, OSError) as error:
        emit('"setup_error": ' + json.dumps(str(error)))
        os._exit(3)
    run(job, emit)


def make_emitter(fd, key):
    """A function writing one result record: `<mac> {fields}`. The MAC (keyed BLAKE2b) is what
    the parent checks; the key lives only in this closure and never goes down any fd. Every
    callable here is bound now, before program code runs, so patching modules cannot reach it."""
    write, mac = os.write, blake2b

    def emit(fields):
        text = ("{" + fields + "}").encode()
        write(fd, mac(text, key=key, digest_size=16).hexdigest().encode() + b" " + text + b"\n")
    return emit


def describe(error, str=str, type=type, BaseException=BaseException):
    """(type name, message) of an exception raised by program code, defensively."""
    try:
        return str(type(error).__name__), str(error)[:300]
    except BaseException:
        return "Exception", ""


def run(job, emit, exec=exec, compile=compile, eval=eval, enumerate=enumerate,
        BaseException=BaseException, dumps=json.dumps, describe=describe, _import=__import__,
        _exit=os._exit, encode=encode, TypeError=TypeError, ValueError=ValueError,
        RecursionError=RecursionError):
    """Run the program, the setup and the tests; report; exit. The keyword defaults bind every
    name this uses before program code runs: a program that patches builtins or this module's
    globals cannot change what the loop below does (only the values it reports)."""
    pristine = dict(builtins.__dict__)  # before the program can change builtins
    entry_point = job["entry_point"]
    install_guards(job["scratch"])
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    for stage in ("program", "setup"):
        try:
            exec(compile(job[stage], "<" + stage + ">", "exec"), namespace)
        except BaseException as error:
            kind, message = describe(error)
            emit('"stage": ' + dumps(stage) + ', "error": ' + dumps(kind) + ', "message": '
                 + dumps(message))
            _exit(0)
    for index, test in enumerate(job["tests"]):
        if "code" in test:
            # The program's names, but not ones shadowing builtins (`def abs(x): return 0`).
            scope = {name: value for name, value in namespace.items()
                     if name not in pristine or name == entry_point}
            scope["__builtins__"] = pristine
            try:
                exec(compile(test["code"], "<test>", "exec"), scope)
            except BaseException as error:
                kind, message = describe(error)
                emit('"test": %d, "error": ' % index + dumps(kind) + ', "message": '
                     + dumps(message))
                _exit(0)
            else:
                emit('"test": %d, "ok": true' % index)
            continue
        for number, probe in enumerate(test["probes"]):
            head = '"probe": [%d, %d], ' % (index, number)
            scope = {"__builtins__": pristine}
            try:
                for name in probe["modules"]:
                    scope[name] = _import(name)
                for name in probe["names"]:
                    if name in namespace:
                        scope[name] = namespace[name]
                value = eval(probe["expr"], scope)
            except BaseException as error:
                kind, message = describe(error)
                emit(head + '"error": ' + dumps(kind) + ', "message": ' + dumps(message))
                continue
            try:
                text = dumps(encode(value))
            except (TypeError, ValueError, RecursionError) as error:
                emit(head + '"unsupported": ' + dumps(describe(error)[1][:100]))
                continue
            except BaseException as error:  # e.g. MemoryError while encoding
                emit(head + '"error": ' + dumps(describe(error)[0]) + ', "message": ""')
                continue
            emit(head + '"value": ' + text)
    emit('"done": true')
    _exit(0)  # no atexit handlers, no flushing of whatever the program made of stdout

if __name__ == "__main__":  # so it is with -c; importing this module runs nothing
    main()
