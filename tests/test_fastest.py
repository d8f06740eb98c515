"""fastest(): of exact ways, the faster one on this device, timed once per key, then only that one runs."""

import logging
import time

import pytest
import torch

from docvlm.models import fastest as fastest_module
from docvlm.models.fastest import TIMED_RUNS, fastest


def test_the_faster_way_is_chosen_once_and_kept(monkeypatch, caplog):
    monkeypatch.setattr(fastest_module, "_CHOSEN", {})
    calls = {"slow": 0, "quick": 0}

    def way(name, seconds):
        def run():
            calls[name] += 1
            time.sleep(seconds)
            return name
        return run

    ways = {"slow": way("slow", 0.05), "quick": way("quick", 0.001)}
    with caplog.at_level(logging.INFO, logger="docvlm.models.fastest"):
        assert fastest("toy attention", (16, 80), ways, torch.device("cpu")) == "quick"
    assert calls == {"slow": 1 + TIMED_RUNS, "quick": 1 + TIMED_RUNS + 1}  # warm-up, timed runs, the call
    assert "toy attention (16, 80): quick" in caplog.text and "slow" in caplog.text
    assert fastest("toy attention", (16, 80), ways, torch.device("cpu")) == "quick"
    assert calls == {"slow": 1 + TIMED_RUNS, "quick": 1 + TIMED_RUNS + 2}  # no timing again
    ways_reversed = {"slow": way("slow", 0.001), "quick": way("quick", 0.05)}  # another key: timed anew
    assert fastest("toy attention", (16, 72), ways_reversed, torch.device("cpu")) == "slow"


def test_a_way_that_cannot_run_here_is_left_out_and_none_running_raises(monkeypatch, caplog):
    monkeypatch.setattr(fastest_module, "_CHOSEN", {})

    def too_big():
        raise RuntimeError("out of resource: shared memory, Required: 163840, Hardware limit: 101376")

    ways = {"big tiles": too_big, "small tiles": lambda: "small"}
    with caplog.at_level(logging.WARNING, logger="docvlm.models.fastest"):
        assert fastest("toy kernel", 1, ways, torch.device("cpu")) == "small"
    assert "big tiles does not run here: out of resource" in caplog.text
    assert fastest("toy kernel", 1, ways, torch.device("cpu")) == "small"
    with pytest.raises(RuntimeError, match="out of resource"):
        fastest("toy kernel", 2, {"big tiles": too_big}, torch.device("cpu"))
