#!/usr/bin/env bash
# Final (stop 21): CUDA tests, Qwen3-VL after (seed baseline, profile) / before (.base4 = 7058d89), Llama after (seed baseline).
source .gpu/common.sh
echo "=== cuda tests $(date -u +%T)"
(export PYTHONPATH=/tmp/site:$PWD; timeout 110 python3 -m pytest -q -p no:cacheprovider tests/test_models_cuda.py > $R/cuda_tests.out 2>&1; echo "rc $?"; tail -2 $R/cuda_tests.out); pack callF1
step qwen_after . qwen3_vl_8b 185 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0 --profile-docs 16"; pack callF1
step qwen_before .base4 qwen3_vl_8b 95 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callF1
step llama_after . llama3_2_11b_vision 150 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0"; pack callF1
