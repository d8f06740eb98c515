"""The host allocator keeps freed memory: a worker thread's big temporaries stop page-faulting."""

import subprocess
import sys

import pytest

from docvlm.models.host_memory import _mallopt_all

# In a fresh interpreter (the setting is process-wide and this process's Prefetchers applied it already):
# minor page faults of a pool's worker thread (it lives across batches) allocating, filling and freeing
# 48 MB ten times, before and after.
FAULTS = """
import resource, torch
from concurrent.futures import ThreadPoolExecutor
from docvlm.models.host_memory import keep_freed_memory

def cycles():
    for _ in range(10):
        torch.empty(48 << 20, dtype=torch.uint8).fill_(1)

def faults(worker):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    worker.submit(cycles).result()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

with ThreadPoolExecutor(1) as worker:
    default = faults(worker)
    applied = keep_freed_memory()
    faults(worker)  # the kept heap grows to the peak once
    print(default, faults(worker), applied)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _mallopt_all(()), reason="glibc only")
def test_freed_memory_is_reused_not_faulted_in_again():
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True).stdout
    default, kept, applied = out.split()
    assert applied == "True"
    assert int(default) > 10 * 12_288 // 2  # 48 MB a cycle is 12,288 pages: faulted in again every cycle
    assert int(kept) < 12_288 // 4  # not even one cycle's worth
