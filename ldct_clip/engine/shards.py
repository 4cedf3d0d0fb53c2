"""Split a cohort of cases over processes: torch.distributed ranks (``torchrun``) or scheduler array jobs.

Cases are dealt round-robin in the order :func:`~ldct_clip.ct.io.cases.find_cases` gives them (sorted by name), so
every process that sees the same input folder computes the same split without talking to the others: shard
``i`` of ``n`` takes cases ``i, i + n, i + 2n, ...``. Under ``torchrun`` the shard is the process's rank in the
default process group; ``ldct-clip denoise --shard i/n`` names it explicitly (a Slurm array job passes
``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``). At the end of a distributed run, :func:`gather` brings
every rank's results to all ranks, so that rank 0 can write one summary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

import torch.distributed as dist

from ldct_clip.errors import InputError

__all__ = ["Shard", "distributed_shard", "gather", "parse_shard", "resolve_shard", "select"]

T = TypeVar("T")

#: ``(index, count)`` with ``0 <= index < count``.
Shard = tuple[int, int]


def parse_shard(shard: str | Sequence[int]) -> Shard:
    """``"i/n"`` (or ``(i, n)``), 0-based: shard ``i`` of ``n``."""
    if isinstance(shard, str):
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if match is None:
            raise InputError(f"shard must look like i/n (e.g. 0/4: the first of 4 shards), got {shard!r}")
        index, count = int(match.group(1)), int(match.group(2))
    else:
        try:
            index, count = (int(v) for v in shard)
        except (TypeError, ValueError):
            raise InputError(f"shard must be i/n or a pair (i, n), got {shard!r}") from None
    if count < 1 or not 0 <= index < count:
        raise InputError(f"shard {index}/{count}: need 0 <= i < n (shards are numbered from 0)")
    return index, count


def distributed_shard() -> Shard | None:
    """``(rank, world_size)`` of the default process group when one with several processes is initialised."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return None


def resolve_shard(shard: str | Sequence[int] | None) -> Shard | None:
    """The explicit ``shard``, else the process group's, else ``None`` (all cases)."""
    if shard is not None and not (isinstance(shard, str) and not shard.strip()):
        explicit = parse_shard(shard)
        group = distributed_shard()
        if group is not None and group != explicit:
            raise InputError(f"shard {explicit[0]}/{explicit[1]} contradicts the process group (rank {group[0]} "
                             f"of {group[1]}); leave shard unset under torchrun")
        return explicit
    return distributed_shard()


def select(items: Sequence[T], shard: Shard | None) -> list[T]:
    """The items of ``shard`` (round-robin), or all of them."""
    if shard is None:
        return list(items)
    index, count = shard
    return list(items[index::count])


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` outside a distributed run)."""
    if distributed_shard() is None:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
