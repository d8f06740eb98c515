#!/usr/bin/env bash
# Issue 22 on the H200: CUDA tests (new kernels), bench_attention, Llama after/before (before tree .base3 = 0802ab1).
source .gpu/common.sh
echo "=== cuda tests $(date -u +%T)"
(export PYTHONPATH=/tmp/site:$PWD; timeout 110 python3 -m pytest -q -p no:cacheprovider tests/test_models_cuda.py > $R/cuda_tests.out 2>&1; echo "rc $?"; tail -4 $R/cuda_tests.out); pack callA
echo "=== bench_attention $(date -u +%T)"
(export PYTHONPATH=/tmp/site:$PWD; timeout 80 python3 scripts/bench_attention.py > $R/bench_attention.out 2>&1; echo "rc $?"; tail -30 $R/bench_attention.out); pack callA
step llama_after . llama3_2_11b_vision 190 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0 --profile-docs 16"; pack callA
step llama_before .base3 llama3_2_11b_vision 100 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callA
