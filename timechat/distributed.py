"""All launcher / environment handling for multi-process training in one place.

Reads what ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) or SLURM (``SLURM_PROCID``,
``SLURM_NTASKS``, ``SLURM_LOCALID``; ``MASTER_ADDR``/``MASTER_PORT`` must be exported by the job
script) sets, initialises the process group (NCCL with CUDA, gloo otherwise) and picks the device.
Without those variables everything is a single-process no-op, so the same entry point runs under
``python train.py`` and ``torchrun --nproc_per_node=8 train.py``.

Unlike the original (``timechat/common/dist_utils.py``) this does not silence ``print`` on non-zero
ranks and uses a finite timeout; logging is configured per rank in ``timechat.logs``.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "cleanup",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "read_launcher_env",
]


class DistInfo(NamedTuple):
    """What ``init_distributed`` set up."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None  # None when single-process (no process group)

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def read_launcher_env(env: dict[str, str] | None = None) -> tuple[int, int, int, str]:
    """Rank, world size and local rank from the launcher's environment variables.

    Args:
        env: the environment (default ``os.environ``).

    Returns:
        ``(rank, world_size, local_rank, source)`` with ``source`` one of ``"torchrun"``,
        ``"slurm"``, ``"none"`` (single process).
    """
    env = os.environ if env is None else env

    def as_int(name: str) -> int:
        try:
            return int(env[name])
        except ValueError as e:
            raise ValueError(f"environment variable {name}={env[name]!r} is not an integer") from e

    if "WORLD_SIZE" in env and "RANK" in env:
        local = as_int("LOCAL_RANK") if "LOCAL_RANK" in env else 0
        return as_int("RANK"), as_int("WORLD_SIZE"), local, "torchrun"
    # A SLURM allocation with one task (e.g. `sbatch` running plain python) is single-process.
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and as_int("SLURM_NTASKS") > 1:
        local = as_int("SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        return as_int("SLURM_PROCID"), as_int("SLURM_NTASKS"), local, "slurm"
    return 0, 1, 0, "none"


def init_distributed(backend: str | None = None, timeout_minutes: float = 60.0) -> DistInfo:
    """Initialise the process group from the launcher's environment, or do nothing.

    Args:
        backend: ``"nccl"``, ``"gloo"``, ...; None picks NCCL when CUDA is available, else gloo.
        timeout_minutes: collective timeout. Rank 0 writing a large checkpoint while the others
            wait at a barrier must fit in it (the original used 365 days).

    Returns:
        A ``DistInfo``. The device is ``cuda:{local_rank}`` (made current) when CUDA is available,
        else CPU.

    Raises:
        RuntimeError: SLURM launch without ``MASTER_ADDR``/``MASTER_PORT`` in the environment.
    """
    rank, world_size, local_rank, source = read_launcher_env()
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size == 1 and source == "none":
        return DistInfo(0, 1, 0, device, None)
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device, dist.get_backend())

    if source == "slurm":
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise RuntimeError(f"SLURM launch needs {missing} exported by the job script")
        # env:// reads these; torchrun exports them itself.
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world_size))
        os.environ.setdefault("LOCAL_RANK", str(local_rank))
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    kwargs: dict[str, Any] = {}
    if backend == "nccl":
        kwargs["device_id"] = device  # binds the communicator to this rank's GPU up front
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(minutes=timeout_minutes),
        **kwargs,
    )
    log.info("initialised %s process group: rank %d/%d (local %d) on %s via %s",
             backend, rank, world_size, local_rank, device, source)
    return DistInfo(rank, world_size, local_rank, device, backend)


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def barrier() -> None:
    """Block until all ranks arrive; no-op without a process group."""
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a new tensor; the input is not modified).

    Args:
        tensor: a tensor on this rank's communication device (CUDA for NCCL, CPU for gloo).

    Returns:
        The element-wise mean over ranks (floating point), or a copy in a single process.
    """
    out = tensor.detach().clone()
    if not out.is_floating_point():
        out = out.float()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (picklable objects); identity in a single process."""
    if not is_distributed():
        return obj
    box = [obj if get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup(timeout_s: float = 120.0) -> None:
    """Destroy the process group if one exists (call at the end of an entry point).

    The ranks meet at a barrier first, so that no rank tears the group (and rank 0 the store it
    hosts) down while another still finishes its last step: a 2-process gloo run was seen to hang
    at exit without it. Under gloo the barrier gives up after ``timeout_s`` (a rank that died),
    with a warning, and the group is destroyed anyway.
    """
    if not is_distributed():
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=timeout_s))
        else:
            dist.barrier()
    except Exception as exc:  # noqa: BLE001 - a peer that is gone must not keep this one alive
        log.warning("ranks did not meet before shutdown (%s); destroying the group", exc)
    dist.destroy_process_group()
