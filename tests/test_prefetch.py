"""The prefetcher stages the processor's output in its threads: floating tensors in the model's dtype,
ids as they are, each worker on one intra-op thread (the engine's own thread keeps its threads)."""

import time

import torch
from PIL import Image

from docvlm.models.prefetch import Prefetcher
from docvlm.models.protocol import Request


class HeldWorkers:
    """A preprocess whose calls wait for `release`, counting how many run at once (now and at most) and
    which prompts were made."""

    def __init__(self):
        import threading

        self.running = self.most = 0
        self.made: list[str] = []
        self.release, self.lock = threading.Event(), threading.Lock()

    def __call__(self, requests):
        with self.lock:
            self.made.append(requests[0].prompt)
            self.running += 1
            self.most = max(self.most, self.running)
        assert self.release.wait(10)
        with self.lock:
            self.running -= 1
        return {"input_ids": torch.tensor([[1]])}

    def wait_running(self, count: int, seconds: float = 5) -> None:
        deadline = time.monotonic() + seconds
        while self.running < count and time.monotonic() < deadline:
            time.sleep(0.01)


def test_outputs_are_staged_in_the_model_dtype_by_single_threaded_workers():
    seen_threads = []

    def preprocess(requests):
        seen_threads.append(torch.get_num_threads())
        return {"pixel_values": torch.rand(1, 3, 4, 4), "input_ids": torch.tensor([[5, 6, 7]]), "sizes": [4]}

    before = torch.get_num_threads()
    prefetch = Prefetcher(preprocess, torch.bfloat16, pin=False)
    requests = [Request(Image.new("RGB", (8, 8)), f"read {i}", 4) for i in range(3)]
    prefetch.submit(requests)
    deadline = time.monotonic() + 10
    while len(seen_threads) < 3 and time.monotonic() < deadline:  # all made by workers (none left queued
        time.sleep(0.01)  # for `take` to make on this thread)
    staged = [prefetch.take(request) for request in requests]
    assert all(out["pixel_values"].dtype == torch.bfloat16 for out in staged)
    assert all(out["input_ids"].dtype == torch.long and out["input_ids"].tolist() == [[5, 6, 7]] for out in staged)
    assert staged[0]["sizes"] == [4]
    assert seen_threads == [1, 1, 1] and torch.get_num_threads() == before
    # never submitted: made on the caller's thread, staged the same way
    late = prefetch.take(Request(Image.new("RGB", (8, 8)), "late", 4))
    assert late["pixel_values"].dtype == torch.bfloat16 and seen_threads[-1] == before


def test_a_request_no_worker_started_is_made_on_the_callers_thread(monkeypatch):
    """Both workers busy: taking a request still queued does not wait behind them; each request is
    preprocessed once."""
    import threading

    from docvlm.models import prefetch as prefetch_module

    monkeypatch.setattr(prefetch_module, "PREPROCESS_THREADS", 2)

    release = threading.Event()
    made = []

    def preprocess(requests):
        made.append(requests[0].prompt)
        if requests[0].prompt in ("read 0", "read 1"):
            assert release.wait(10)
        return {"input_ids": torch.tensor([[len(made)]]), "threads": torch.get_num_threads()}

    prefetch = Prefetcher(preprocess, torch.float32, pin=False)
    requests = [Request(Image.new("RGB", (8, 8)), f"read {i}", 4) for i in range(5)]
    prefetch.prepare(requests)
    while len(made) < 2:  # the two workers hold requests 0 and 1
        threading.Event().wait(0.01)
    late = prefetch.take(requests[3])  # still queued: made here, now
    assert made == ["read 0", "read 1", "read 3"] and late["threads"] == torch.get_num_threads()
    release.set()
    rest = [prefetch.take(request) for request in (requests[0], requests[1], requests[2], requests[4])]
    assert sorted(made) == [f"read {i}" for i in range(5)]
    assert all(out["input_ids"].shape == (1, 1) for out in rest)


def test_waited_for_requests_get_a_worker_per_core_the_next_batch_few():
    """What the engine is about to wait for (`submit`: nothing prefetched it) runs on a worker per core
    of this rank; the next batch (`prepare`, while the GPU works) on PREPROCESS_THREADS at most."""
    from docvlm.models.prefetch import PREPROCESS_THREADS

    before = torch.get_num_threads()
    torch.set_num_threads(PREPROCESS_THREADS + 2)  # the pools read this rank's share of cores
    try:
        for start, expected in (("submit", PREPROCESS_THREADS + 2), ("prepare", PREPROCESS_THREADS)):
            held = HeldWorkers()
            prefetch = Prefetcher(held, torch.float32, pin=False)
            requests = [Request(Image.new("RGB", (8, 8)), f"read {i}", 4) for i in range(PREPROCESS_THREADS + 2)]
            getattr(prefetch, start)(requests)
            held.wait_running(expected)
            time.sleep(0.1)  # more would have started by now
            assert held.most == expected, (start, held.most)
            held.release.set()
            assert all(prefetch.take(request)["input_ids"].tolist() == [[1]] for request in requests)
    finally:
        torch.set_num_threads(before)


def test_submit_moves_requests_queued_behind_the_background_workers(monkeypatch):
    """The pipeline `prepare`s a run's first batch too: what is still queued behind the background
    worker when the engine waits for it (`submit`) moves to a worker per core; nothing runs twice."""
    from docvlm.models import prefetch as prefetch_module

    monkeypatch.setattr(prefetch_module, "PREPROCESS_THREADS", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        held = HeldWorkers()
        prefetch = Prefetcher(held, torch.float32, pin=False)
        requests = [Request(Image.new("RGB", (8, 8)), f"read {i}", 4) for i in range(4)]
        prefetch.prepare(requests)
        held.wait_running(1)  # the one background worker holds read 0
        prefetch.submit(requests)
        held.wait_running(4)
        assert held.most == 4  # read 0 on the background worker, reads 1-3 on the three of `submit`
        held.release.set()
        assert all(prefetch.take(request)["input_ids"].tolist() == [[1]] for request in requests)
        assert sorted(held.made) == [f"read {i}" for i in range(4)]
    finally:
        torch.set_num_threads(before)
