"""dvc.yaml's code dependencies are each stage's import closure, no more and no less.

DVC re-runs a stage when one of its deps changes, so a module a stage imports but does not
list lets an edit leave stale outputs "up to date", and a module it lists but never imports
re-runs it for nothing. The closure is computed from the source (every ``import`` anywhere in
a module, lazy ones too), starting at ``sipf/cli.py`` and the stage's script.

``python tests/test_dvc_deps.py`` prints each stage's closure, to paste into dvc.yaml.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# Files a module reads as source text instead of importing: the sandbox runs its runner
# in a child process as `python -I -S -c <runner.py's text>`.
READS_AS_TEXT = {"sipf/code/sandbox/__init__.py": ["sipf/code/sandbox/runner.py"]}


def module_file(name: str) -> str | None:
    """The repository file of module ``name`` (``sipf.x.y``), or None outside ``sipf``."""
    if name != "sipf" and not name.startswith("sipf."):
        return None
    base = REPO / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(REPO).as_posix()
    return None


def imported(path: str) -> set[str]:
    """The sipf files ``path`` imports (its own package's ``__init__`` included)."""
    tree = ast.parse((REPO / path).read_text(), filename=path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    files = set()
    for name in names:
        parts = name.split(".")
        # importing sipf.a.b runs sipf/__init__.py and sipf/a/__init__.py first
        for i in range(1, len(parts) + 1):
            found = module_file(".".join(parts[:i]))
            if found:
                files.add(found)
    return files | set(READS_AS_TEXT.get(path, ()))


def closure(*roots: str) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(imported(path) - seen)
    return seen


def stages() -> dict[str, dict]:
    """Every stage of dvc.yaml with its cmd and deps (a foreach stage once, as its template)."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in spec.items()}


def stage_closure(cmd: str) -> set[str]:
    words = cmd.split()
    assert words[0] == "sipf", f"not a sipf command: {cmd}"
    return closure("sipf/cli.py", f"sipf/stages/{words[1]}.py")


def code_deps(deps: list[str]) -> set[str]:
    return {d for d in deps if d.startswith("sipf/")}


def covered(dep: str) -> set[str]:
    path = REPO / dep
    if path.is_dir():
        return {p.relative_to(REPO).as_posix() for p in path.rglob("*.py")}
    return {dep}


def test_every_stage_lists_exactly_the_modules_it_imports():
    problems = []
    for name, stage in stages().items():
        needed = stage_closure(stage["cmd"])
        listed = code_deps(stage.get("deps", []))
        listed_files = set().union(*map(covered, listed)) if listed else set()
        missing = sorted(needed - listed_files)
        unused = sorted(d for d in listed if not covered(d) <= needed)
        if missing:
            problems.append(f"{name}: dvc.yaml misses {', '.join(missing)}")
        if unused:
            problems.append(f"{name}: dvc.yaml lists modules it does not import: "
                            f"{', '.join(unused)}")
    assert not problems, "\n".join(problems)


def test_the_closure_follows_lazy_imports_and_packages():
    # the registry imports MBPP's loader inside a function; the code kind's judge runs the
    # sandbox, whose runner is read as text
    found = closure("sipf/tasks/registry.py")
    assert {"sipf/code/mbpp.py", "sipf/code/judge.py", "sipf/code/sandbox/__init__.py",
            "sipf/code/sandbox/runner.py", "sipf/__init__.py"} <= found
    # a stage that judges nothing does not depend on the sandbox or load a model it needs not
    prefs = stage_closure("sipf prefs --iteration 1")
    assert "sipf/pipeline/preferences.py" in prefs
    assert not {"sipf/models.py", "sipf/code/sandbox/__init__.py"} & prefs


if __name__ == "__main__":
    for name, stage in stages().items():
        print(f"{name}:")
        for path in sorted(stage_closure(stage["cmd"])):
            print(f"  - {path}")
    sys.exit(0)
