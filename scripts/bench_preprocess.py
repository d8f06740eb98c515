"""The processor on this host: how fast a batch's first-turn inputs are made, one thread and the prefetch pools.

    python scripts/bench_preprocess.py [--model qwen3_vl_8b] [--docs 56] [--device cuda]

A run's first batch has nothing to overlap its preprocessing with (the stage figure `inputs_s`), so
its documents wait for the processor: this says whether that is the processor's own cost, the
staging (cast to the model's dtype, page-locked copy) or the pool not running in parallel.
The model is the benchmark's replica (random full-size weights, the real processor settings), the
documents the benchmark's workload (invoices and receipts half each). Freed memory is kept from the
start, as the entry points do (host_memory.py; scripts/bench_processor_threads.py compares glibc's
default). Prints ms, minor page faults and kernel ms a document for: one thread, processor only | one
thread, processor + staging | the `submit` pool end to end (as the engine waits for a first batch) |
the same pool without page-locking.
"""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from docvlm.bench.workload import make_workload  # noqa: E402
from docvlm.config import TokenBudgets  # noqa: E402
from docvlm.inputs import LoadOptions, load_image  # noqa: E402
from docvlm.models.host_memory import keep_freed_memory  # noqa: E402
from docvlm.models.loading import load_model  # noqa: E402
from docvlm.models.prefetch import Prefetcher  # noqa: E402
from docvlm.models.protocol import ModelSpec, Request  # noqa: E402


def workload_requests(docs: int) -> list[Request]:
    """The first turns of the benchmark's workload (invoices and receipts half each)."""
    with tempfile.TemporaryDirectory() as folder:
        workload = make_workload(Path(folder), docs, 0, 0, TokenBudgets())
        return [Request(load_image(doc, LoadOptions()), "What type of document is this?", 16) for doc in workload.docs]


def per_document(run: Callable[[Sequence[Request]], None], requests: Sequence[Request], warm: int = 2) -> str:
    """ms a document, and the host's part in it: minor page faults and kernel (system) ms a document."""
    run(requests[:warm])  # warm: first calls build caches (tokenizer, resampling kernels, pinned blocks)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run(requests)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    count = len(requests)
    return (f"{1000 * seconds / count:8.2f} ms a document, {(after.ru_minflt - before.ru_minflt) / count:8.0f} "
            f"page faults, {1000 * (after.ru_stime - before.ru_stime) / count:6.1f} kernel ms")


def pool_run(prefetcher: Prefetcher) -> Callable[[Sequence[Request]], None]:
    def run(requests: Sequence[Request]) -> None:
        prefetcher.submit(requests)  # what the engine does with a batch nothing prefetched
        for request in requests:
            prefetcher.take(request)
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen3_vl_8b", help="a replica (conf/model/random_*.yaml names)")
    parser.add_argument("--docs", type=int, default=56)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-tiles", type=int, default=12)
    args = parser.parse_args()
    device = torch.device(args.device)
    engine = load_model(ModelSpec(name=args.model, random_weights=True, max_tiles=args.max_tiles), device)
    requests = workload_requests(args.docs)
    chat, pin = engine.chat, device.type == "cuda"
    print(f"{args.model}: {len(requests)} documents, {torch.get_num_threads()} intra-op threads, device {device}")
    rows = [
        ("one thread, processor only", lambda rs: [chat.preprocess([r]) for r in rs]),
        ("one thread, processor + staging", lambda rs: [Prefetcher(chat.preprocess, engine.dtype, pin).staged(r)
                                                        for r in rs]),
        ("submit pool, staged (the engine's way)", pool_run(Prefetcher(chat.preprocess, engine.dtype, pin))),
        ("submit pool, not page-locked", pool_run(Prefetcher(chat.preprocess, engine.dtype, False))),
    ]
    for name, run in rows:
        print(f"{name:45s} {per_document(run, requests)}")


if __name__ == "__main__":
    keep_freed_memory()  # first, while this is the process's only thread (as launch.py and benchmark.py)
    main()
