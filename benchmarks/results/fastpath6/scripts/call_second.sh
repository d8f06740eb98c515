#!/usr/bin/env bash
# The second call (same warm machine, right after callQ1b.sh), as run:
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1
timeout 110 python3 scripts/bench_attention.py --turn-sweep --rows 64 > $OUT/turn_sweep.out 2>&1
timeout 40 python3 scripts/bench_processor_threads.py --model qwen3_vl_8b --docs 48 --threads 16 --keep start > $OUT/threads16.out 2>&1
timeout 40 python3 -m pytest -q tests/test_models_cuda.py -k fused_kernels   # the failing assertion, printed
