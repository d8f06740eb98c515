#!/usr/bin/env bash
# Multi-GPU scaling (issue 5): the same workload through `torchrun --nproc_per_node=N launch.py`
# for each N given (default 1 2 4), full-size random-weight InternVL3.5-8B, forced generation lengths.
#
#   scripts/scaling.sh [N ...]       env: MODEL (random_internvl3_5_8b), DOCS (48), STATEMENTS (8),
#                                    BATCH (null = auto), SHARDS (count; processing.shard modes to run,
#                                    e.g. "count cost"), EXTRA (more Hydra overrides), WARMUP (1: first
#                                    a 1-rank run on 4 documents, outside the table, so that Triton's
#                                    kernel cache is filled before ANY measured run, not only for later ones;
#                                    "only": the workload and the warm-up, no runs: to start runs on
#                                    disjoint GPUs side by side afterwards, e.g. N=1 on GPU 0 beside N=2
#                                    on GPUs 1,2 with CUDA_VISIBLE_DEVICES and taskset; the table is
#                                    `python -m docvlm.bench.scaling <run folders>`)
# On the device machine: run(command="SHARDS='count cost' bash scripts/scaling.sh 1 2 4", carry=[".whl"], kind=...)
# Each run goes to $OUT/<shard>_n<N>; one table compares them all.
# NCCL carries tensors, gloo the gather_object of results. NVLink multicast stays off (NCCL_NVLS_ENABLE=0).
source scripts/carried_wheels.sh || exit 1
set -uo pipefail
RANKS=("${@:-1 2 4}")
OUT=${SCALING_OUT:-${OUT:-outputs/scaling}}  # the device tool sets OUT: results come back from there
MODEL=${MODEL:-random_internvl3_5_8b}
DOCS=${DOCS:-48}
STATEMENTS=${STATEMENTS:-8}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false NCCL_NVLS_ENABLE=0
export DOCVLM_CACHE=${DOCVLM_CACHE:-/tmp/docvlm-cache}
DATA=$DOCVLM_CACHE/scaling-workload
mkdir -p "$OUT"

# The benchmark's workload: invoices, receipts and statements mixed in input order (seed 0).
python3 - "$DATA" "$DOCS" "$STATEMENTS" <<'PY'
import sys
from pathlib import Path
from docvlm.bench.workload import make_workload
from docvlm.config import TokenBudgets
folder, docs, statements = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if not (folder / "ground_truth.csv").exists():
    make_workload(folder, docs, statements, seed=0, budgets=TokenBudgets())
PY

common=(model="$MODEL" data.dir="$DATA" data.ground_truth="$DATA/ground_truth.csv" output.overwrite=true
        debug.route_by_ground_truth=true processing.force_length=true
        processing.max_new_tokens.detect=16 processing.max_new_tokens.extract=256
        processing.max_new_tokens.bank_headers=64 processing.max_new_tokens.bank_rows=1024
        processing.batch_size=${BATCH:-null})
if [ "${WARMUP:-0}" != 0 ]; then
    echo "=== warm-up: 1 rank, 4 documents (not measured) ==="
    # shellcheck disable=SC2086
    torchrun --standalone --nproc_per_node=1 launch.py "${common[@]}" output.dir="$OUT/warmup" debug.limit=4 \
        ${EXTRA:-} > "$OUT/warmup.log" 2>&1 || echo "warm-up failed (see $OUT/warmup.log)"
    [ "$WARMUP" = only ] && exit 0
fi
runs=()
for shard in ${SHARDS:-count}; do
    for n in ${RANKS[@]}; do
        name="${shard}_n$n"
        echo "=== $n rank(s), processing.shard=$shard ==="
        # shellcheck disable=SC2086
        torchrun --standalone --nproc_per_node="$n" launch.py "${common[@]}" output.dir="$OUT/$name" \
            processing.shard="$shard" ${EXTRA:-} 2>&1 | tee "$OUT/$name.log" | grep -v "it/s\]" | tail -n 5
        runs+=("$OUT/$name")
    done
done
python3 -m docvlm.bench.scaling "${runs[@]}" --json "$OUT/scaling.json" | tee "$OUT/scaling.md"
