#!/usr/bin/env bash
# Issue 22's Qwen3-VL row + the CUDA tests, one call.
source .gpu/common.sh
step qwen . qwen3_vl_8b 240 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 8 --profile-docs 32"; pack qwen
echo "=== cuda tests $(date -u +%T)"
timeout 200 python3 -m pytest -q tests/test_models_cuda.py > $R/cuda_tests.out 2>&1; echo "rc $?"; tail -25 $R/cuda_tests.out; pack qwen
