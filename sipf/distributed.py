"""Training in several processes: which process this is, the torchrun command a training
stage re-launches itself under, and the two collectives the pipeline's own code needs.

The Trainer (through accelerate) sets up DDP itself from torchrun's environment (gloo on CPU,
NCCL on GPU); this module adds only what the Trainer does not: one writer (global rank 0:
``sipf.storage`` sends every other rank's writes to a scratch directory), one decision for
every rank (SFT's stop rule) and losses averaged over every rank (the PRM's). torch is
imported inside the collectives: ``sipf.storage`` imports this module, and most stages never
need torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from sipf.errors import ConfigError


def world_size() -> int:
    """Processes training together: torchrun's WORLD_SIZE, 1 outside torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes the outputs: global rank 0, or the only process."""
    return rank() == 0


def launched() -> bool:
    """Whether this process was started by torchrun (then it never re-launches itself)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def per_device_batch(global_batch: int, key: str, processes: int | None = None) -> int:
    """The batch each process takes so that ``processes`` of them (default: the world size)
    make one optimizer step of ``global_batch`` sequences, as one process would; a
    ConfigError naming ``key`` when it does not divide."""
    processes = processes or world_size()
    if global_batch % processes:
        raise ConfigError(f"{key}: {global_batch} sequences per step do not divide among "
                          f"{processes} processes (distributed.nproc_per_node); choose a "
                          f"multiple of {processes}")
    return global_batch // processes


def torchrun_command(nproc: int, module_args: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run`` starting ``nproc`` copies of ``python -m
    module_args...`` on this machine (``--standalone``: a free local port, no rendezvous
    server to name)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", *module_args]


def _group_ready() -> bool:
    import torch.distributed as dist

    return world_size() > 1 and dist.is_available() and dist.is_initialized()


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (unchanged in one process): a decision only rank 0
    computed, which every rank must act on alike."""
    if not _group_ready():
        return flag
    import torch.distributed as dist

    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def sum_across(values: Sequence[float]) -> list[float]:
    """Each value summed over every rank (unchanged in one process)."""
    if not _group_ready():
        return list(values)
    import torch
    import torch.distributed as dist

    # NCCL reduces GPU tensors only, gloo CPU ones; float64 keeps counts exact.
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()
