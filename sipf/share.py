"""`python -m sipf.share push|pull` (`make push`, `make pull`): share a run through a DVC remote.

``push`` is `dvc push --run-cache` plus the outputs the run-cache entries restore: DVC 3.67
uploads only the entries under .dvc/cache/runs, not the outputs they point to, and
`cache: false` outputs (every stage's metrics) are never pushed, so a colleague's
`dvc repro` finds an entry and reruns the stage anyway (docs/sharing.md). ``pull`` is
`dvc pull --run-cache`.

A fault is one line naming the remote (name, URL, endpoint) or the outputs, and exit status
1, instead of DVC's line per file or a bare "Forbidden". Both commands first ask the remote
once (unreachable, credentials refused), and ``pull`` looks up every object its targets need
before downloading any (a missing one is named by its output), so these faults change neither
the workspace nor the cache. A transfer that fails midway is reported the same way; running
the command again completes it (DVC skips what is already there).

Not a `sipf` subcommand: every stage lists sipf/cli.py as a dependency, so a command there
would make every finished run out of date.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import click

SHOWN = 5  # missing outputs named in the error; the rest are counted


class ShareError(Exception):
    """A push or pull that did not complete, in one line."""


@dataclass(frozen=True)
class Remote:
    name: str
    url: str
    endpoint: str | None = None

    def __str__(self) -> str:
        at = f" at {self.endpoint}" if self.endpoint else ""
        return f"remote '{self.name}' ({self.url}{at})"


def run_cache_entries(root: str) -> list[tuple[str, str]]:
    """(key, value) of every entry under the run cache's ``root``, sorted."""
    if not os.path.isdir(root):
        return []
    return [(key, value) for prefix in sorted(os.listdir(root))
            for key in sorted(os.listdir(os.path.join(root, prefix)))
            for value in sorted(os.listdir(os.path.join(root, prefix, key)))]


def remote_named(config: Any, name: str | None) -> Remote:
    """The remote ``name`` (default: the repository's default remote) of a DVC config."""
    remotes = config.get("remote", {})
    name = name or config.get("core", {}).get("remote")
    if not name:
        raise ShareError("no default DVC remote: add one with `dvc remote add -d NAME URL` "
                         "(docs/sharing.md)")
    if name not in remotes:
        raise ShareError(f"no DVC remote named '{name}' (known: {', '.join(sorted(remotes)) or 'none'})")
    return Remote(name, remotes[name]["url"], remotes[name].get("endpointurl"))


def _kinds(exc: BaseException) -> set[str]:
    """The class names of ``exc`` and of the exceptions it was raised from (botocore's are
    matched by name: a local remote has no botocore)."""
    names: set[str] = set()
    seen: BaseException | None = exc
    while seen is not None:
        names.update(cls.__name__ for cls in type(seen).__mro__)
        seen = seen.__cause__ or seen.__context__
    return names


def fault(exc: BaseException, remote: Remote) -> str | None:
    """What a transfer error says about the remote, or None when it is none of the known
    faults (unreachable, credentials refused)."""
    kinds = _kinds(exc)
    if kinds & {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionError",
                "ClientConnectorError", "ServerDisconnectedError"}:
        return f"cannot reach {remote}"
    if kinds & {"PermissionError", "NoCredentialsError", "PartialCredentialsError"}:
        if remote.url.startswith("s3://"):
            return (f"{remote} refused the credentials (check AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials)")
        return f"{remote} refused access (permission denied)"
    return None


# What DVC's and its transfers' errors can be, short of a bug: caught and reported in one line.
def _transfer_errors() -> tuple[type[BaseException], ...]:
    from dvc.exceptions import DvcException

    kinds: list[type[BaseException]] = [DvcException, OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError
        kinds += [BotoCoreError, ClientError]
    except ImportError:
        pass
    return tuple(kinds)


@contextmanager
def dvc_log() -> Iterator[list[logging.LogRecord]]:
    """DVC's warnings and errors while the block runs, kept instead of printed (one line
    per failed file, with tracebacks): the caller reports them in one line."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log = logging.getLogger("dvc")
    saved = log.handlers[:], log.propagate, log.level
    log.handlers, log.propagate = [Keep(logging.WARNING)], False
    log.setLevel(logging.WARNING)
    try:
        yield records
    finally:
        log.handlers, log.propagate = saved[0], saved[1]
        log.setLevel(saved[2])


def _failed(action: str, remote: Remote, exc: BaseException,
            records: list[logging.LogRecord]) -> ShareError:
    """One line for a transfer that failed midway: the fault behind it if known (from the
    exception or the first error DVC logged), else DVC's own message."""
    causes = [exc] + [r.exc_info[1] for r in records if r.exc_info and r.exc_info[1]]
    known = next((said for said in (fault(c, remote) for c in causes) if said), None)
    said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return ShareError(f"{action}: {known or f'{remote}: {said}'} midway; run the {action} "
                      "again to complete it")


class RemoteODBs:
    """The remote's object database for each hash name, built once per command: DVC builds
    a new filesystem for every `get_remote_odb` call, and with it a new S3 client, which reads
    botocore's endpoint and service files (~0.2 s of CPU each; py-spy)."""

    def __init__(self, repo: Any, remote: Remote) -> None:
        self.repo, self.remote, self.built = repo, remote, {}

    def __call__(self, hash_name: str) -> Any:
        if hash_name not in self.built:
            self.built[hash_name] = self.repo.cloud.get_remote_odb(self.remote.name,
                                                                   hash_name=hash_name)
        return self.built[hash_name]


def reach(odbs: RemoteODBs, action: str) -> None:
    """One request to the remote: a ShareError if it cannot be reached or refuses the
    credentials, before anything is transferred."""
    try:
        odb = odbs("md5")
        odb.fs.exists(odb.path)
    except _transfer_errors() as exc:
        said = fault(exc, odbs.remote) or f"{odbs.remote}: {exc}"
        raise ShareError(f"{action}: {said}; nothing was {action}ed") from exc


def needed(repo: Any, targets: Sequence[str], with_deps: bool) -> list[tuple[str, Any]]:
    """(output path, DVC output) of every cached output the targets name (every stage's
    without targets), each once."""
    if targets:
        infos = [info for target in targets
                 for info in repo.stage.collect_granular(target, with_deps=with_deps)]
    else:
        infos = [(stage, None) for stage in repo.index.stages]
    found: dict[str, Any] = {}
    for stage, filter_info in infos:
        for out in stage.outs:
            if not (out.use_cache and out.hash_info and out.hash_info.value):
                continue
            if filter_info and not (filter_info == out.fs_path
                                    or filter_info.startswith(out.fs_path + os.sep)
                                    or out.fs_path.startswith(filter_info + os.sep)):
                continue
            found.setdefault(out.def_path, out)
    return sorted(found.items())


def _present(odbs: RemoteODBs, wanted: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(hash name, oid) of the ``wanted`` objects (hash name -> oids) the remote holds, in
    one query per hash name."""
    return {(name, oid) for name, oids in wanted.items() if oids
            for oid in odbs(name).oids_exist(sorted(oids))}


def _listing(out: Any, odb: Any) -> list[dict] | None:
    """A directory output's listing, from the local cache or else read from the remote
    without storing it; None when neither has it."""
    oid = out.hash_info.value
    if out.cache.exists(oid):
        return json.loads(out.cache.fs.cat_file(out.cache.oid_to_path(oid)))
    try:
        return json.loads(odb.fs.cat_file(odb.oid_to_path(oid)))
    except FileNotFoundError:
        return None


def missing_on_remote(odbs: RemoteODBs, outs: list[tuple[str, Any]]) -> list[str]:
    """The outputs (a directory's files as ``dir/file``) whose objects are neither in the
    local cache nor on the remote. Reads a directory's listing from the remote without
    storing it: a pull refused here leaves the cache as it was."""
    wanted: dict[tuple[str, str], list[str]] = {}  # (hash name, oid) -> the outputs it is
    gone: list[str] = []  # directory outputs whose listing neither has
    for path, out in outs:
        oid = out.hash_info.value
        if out.hash_info.isdir:
            listing = _listing(out, odbs(out.hash_name))
            if listing is None:
                gone.append(path)
                continue
            for entry in listing:
                if not out.cache.exists(entry["md5"]):
                    wanted.setdefault((out.hash_name, entry["md5"]), []).append(
                        f"{path}/{entry['relpath']}")
        elif not out.cache.exists(oid):
            wanted.setdefault((out.hash_name, oid), []).append(path)
    by_name: dict[str, set[str]] = {}
    for name, oid in wanted:
        by_name.setdefault(name, set()).add(oid)
    present = _present(odbs, by_name)
    return sorted(gone + [path for key, paths in wanted.items() if key not in present
                          for path in paths])


def resend(odbs: RemoteODBs, outs: list[tuple[str, Any]]) -> int:
    """Upload the objects of ``outs`` that the local cache has and the remote lacks, asking
    the remote for each (not DVC's index of it); how many were uploaded."""
    local: dict[tuple[str, str], Any] = {}  # (hash name, oid) -> the cache that has it
    for _, out in outs:
        oids = [out.hash_info.value]
        if out.hash_info.isdir and out.cache.exists(oids[0]):
            listing = json.loads(out.cache.fs.cat_file(out.cache.oid_to_path(oids[0])))
            oids += [entry["md5"] for entry in listing]
        for oid in oids:
            if out.cache.exists(oid):
                local.setdefault((out.hash_name, oid), out.cache)
    by_name: dict[str, set[str]] = {}
    for name, oid in local:
        by_name.setdefault(name, set()).add(oid)
    present = _present(odbs, by_name)
    for (name, oid), cache in sorted(local.items()):
        if (name, oid) not in present:
            odbs(name).add(cache.oid_to_path(oid), cache.fs, oid)
    return len(local) - len(present)


def _listed(paths: list[str]) -> str:
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(paths[:SHOWN]) + more


@contextmanager
def opened(action: str) -> Iterator[Any]:
    """The DVC repository of the current directory, locked for the whole command as DVC's
    own commands lock it: DVC then reads dvc.yaml, dvc.lock and params.yaml into its index
    once for the command, not again in each step (its `push` and `pull` drop the index
    when they take the lock, and again when they release it)."""
    from dvc.lock import LockError
    from dvc.repo import Repo, lock_repo

    with Repo() as repo, ExitStack() as stack:
        try:
            stack.enter_context(lock_repo(repo))
        except LockError as exc:
            raise ShareError(f"{action}: {exc}") from exc
        yield repo


def push(targets: Sequence[str] = (), remote: str | None = None, with_deps: bool = False) -> str:
    """Push the targets' outputs (every output without targets; paths relative to the
    current directory, in a DVC repository), the run cache and the outputs its entries
    restore; the summary line, or a ShareError."""
    with opened("push") as repo, dvc_log() as records:
        where = remote_named(repo.config, remote)
        odbs = RemoteODBs(repo, where)
        reach(odbs, "push")
        try:
            pushed = repo.push(list(targets) or None, remote=where.name, with_deps=with_deps,
                               run_cache=True)
            entries = run_cache_entries(repo.stage_cache.cache_dir)
            # Objects deleted from the remote since an earlier push: `repo.push` (and
            # DataCloud.push) trusted DVC's index of what the remote holds and left them
            # unsent (measured); asked of the remote itself, they are uploaded here.
            pushed += resend(odbs, needed(repo, targets, with_deps))
            failed = 0
            for objs in repo.stage_cache.get_used_objs(entries).values():
                result = repo.cloud.push(objs, remote=where.name)
                pushed += len(result.transferred)
                failed += len(result.failed)
            if failed:
                from dvc.exceptions import UploadError
                raise UploadError(failed)
        except _transfer_errors() as exc:
            raise _failed("push", where, exc, records) from exc
    return f"{pushed} files pushed to {where} ({len(entries)} run-cache entries)"


def pull(targets: Sequence[str] = (), remote: str | None = None, with_deps: bool = False,
         run_cache: bool = True) -> str:
    """Pull the targets' outputs (every output without targets) and the run cache, once the
    remote is known to hold every object they need; the summary line, or a ShareError."""
    with opened("pull") as repo, dvc_log() as records:
        where = remote_named(repo.config, remote)
        odbs = RemoteODBs(repo, where)
        reach(odbs, "pull")
        try:
            lost = missing_on_remote(odbs, needed(repo, targets, with_deps))
        except _transfer_errors() as exc:
            raise _failed("pull", where, exc, records) from exc
        if lost:
            raise ShareError(f"pull: {where} lacks {_listed(lost)}; nothing was pulled (push "
                             "it again from a clone that has it, or pull other targets)")
        try:
            result = repo.pull(list(targets) or None, remote=where.name, with_deps=with_deps,
                               run_cache=run_cache)
        except _transfer_errors() as exc:
            raise _failed("pull", where, exc, records) from exc
    return f"{result['stats']['fetched']} files pulled from {where}"


targets_argument = click.argument("targets", nargs=-1)
remote_option = click.option("-r", "--remote", default=None,
                             help="The DVC remote (default: the repository's default remote).")
with_deps_option = click.option("--with-deps", is_flag=True,
                                help="Also the outputs of every stage the targets depend on.")


def _one_line(action: Any, **kwargs: Any) -> None:
    try:
        click.echo(action(**kwargs))
    except ShareError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Share a run through its DVC remote (docs/sharing.md)."""


@main.command("push")
@targets_argument
@remote_option
@with_deps_option
def push_command(targets: tuple[str, ...], remote: str | None, with_deps: bool) -> None:
    """Push outputs (stage names or paths; all without TARGETS), the run cache and the
    outputs its entries restore."""
    _one_line(push, targets=targets, remote=remote, with_deps=with_deps)


@main.command("pull")
@targets_argument
@remote_option
@with_deps_option
@click.option("--run-cache/--no-run-cache", default=True, show_default=True,
              help="Also the run cache (what `dvc repro --pull` restores a stage from).")
def pull_command(targets: tuple[str, ...], remote: str | None, with_deps: bool,
                 run_cache: bool) -> None:
    """Pull outputs (stage names or paths; all without TARGETS), once the remote is known to
    hold them."""
    _one_line(pull, targets=targets, remote=remote, with_deps=with_deps, run_cache=run_cache)


if __name__ == "__main__":
    main()
