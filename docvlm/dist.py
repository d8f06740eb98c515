"""Process-group plumbing for torchrun: one rank per GPU, contiguous shards, gather to rank 0.

world_size == 1 (plain `python launch.py`) is the degenerate case: no process group, every
collective is a local no-op, so the same code path serves one process and N.
"""

from __future__ import annotations

import logging
import math
import os
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Optional, TypeVar

import torch
import torch.distributed as dist

from docvlm.errors import UserError, user_message

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_gpu_request(num_gpus: int, device: str, ranks_per_node: int, available: int) -> str:
    """Decide the device kind for this job from processing.num_gpus / processing.device.

    Returns "cuda" or "cpu"; raises UserError naming both numbers when the request cannot be met.
    """
    if device == "cpu":
        return "cpu"
    if available == 0:
        if device == "cuda" or num_gpus > 0:
            raise UserError(f"processing.num_gpus={num_gpus} (device={device}) but 0 GPUs are visible "
                            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
                            "use processing.device=cpu or processing.num_gpus=0")
        return "cpu"
    if num_gpus > available:
        raise UserError(f"processing.num_gpus={num_gpus} but only {available} GPUs are visible: "
                        f"set processing.num_gpus={available} or fewer (0: all visible)")
    wanted = num_gpus or available
    if ranks_per_node > wanted:
        raise UserError(f"torchrun started {ranks_per_node} ranks per node but processing.num_gpus={num_gpus} "
                        f"allows {wanted} GPUs ({available} visible): start one rank per GPU "
                        "(torchrun --nproc_per_node) or raise processing.num_gpus")
    return "cuda"


def init_distributed(device_kind: str, timeout_s: int) -> DistContext:
    """Bind this rank's device, then join the process group (once; reused across Hydra multirun jobs)."""
    rank, world, local_rank = env_world()
    if device_kind == "cuda":
        torch.cuda.set_device(local_rank)  # BEFORE init: NCCL must see the right device
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        # gather_object of Python records travels over gloo; tensors (if any) over NCCL.
        backend = "cpu:gloo,cuda:nccl" if device_kind == "cuda" else "gloo"
        timeout = timedelta(seconds=timeout_s)
        store = _attempt_store(world, timeout)
        if store is None:
            dist.init_process_group(backend=backend, timeout=timeout)
        else:
            dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world, timeout=timeout)
        log.debug("process group up: rank %d/%d backend %s", rank, world, backend)
    return DistContext(rank, world, local_rank, device)


def _attempt_store(world: int, timeout: timedelta) -> Optional[dist.Store]:
    """Under torchrun, the agent's store, with keys of this attempt only.

    The agent's store outlives a worker restart (`torchrun --max-restarts`); the process group's
    rendezvous keys from the failed attempt are still there, and the restarted ranks would dial the
    dead ranks' addresses ("Gloo connectFullMesh failed ... Connection refused"). A prefix per attempt
    keeps each attempt apart. None outside torchrun's agent store: the default path then serves.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    base = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                         is_master=False, timeout=timeout)
    return dist.PrefixStore(f"docvlm/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", base)


def shard_range(n_items: int, rank: int, world_size: int) -> range:
    """Contiguous slice of `n_items` for `rank`; sizes differ by at most one, earlier ranks larger."""
    base, extra = divmod(n_items, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def balanced_ranges(costs: list[float], world_size: int) -> list[range]:
    """Contiguous ranges, in order, one per rank, covering every item once, that minimise the
    largest range cost (the linear partition problem); sizes follow the cost, not the count.

    Among partitions with that smallest maximum, each range aims at an even share of what is left,
    so ranks are not left idle needlessly: no range is empty while there are at least as many items
    as ranks. O(n log(total / precision)): n up to ~1e5 costs well under a second.
    """
    if world_size < 1:
        raise ValueError(f"balanced_ranges: world_size must be >= 1, got {world_size}")
    if any(not math.isfinite(c) or c < 0 for c in costs):
        raise ValueError("balanced_ranges: costs must be finite and >= 0")
    prefix = [0.0]
    for cost in costs:
        prefix.append(prefix[-1] + cost)
    limit = _smallest_bottleneck(prefix, world_size)
    need = _parts_needed(prefix, limit)
    ranges, start = [], 0
    for left in range(world_size, 0, -1):  # `left` ranges to go, this one included
        end = _pick_end(prefix, need, start, left, limit) if start < len(costs) else start
        ranges.append(range(start, end))
        start = end
    return ranges


def _furthest_end(prefix: list[float], start: int, limit: float) -> int:
    """The largest end such that items start..end-1 cost at most `limit` (always at least one item)."""
    return max(start + 1, bisect_right(prefix, prefix[start] + limit) - 1)


def _parts_needed(prefix: list[float], limit: float) -> list[int]:
    """need[i]: the fewest ranges of cost <= limit covering items i..n-1 (filling each as far as it goes)."""
    n = len(prefix) - 1
    need = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        need[i] = 1 + need[_furthest_end(prefix, i, limit)]
    return need


def _smallest_bottleneck(prefix: list[float], world_size: int) -> float:
    """The smallest range-cost limit that `world_size` ranges can meet, by binary search with a greedy
    check (fill each range as far as the limit allows); within 1e-12 of the total above the optimum."""
    total = prefix[-1]
    lo = max(total / world_size, max((b - a for a, b in zip(prefix, prefix[1:])), default=0.0))
    hi = total  # one range holding everything always fits
    while hi - lo > 1e-12 * total:  # ~40 halvings
        mid = (lo + hi) / 2
        if _greedy_parts(prefix, mid) <= world_size:
            hi = mid
        else:
            lo = mid
    return hi


def _greedy_parts(prefix: list[float], limit: float) -> int:
    parts, start, n = 0, 0, len(prefix) - 1
    while start < n:
        start = _furthest_end(prefix, start, limit)
        parts += 1
    return parts


def _pick_end(prefix: list[float], need: list[int], start: int, left: int, limit: float) -> int:
    """Where the range from `start` ends when `left` ranges (this one included) remain.

    Allowed ends keep this range within `limit` and leave a rest that `left - 1` ranges can cover
    (need[end] <= left - 1), with one item for each of them when there are items enough. Among those:
    the end nearest an even share of the remaining cost; among ends of equal cost (free items), the
    one nearest an even share of the remaining count.
    """
    n = len(prefix) - 1
    hi = _furthest_end(prefix, start, limit)
    lo = bisect_left(range(n + 1), True, lo=start + 1, hi=hi, key=lambda end: need[end] <= left - 1)
    if lo <= n - (left - 1):
        hi = min(hi, n - (left - 1))
    share = prefix[start] + (prefix[n] - prefix[start]) / left
    at = bisect_left(prefix, share, lo, hi + 1)
    end = min((max(lo, min(hi, e)) for e in (at - 1, at)), key=lambda e: abs(prefix[e] - share))
    same_lo = bisect_left(prefix, prefix[end], lo, hi + 1)
    same_hi = bisect_right(prefix, prefix[end], lo, hi + 1) - 1
    return min(max(round(start + (n - start) / left), same_lo), same_hi)


def gather_to_rank0(obj: T, ctx: DistContext) -> Optional[list[T]]:
    """torch.distributed.gather_object to rank 0: a list ordered by rank there, None elsewhere."""
    if not ctx.distributed:
        return [obj]
    out: Optional[list[Any]] = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather(obj: T, ctx: DistContext) -> list[T]:
    """torch.distributed.all_gather_object: every rank gets the list of every rank's `obj`, by rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_from_rank0(obj: T, ctx: DistContext) -> T:
    if not ctx.distributed:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def store() -> Optional[dist.Store]:
    """The process group's key-value store (for the cross-rank progress counter), if any."""
    if not dist.is_initialized():
        return None
    return dist.distributed_c10d._get_default_store()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class JobFailed(RuntimeError):
    """The job failed on some rank; raised on EVERY rank at the same point (the ranks stay in step).

    `user_message`: set when every failing rank failed through a UserError (shown as one line)."""

    def __init__(self, message: str, user_message: Optional[str] = None) -> None:
        super().__init__(message)
        self.user_message = user_message


class RanksOutOfStep(RuntimeError):
    """A collective itself failed (timeout, a rank gone): no later job can run safely in this process."""


def together(ctx: DistContext, step: Callable[[], T]) -> T:
    """Run `step` on this rank, then meet the other ranks: all go on, or all raise JobFailed.

    Used instead of a barrier: a rank that raised would never reach a barrier, leaving the others
    waiting (until the dist timeout) or, under multirun, meeting the next job's collectives.
    """
    own: Optional[Exception] = None
    result: Any = None
    try:
        result = step()
    except Exception as err:  # noqa: BLE001 - every rank hears of it below
        own = err
    mine = None if own is None else (f"{type(own).__name__}: {own}", user_message(own))
    errors = collective(lambda: all_gather(mine, ctx))
    if any(error is not None for error in errors):
        raise JobFailed(_describe([e and e[0] for e in errors]), _user_message(errors)) from own
    return result


def _user_message(errors: list[Optional[tuple[str, Optional[str]]]]) -> Optional[str]:
    """The users' one line when every failing rank failed through a UserError: the message itself when
    every rank (or rank 0 alone: its own checks) failed alike, else which rank said what."""
    failed = [(rank, e[1]) for rank, e in enumerate(errors) if e is not None]
    if any(message is None for _, message in failed):
        return None  # an internal error somewhere: the tracebacks matter
    ranks = [rank for rank, _ in failed]
    if len({message for _, message in failed}) == 1 and (len(failed) == len(errors) or ranks == [0]):
        return failed[0][1]
    return _describe([e and e[1] for e in errors])


def _describe(errors: list[Optional[str]]) -> str:
    """'rank 0,1: ValueError: ...; rank 3: ...': one entry per distinct error."""
    ranks_by_error: dict[str, list[str]] = {}
    for rank, error in enumerate(errors):
        if error is not None:
            ranks_by_error.setdefault(error, []).append(str(rank))
    return "; ".join(f"rank {','.join(ranks)}: {error}" for error, ranks in ranks_by_error.items())


def collective(action: Callable[[], T]) -> T:
    try:
        return action()
    except Exception as err:
        raise RanksOutOfStep(f"a collective failed, the ranks may be out of step: {type(err).__name__}: {err}") from err
