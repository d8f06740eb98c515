"""A replica's processor alone (no model) on a pool of worker threads: ms, minor page faults and kernel
ms a page, with glibc's default allocator or keeping freed memory (docvlm/models/host_memory.py).

    python scripts/bench_processor_threads.py [--model qwen3_vl_8b] [--docs 32] [--threads 2] [--keep start|late|no]
                                              [--busy-thread] [--switch-interval MS] [--processes]
                                              [--pixels model|float32] [--compare-pixels ROUNDS]

`--keep start` applies it first, while the process has one thread (as the entry points do); `late`
after the documents are made and the processor loaded (other threads have made arenas by then).
`--busy-thread`: meanwhile another thread runs Python without pause, as the engine's thread does while
it launches a prefill's kernels (its speed is printed against its speed alone): every torch op gives the
GIL up and waits to get it back, up to Python's switch interval (`--switch-interval`, default 5 ms).
`--pixels float32`: the processor's own float32 pixels, cast afterwards (as before pixels_in_dtype.py);
`--compare-pixels N`: both, alternating for N rounds in this one process (threads; a fairer A/B on a
noisy host than two processes).
`--processes`: the workers are processes (spawned; each loads the replica's processor) instead of
threads, and the staged tensors come back through shared memory, as a process pool would hand them to
the engine: does the processor scale with workers once they share no interpreter lock?
The documents are the benchmark's workload (invoices and receipts half each); each output is cast to
bf16 as the prefetcher stages it. Runs on any host: the processor needs no GPU and no weights.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from docvlm.models.host_memory import keep_freed_memory  # noqa: E402  (no torch yet)

if __name__ == "__main__" and "--keep" in sys.argv and sys.argv[sys.argv.index("--keep") + 1] == "start":
    keep_freed_memory()  # before any other import can start a thread

import argparse  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor  # noqa: E402
from typing import Any, Callable, Optional, Sequence  # noqa: E402

import torch  # noqa: E402
from bench_preprocess import per_document, workload_requests  # noqa: E402  (scripts/, this script's folder)

from docvlm.models import ModelSpec, Request  # noqa: E402
from docvlm.models.chat import Chat  # noqa: E402
from docvlm.models.loading import load_model  # noqa: E402
from docvlm.models.pixels_in_dtype import normalised_in_model_dtype  # noqa: E402

WORKER_CHAT: dict[str, Chat] = {}  # a process worker's replica chat, made by its initializer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen3_vl_8b", help="a replica (conf/model/random_*.yaml names)")
    parser.add_argument("--docs", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tiles", type=int, default=12)
    parser.add_argument("--keep", choices=["start", "late", "no"], default="no")
    parser.add_argument("--busy-thread", action="store_true", help="a thread running Python meanwhile")
    parser.add_argument("--switch-interval", type=float, default=5.0, help="Python's switch interval, ms")
    parser.add_argument("--processes", action="store_true", help="worker processes instead of threads")
    parser.add_argument("--pixels", choices=["model", "float32"], default="model",
                        help="the processor's pixels in the model's dtype (docvlm's way) or its own float32")
    parser.add_argument("--compare-pixels", type=int, default=0, metavar="ROUNDS")
    args = parser.parse_args()
    sys.setswitchinterval(args.switch_interval / 1000)
    requests = workload_requests(args.docs)
    with worker_pool(args) as pool:
        if args.keep == "late":
            keep_freed_memory()

        def run(batch: Sequence[Request]) -> None:
            list(pool.map(staged, batch))

        if args.compare_pixels:
            return compare_pixels(run, requests, args.compare_pixels)
        with BusyThread(args.busy_thread) as busy:
            figures = per_document(run, requests, warm=2 * args.threads)
    beside = f", beside a busy thread (at {busy.share():.0%} of its speed alone)" if args.busy_thread else ""
    workers = "processes" if args.processes else "threads"
    print(f"{args.model}, {args.threads} {workers}, pixels {args.pixels}, freed memory kept: {args.keep}, switch "
          f"interval {args.switch_interval:g} ms{beside}: {figures}")


def compare_pixels(run: Callable[[Sequence[Request]], None], requests: Sequence[Request], rounds: int) -> None:
    """The processor's float32 pixels and the model's dtype's, alternating in this process's thread pool."""
    image_processor = WORKER_CHAT["chat"].processor.image_processor
    for round_ in range(rounds):
        for pixels, dtype in (("float32", torch.float32), ("model", torch.bfloat16)):
            normalised_in_model_dtype(image_processor, dtype)
            print(f"round {round_ + 1}, pixels {pixels:7s}: {per_document(run, requests)}", flush=True)


def worker_pool(args: argparse.Namespace) -> Executor:
    """Threads sharing this process's replica chat, or spawned processes each loading their own."""
    if not args.processes:
        set_up_worker(args.model, args.max_tiles, "no", args.pixels, threads=None)
        return ThreadPoolExecutor(args.threads, initializer=torch.set_num_threads, initargs=(1,))
    import torch.multiprocessing as multiprocessing  # its reductions send tensors through shared memory

    return ProcessPoolExecutor(args.threads, mp_context=multiprocessing.get_context("spawn"),
                               initializer=set_up_worker, initargs=(args.model, args.max_tiles, args.keep, args.pixels))


def set_up_worker(model: str, max_tiles: int, keep: str, pixels: str, threads: Optional[int] = 1) -> None:
    """The worker's replica chat (threads: one shared, made before the pool); a process keeps freed memory
    as asked and runs one intra-op thread."""
    if keep != "no":
        keep_freed_memory()
    if threads:
        torch.set_num_threads(threads)
    chat = WORKER_CHAT["chat"] = replica_chat(model, max_tiles)
    if pixels == "float32":
        normalised_in_model_dtype(chat.processor.image_processor, torch.float32)  # the processor's own class


def staged(request: Request) -> dict[str, Any]:
    """The processor's output with its floating tensors in bf16, as the prefetcher stages them."""
    outputs = WORKER_CHAT["chat"].preprocess([request]).items()
    return {key: value.to(torch.bfloat16) if value.is_floating_point() else value for key, value in outputs}


class BusyThread:
    """A thread counting in a Python loop while the context is open (when `on`); `share()` is its rate
    against the same loop's rate alone, measured first for a second."""

    def __init__(self, on: bool):
        self.on, self.rate = on, 0.0
        self.alone = self._spin(threading.Event(), seconds=1.0) if on else 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: setattr(self, "rate", self._spin(self.stop)), daemon=True)

    @staticmethod
    def _spin(stop: threading.Event, seconds: float = 0.0) -> float:
        """Loops a second until `stop` is set (by a timer after `seconds`, if given)."""
        if seconds:
            threading.Timer(seconds, stop.set).start()
        loops, began = 0, time.perf_counter()
        while not stop.is_set():
            loops += 1
        return loops / (time.perf_counter() - began)

    def share(self) -> float:
        return self.rate / self.alone

    def __enter__(self) -> "BusyThread":
        if self.on:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.on:
            self.stop.set()
            self.thread.join()


def replica_chat(name: str, max_tiles: int) -> Chat:
    """The replica's chat (its real processor and adapter settings) over a model on the meta device: no
    weights are made."""
    return load_model(ModelSpec(name=name, random_weights=True, max_tiles=max_tiles, engine="hf"),
                      torch.device("meta")).chat


if __name__ == "__main__":
    main()
