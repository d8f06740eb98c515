"""Contiguous shards and world=1 collectives."""

import pytest
import torch

from docvlm.dist import DistContext, gather_to_rank0, shard_range


@pytest.mark.parametrize("n, world", [(7, 1), (7, 2), (7, 3), (2, 3), (0, 2), (100, 8), (5, 5)])
def test_shards_are_contiguous_balanced_and_cover_everything(n, world):
    shards = [shard_range(n, r, world) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(n))  # contiguous, in order, complete
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_fewer_documents_than_ranks_leaves_idle_ranks_with_empty_shards():
    assert [len(shard_range(2, r, 3)) for r in range(3)] == [1, 1, 0]


def test_world_of_one_gathers_locally():
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert gather_to_rank0({"a": 1}, ctx) == [{"a": 1}]


def test_ranks_of_a_node_share_the_cores_the_process_may_use(monkeypatch):
    """Slurm's --cpus-per-task and taskset restrict the process to some cores; os.cpu_count() still
    counts the node's, and dividing those would oversubscribe the allowed ones."""
    from docvlm import run

    monkeypatch.delenv("DOCVLM_CPU_THREADS", raising=False)
    monkeypatch.setattr(run.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.setattr(run.os, "cpu_count", lambda: 64)
    before = torch.get_num_threads()
    try:
        run._share_cpu_threads(2)
        assert torch.get_num_threads() == 3
        monkeypatch.setenv("DOCVLM_CPU_THREADS", "5")
        run._share_cpu_threads(2)
        assert torch.get_num_threads() == 5
    finally:
        torch.set_num_threads(before)
