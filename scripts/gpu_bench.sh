#!/usr/bin/env bash
# The GPU benchmark run (issue 8): one call of the device tool, logs and JSON under $OUT.
#
#   scripts/gpu_bench.sh [MODEL ...]        default: internvl3_5_8b; also qwen3_vl_8b, llama3_2_11b_vision, qwen2_5_vl_7b
#   BENCH_FLAGS="--configs seed:8,docvlm:auto,docvlm:64" scripts/gpu_bench.sh qwen3_vl_8b
#
# Device call (the wheels in .whl/ bring what the GPU image lacks: hydra-core, omegaconf, antlr4, pypdfium2):
#   run(command="bash scripts/gpu_bench.sh internvl3_5_8b", carry=[".whl"], timeout_s=600)
# Writes $OUT/bench_<model>.json (rewritten after each configuration) and $OUT/bench_<model>.log.
# BENCH_DEVICE=cpu runs it without a GPU (tests, with a tiny model).
# BENCH_PACK=NAME: the files go to a folder of their own, packed into $OUT/NAME.tgz after each model
# (the device tool brings back at most 8 files: three models' JSON, log and profile are 9).
# Budget (one H100, 2026-12-05): 1-4 minutes a model: start and build ~30 s, seed:8 on 8 documents ~30 s,
# docvlm:auto on 64-128 ~1 min with its warm-up, --check-docs 8 ~40 s; --profile-docs N adds the pass and
# the profiler's summary (over a minute for 32 documents). Models after the first are skipped when less
# than MIN_LEFT_S of BENCH_DEADLINE_S is left; the python run itself is cut at the deadline.
source scripts/carried_wheels.sh || exit 1
set -uo pipefail

MODELS=("${@:-internvl3_5_8b}")
OUT=${OUT:-outputs/bench}
PACKED_TO=""
if [ -n "${BENCH_PACK:-}" ]; then
    PACKED_TO="$OUT/$BENCH_PACK.tgz"
    OUT=$(mktemp -d)
fi
DEADLINE_S=${BENCH_DEADLINE_S:-540}  # the device tool stops a command at 600 s
MIN_LEFT_S=${BENCH_MIN_LEFT_S:-300}
# Default: 32 invoices/receipts + 8 statements; BENCH_WORKLOAD="--docs 128 --statements 0" etc.
# shellcheck disable=SC2206  # a list of flags
WORKLOAD=(${BENCH_WORKLOAD:---docs 40 --statements 8})
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false DOCVLM_CACHE=/tmp/docvlm-cache
mkdir -p "$OUT"

status=0
for model in "${MODELS[@]}"; do
    left=$((DEADLINE_S - SECONDS))
    if [ "$model" != "${MODELS[0]}" ] && [ "$left" -lt "$MIN_LEFT_S" ]; then
        echo "skipping $model: ${left}s left of ${DEADLINE_S}s" | tee -a "$OUT/bench_$model.log"
        status=1
        continue
    fi
    {
        date -u +"%Y-%m-%dT%H:%M:%SZ"
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
        python3 -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
        # shellcheck disable=SC2086  # BENCH_FLAGS is a list of flags
        timeout --signal=INT --kill-after=20 "$left" \
            python3 scripts/benchmark.py --model "$model" --device "${BENCH_DEVICE:-cuda}" "${WORKLOAD[@]}" --out "$OUT" ${BENCH_FLAGS:-}
    } 2>&1 | tee "$OUT/bench_$model.log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "benchmark of $model exited with $rc"; status=$rc; }
    [ -z "$PACKED_TO" ] || tar czf "$PACKED_TO" -C "$OUT" .
done
exit "$status"
