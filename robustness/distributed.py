"""Running under ``torchrun``: the process group, this process's place in it, and sharded sweeps.

``torchrun --nproc-per-node N -m robustness ...`` starts N copies of the command with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set. :func:`process_group` joins them into
one group for the body of a ``with`` (NCCL with CUDA, gloo otherwise) and gives each
process its device (``cuda:LOCAL_RANK``); :func:`robustness.study.runner.run_study` shares a
study's units out over them with :func:`shard`. Without torchrun, or with one process, no
group is made and every helper here is a no-op, so single-process use is unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .errors import RobustnessError

T = TypeVar("T")

# The barrier that ends a sharded sweep waits for the slowest rank's share of the units,
# which can take hours; if a rank fails, torchrun stops the others, so nothing hangs that long.
SWEEP_TIMEOUT = timedelta(hours=24)


def rank() -> int:
    """This process's rank over all nodes, as torchrun set it (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """The number of processes torchrun started over all nodes (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Whether this is rank 0, the one process that writes shared files and prints."""
    return rank() == 0


@contextmanager
def process_group(
    device: torch.device, backend: str | None = None, timeout: timedelta | None = None
) -> Iterator[torch.device]:
    """Join torchrun's processes into one group for the body; yield the device this process works on.

    With ``WORLD_SIZE`` > 1 a CUDA ``device`` becomes ``cuda:LOCAL_RANK`` and the group uses
    NCCL, any other device gloo (``backend`` overrides; ``timeout`` bounds every collective).
    With one process it yields ``device`` and does nothing; a group that already exists is
    used and left open.
    """
    if world_size() == 1:
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if dist.is_initialized():
        yield device
        return
    dist.init_process_group(backend or ("nccl" if device.type == "cuda" else "gloo"), timeout=timeout)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run by rank 0 alone, its result returned on every rank (any picklable value).

    A :class:`RobustnessError` it raises is raised on every rank, so that each prints
    the same one-line error instead of losing its connection. Without a group: ``fn()``.
    """
    if not dist.is_initialized():
        return fn()
    box: list = [None, None]
    if is_main():
        try:
            box[0] = fn()
        except RobustnessError as err:
            box[1] = err
    dist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        raise box[1]
    return box[0]


def gathered(fn: Callable[[], T]) -> list[T]:
    """``fn()`` run by every rank; every rank gets the list of all ranks' results, in rank order (each
    picklable). A :class:`RobustnessError` raised on any rank is raised on all of them (the lowest
    rank's). Without a group: ``[fn()]``."""
    if not dist.is_initialized():
        return [fn()]
    result = error = None
    try:
        result = fn()
    except RobustnessError as err:
        error = err
    boxes: list = [None] * dist.get_world_size()
    dist.all_gather_object(boxes, (result, error))
    first = next((err for _, err in boxes if err is not None), None)
    if first is not None:
        raise first
    return [result for result, _ in boxes]


def on_all(fn: Callable[[], T]) -> T:
    """``fn()`` run by every rank, then a barrier; a :class:`RobustnessError` raised on any rank is
    raised on all of them (the lowest rank's). Without a group: ``fn()``."""
    return gathered(fn)[rank()]


def all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """The sums of ``values`` over all ranks, in float64 (``values`` themselves without a group)."""
    if not dist.is_initialized():
        return list(values)
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in :class:`DistributedDataParallel` inside a group (gradients averaged over
    the ranks at every backward pass), ``model`` itself without one."""
    if not dist.is_initialized():
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``, round-robin: items ``rank, rank + N, rank + 2N, ...``."""
    return list(items[rank()::world_size()])
