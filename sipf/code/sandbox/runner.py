"""The sandbox's child side: `python -I -S -c <this text> <job file> <record fd>`."""
import builtins, ctypes, json, os, re, resource, signal, sys
from _blake2 import blake2b

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x20000, 0x8000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE, MNT_DETACH = 4096, 16384, 1 << 18, 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "i686": 217, "armv7l": 218}
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
# What the child's filesystem view holds (build_root): system directories, read-only (merged-usr
# symlinks are copied as symlinks), devices, and private tmpfs where programs expect to write.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
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
    """New mount, PID, net and IPC namespaces (in a new user namespace unless root). There is
    no weaker fallback: without them no verdict would mean anything (the parent says so)."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
    check(LIBC.unshare(flags | (0 if root else CLONE_NEWUSER)),
          "unshare(mount, PID, net, IPC" + (")" if root else ", user)"))
    if not root:  # map our own uid, so files we create have an owner
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                           ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)


def mounts_under(path):
    """Mount points at or below `path`, from our mount namespace's mountinfo (octal-escaped)."""
    unescape = lambda text: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)
    with open("/proc/self/mountinfo") as f:
        points = [unescape(line.split()[4]) for line in f]
    return [p for p in points if p == path or p.startswith(path.rstrip("/") + "/")]


def bind_readonly(source, target):
    """Bind `source` (with its submounts) at `target`, every mount of it read-only. The flags a
    more privileged namespace locked (nosuid, nodev, noexec) must be repeated in the remount,
    or a user namespace refuses it."""
    os.makedirs(target, exist_ok=True)
    mount(source, target, None, MS_BIND | MS_REC)
    for point in mounts_under(target):
        locked = os.statvfs(point).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
        mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked)


def build_root(job):
    """The child's whole filesystem view, built on a fresh tmpfs mounted over the scratch path
    (pid 1 moves into it: enter_root). It holds only what the interpreter needs, read-only:
    the system directories and the interpreter's own (its site-packages emptied), five
    devices, and empty private tmpfs on /tmp, /var/tmp, /dev/shm and the scratch dir, the only
    writable places. Anything else (the project, the benchmark data, home directories, caches)
    is not in it, so neither a write nor a read can reach it, whatever call makes it."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates out
    root, scratch, uid = job["scratch"], job["scratch"], job["uid"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
    bound = []
    for path in SYSTEM_DIRS + tuple(job["expose"]):
        if any(path == b or path.startswith(b + "/") for b in bound):
            continue  # already inside a bind
        if os.path.islink(path) and path in SYSTEM_DIRS:  # merged /usr: /bin -> usr/bin
            os.symlink(os.readlink(path), root + path)
        elif os.path.isdir(path):
            bind_readonly(path, root + path)
            bound.append(path)
    for path in bound:  # third-party packages (and any data they ship) stay out of reach
        if os.path.isdir(path + "/site-packages"):
            mount("tmpfs", root + path + "/site-packages", "tmpfs",
                  MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k")
    os.makedirs(root + "/dev")
    for name in DEVICES:
        open(root + "/dev/" + name, "x").close()
        mount("/dev/" + name, root + "/dev/" + name, None, MS_BIND)
    for name, target in DEV_LINKS:
        os.symlink(target, root + "/dev/" + name)
    os.makedirs(root + "/proc")
    size = f"size={job['limits']['disk_mb']}m"
    for path in TMPFS_DIRS:
        os.makedirs(root + path, exist_ok=True)
        mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,{size}")
    os.makedirs(root + scratch, exist_ok=True)
    owner = "" if uid is None else f",uid={uid},gid={uid}"
    mount("tmpfs", root + scratch, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
          f"mode=700,{size}{owner}")


def enter_root(job):
    """In pid 1 of the new PID namespace: mount its /proc, then make the view built by
    build_root our root and detach the old one. /proc must be mounted before the old root
    goes: a user namespace only lets us mount a proc while a full one is visible. The tmpfs
    holding the view is then made read-only, so only the tmpfs mounts stay writable."""
    root = job["scratch"]
    try:  # a /proc that shows only this namespace (refused in some containers: then none)
        mount("proc", root + "/proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except SetupError:
        pass
    os.chdir(root)
    # pivot_root(".", ".") stacks the old root on top of the new one; umount2 detaches it.
    check(LIBC.syscall(SYS_PIVOT_ROOT[os.uname().machine], b".", b"."), "pivot_root")
    check(LIBC.umount2(b".", MNT_DETACH), "umount2(old root)")
    os.chdir("/")
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def supervise_child(cpu_s):
    """Fork the process that runs the program (pid 1 of the new PID namespace) and return in
    it. This process stays behind as a subreaper: orphans of the program's processes (even
    double-forked, setsid'd ones) are re-parented to it, and the kernel kills every process of
    the namespace when pid 1 exits. Then it relays the child's exit (as exit code, or by dying
    of the same signal; a SIGKILL from the CPU limit as SIGXCPU) and never returns."""
    check(LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(CHILD_SUBREAPER)")
    pid = os.fork()
    if pid == 0:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        return
    _, status, usage = os.wait4(pid, 0)
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
    overridden __eq__/__iter__/__repr__ do not matter. An iterator (a generator, map, filter)
    goes as the list of what it yields, to be read back as an iterator over that list. Raises
    TypeError for anything else."""
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
    if hasattr(kind, "__next__") and hasattr(kind, "__iter__"):
        return {"G": [encode(item, depth + 1) for item in value]}
    raise TypeError(kind.__name__)


def decode(value):
    """The inverse of `encode`: tagged JSON back to plain Python data (the parent decodes
    results with it, the child a proxied call's arguments)."""
    if not isinstance(value, dict):
        return value
    (tag, body), = value.items()
    if tag == "I":
        return int(body, 16)
    if tag == "C":
        return complex(*body)
    if tag == "B":
        return bytes.fromhex(body)
    if tag == "Y":
        return bytearray.fromhex(body)
    if tag == "D":
        return {decode(k): decode(v) for k, v in body}
    items = [decode(item) for item in body]
    if tag == "G":
        return iter(items)
    return {"L": list, "T": tuple, "S": set, "F": frozenset}[tag](items)


def main():
    os.umask(0o022)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    job_path, fd, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(job_path) as f:
        job = json.load(f)
    os.unlink(job_path)
    emit = make_emitter(fd, bytes.fromhex(job.pop("key")))
    root = os.geteuid() == 0
    try:
        nproc = job["limits"]["max_processes"]
        if job["uid"] is None:
            nproc += count_tasks(os.getuid())
        enter_namespaces(root)
        build_root(job)
        os.chdir("/")  # the supervisor keeps no directory of the old root
        supervise_child(job["limits"]["cpu_s"])
        enter_root(job)
        os.chdir(job["scratch"])
        restrict(job, nproc)
    except (SetupError, OSError) as error:
        emit('"setup_error": ' + json.dumps(str(error)))
        os._exit(3)
    run(job, emit, make_reader(calls))


def make_emitter(fd, key):
    """A function writing one result record: `<mac> {fields}`. The MAC (keyed BLAKE2b) is what
    the parent checks; the key lives only in this closure and never goes down any fd. Every
    callable here is bound now, before program code runs, so patching modules cannot reach it."""
    write, mac = os.write, blake2b

    def emit(fields):
        text = ("{" + fields + "}").encode()
        write(fd, mac(text, key=key, digest_size=16).hexdigest().encode() + b" " + text + b"\n")
    return emit


def make_reader(fd):
    """A function returning the next request line from the parent (decoded JSON), None at end
    of file. Bound now, like the emitter. A program may read requests itself: that only loses
    it calls it would have been asked to answer."""
    read, loads, bytes = os.read, json.loads, builtins.bytes
    buffer = bytearray()

    def next_request():
        while b"\n" not in buffer:
            chunk = read(fd, 65536)
            if not chunk:
                return None
            buffer.extend(chunk)
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        return loads(line)
    return next_request


def describe(error, str=str, type=type, BaseException=BaseException):
    """(type name, message) of an exception raised by program code, defensively."""
    try:
        return str(type(error).__name__), str(error)[:300]
    except BaseException:
        return "Exception", ""


def report(head, compute, emit, BaseException=BaseException, dumps=json.dumps,
           describe=describe, encode=encode, TypeError=TypeError, ValueError=ValueError,
           RecursionError=RecursionError):
    """Emit `head` + the value of `compute()` as data, or the exception it raised, or why the
    value is not data."""
    try:
        value = compute()
    except BaseException as error:
        kind, message = describe(error)
        emit(head + '"error": ' + dumps(kind) + ', "message": ' + dumps(message))
        return
    try:
        text = dumps(encode(value))
    except (TypeError, ValueError, RecursionError) as error:
        emit(head + '"unsupported": ' + dumps(describe(error)[1][:100]))
        return
    except BaseException as error:  # e.g. MemoryError while encoding
        emit(head + '"error": ' + dumps(describe(error)[0]) + ', "message": ""')
        return
    emit(head + '"value": ' + text)


def run(job, emit, next_request, exec=exec, compile=compile, eval=eval, enumerate=enumerate,
        BaseException=BaseException, dumps=json.dumps, describe=describe, _import=__import__,
        _exit=os._exit, report=report, decode=decode, NameError=NameError):
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
        if "serve" in test:
            # The test runs in the parent; answer its calls of the entry point, by value,
            # until it says the test is over ([index, null]) or closes the pipe.
            while (request := next_request()) is not None and request[1] is not None:
                def call(request=request):
                    if entry_point not in namespace:
                        raise NameError(f"name {entry_point!r} is not defined")
                    return namespace[entry_point](*decode(request[2]), **decode(request[3]))
                report('"call": [%d, %d], ' % (index, request[1]), call, emit)
            continue
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
            def evaluate(probe=probe):
                scope = {"__builtins__": pristine}
                for name in probe["modules"]:
                    scope[name] = _import(name)
                scope.update({n: namespace[n] for n in probe["names"] if n in namespace})
                return eval(probe["expr"], scope)
            report('"probe": [%d, %d], ' % (index, number), evaluate, emit)
    emit('"done": true')
    _exit(0)  # no atexit handlers, no flushing of whatever the program made of stdout

if __name__ == "__main__":  # so it is with -c; importing this module runs nothing
    main()
