"""Per-rank logging: one file per rank under output.dir/logs, every line prefixed with the rank.

The console gets rank 0's lines and only warnings and errors from the other ranks, so N ranks do not
print N copies of every message (and a failing rank is still seen); each rank's file has everything.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_HANDLER_TAG = "_docvlm"


def setup_logging(rank: int, out_dir: Path, level: str = "INFO") -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_TAG, False)]:
        root.removeHandler(handler)  # multirun: the next job logs to its own folder
        handler.close()
    fmt = logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    if rank != 0:
        console.setLevel(logging.WARNING)
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(out_dir / "logs" / f"rank-{rank:05d}.log", encoding="utf-8")
    for handler in (console, to_file):
        handler.setFormatter(fmt)
        setattr(handler, _HANDLER_TAG, True)
        root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("PIL", "matplotlib", "urllib3", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
