#!/usr/bin/env python3
"""Benchmark docvlm against the seed-style engine: `python scripts/benchmark.py --help`.

Examples:
  python scripts/benchmark.py --model internvl3_5_8b --out "$OUT"          # GPU, full-size random weights
  python scripts/benchmark.py --model tiny_internvl --device cpu --docs 6  # CPU smoke run
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from docvlm.bench.cli import main  # noqa: E402
from docvlm.models.host_memory import keep_freed_memory  # noqa: E402

if __name__ == "__main__":
    keep_freed_memory()  # first, while this is the process's only thread (docvlm/models/host_memory.py)
    main()
