"""`python -m sipf.share` (`make push`): push the outputs every local run-cache entry restores.

`dvc push --run-cache` (DVC 3.67) uploads only the entries under .dvc/cache/runs, not the
outputs they point to, and `cache: false` outputs (every stage's metrics) are never pushed,
so a colleague's `dvc repro` finds an entry and reruns the stage anyway (docs/sharing.md).
DVC has no command for it; this asks its own run cache which objects the entries use.
"""

from __future__ import annotations

import os


def run_cache_entries(root: str) -> list[tuple[str, str]]:
    """(key, value) of every entry under the run cache's ``root``, sorted."""
    if not os.path.isdir(root):
        return []
    return [(key, value) for prefix in sorted(os.listdir(root))
            for key in sorted(os.listdir(os.path.join(root, prefix)))
            for value in sorted(os.listdir(os.path.join(root, prefix, key)))]


def main() -> None:
    from dvc.repo import Repo

    with Repo() as repo:
        entries = run_cache_entries(repo.stage_cache.cache_dir)
        pushed = sum(len(repo.cloud.push(objs).transferred)
                     for objs in repo.stage_cache.get_used_objs(entries).values())
        print(f"{len(entries)} run-cache entries: {pushed} files pushed")


if __name__ == "__main__":
    main()
