"""Training in several processes (docs/scale.md): SFT, the PRM and ORPO trained by their
stages as 2 gloo processes under torchrun follow one process's loss curve at the same
global batch.

Not bit for bit: each process pads its half-batch to its own longest sequence and gloo sums
the two gradients, so float reductions run in another order (a relative 1e-8 to 1e-7 a step,
growing over the steps). Mathematically the two runs take the same steps: the same examples
each global step (one seeded order, each process a slice), SFT's loss over the global count
of completion tokens (the Trainer's), ORPO's mean over equal halves, the PRM's over the
global count of labelled steps (sipf.pipeline.prm), and no dropout (each process would draw
its own masks; tests.helpers.DISTRIBUTED_LOOP). Each 2-process stage starts three Python
processes (~10 s of imports each on 2 cores), so these are marked `distributed` and run by
`make test-distributed` (2-3 min), not `make test`.
"""

from __future__ import annotations

import json
import shutil

import pytest

from sipf.config import Params, from_mapping
from sipf.errors import ConfigError
from tests.helpers import labelled_project, logged_curve, run, with_processes

TOLERANCE = 1e-5  # relative, per logged point; measured at most 1.3e-7 (docs/scale.md)
STAGES = (("sft", "--out", "models/sft_again", "--live-dir", "metrics/sft_again"),
          ("train_prm", "--iteration", "1", "--policy", "models/sft"),
          ("align", "--iteration", "1", "--policy", "models/sft"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{1: project, 2: project}: one project after SFT (again), train_prm and align with 1
    and with 2 processes."""
    base = tmp_path_factory.mktemp("ddp")
    projects = {1: base / "one", 2: base / "two"}
    projects[1].mkdir()
    labelled_project(projects[1])
    shutil.copytree(projects[1], projects[2])
    with_processes(projects[2] / "params.yaml", 2)
    for root in projects.values():
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(root)
            for args in STAGES:
                result = run(*args)
                assert result.exit_code == 0, f"{root.name} {args[0]}: {result.output}"
    return projects


def _json(root, path):
    return json.loads((root / path).read_text())


@pytest.mark.distributed
def test_sft_trained_by_two_processes_follows_the_one_process_curve(runs):
    metrics = "metrics/sft_again/plots/metrics/loss.tsv"
    one, two = (logged_curve(runs[n] / metrics) for n in (1, 2))
    assert len(one) == 6  # every step (the first among them)
    assert two == pytest.approx(one, rel=TOLERANCE)
    # Rank 0 probed at the same steps (each probe's stop decision broadcast to rank 1).
    probes = [[point["step"] for point in _json(runs[n], "metrics/sft_again/accuracy_curve.json")]
              for n in (1, 2)]
    assert probes[0] == probes[1] == [3, 6]


@pytest.mark.distributed
def test_prm_trained_by_two_processes_follows_the_one_process_curve(runs):
    one, two = (_json(runs[n], "metrics/it1/prm.json") for n in (1, 2))
    assert (one["train_paths"], one["train_steps"]) == (12, 9)  # 3 epochs of 3 global batches
    assert two["train_steps"] == one["train_steps"]
    for a, b in zip(one["per_epoch"], two["per_epoch"], strict=True):
        for key in ("train_loss", "val_loss"):
            assert b[key] == pytest.approx(a[key], rel=TOLERANCE), (key, a, b)
    assert two["best_epoch"] == one["best_epoch"]


@pytest.mark.distributed
def test_orpo_trained_by_two_processes_follows_the_one_process_curve(runs):
    for metric in ("loss", "nll_loss", "logps/chosen", "logps/rejected"):
        one, two = (logged_curve(runs[n] / "metrics/it1/align/plots/metrics" / f"{metric}.tsv")
                    for n in (1, 2))
        assert len(one) == 6, metric
        assert two == pytest.approx(one, rel=TOLERANCE), metric


@pytest.mark.distributed
def test_only_rank_0_writes(runs):
    """Both runs leave the same files, and no temporaries beside them: rank 1 wrote into a
    scratch directory (sipf.storage)."""
    def files(root):
        return sorted(p.relative_to(root).as_posix() for d in ("models", "metrics")
                      for p in (root / d).rglob("*"))

    assert files(runs[2]) == files(runs[1])
    assert "models/it1/prm/prm.json" in files(runs[2])
    assert [f for f in files(runs[2]) if "/." in f] == []


@pytest.mark.parametrize("section", ["sft", "prm", "align"])
def test_a_global_batch_that_does_not_divide_is_refused(section):
    with pytest.raises(ConfigError, match=rf"^{section}.batch_size: 6 sequences per step do "
                                          r"not divide among distributed.nproc_per_node = 4"):
        from_mapping(Params, {"distributed": {"nproc_per_node": 4}, section: {"batch_size": 6}})
