#!/usr/bin/env bash
# Issue 21's fourth family (Qwen2.5-VL) + issue 22's Llama row on an H200, before tree .base3 = 0802ab1.
source .gpu/common.sh
W="--docs 64 --statements 0"
step q25 . qwen2_5_vl_7b 170 "$W" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 8"; pack call1
echo "=== bench_attention $(date -u +%T)"
(export PYTHONPATH=/tmp/site:$PWD; timeout 60 python3 scripts/bench_attention.py > $R/bench_attention.out 2>&1; echo "rc $?"; tail -20 $R/bench_attention.out); pack call1
step llama_after . llama3_2_11b_vision 200 "$W" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0 --profile-docs 16"; pack call1
step llama_before .base3 llama3_2_11b_vision 100 "$W" "--configs docvlm:auto --check-docs 0"; pack call1
