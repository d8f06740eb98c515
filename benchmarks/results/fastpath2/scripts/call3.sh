#!/usr/bin/env bash
# CUDA tests + statements (issue 21's second InternVL workload) on the H200.
source .gpu/common.sh
echo "=== cuda tests $(date -u +%T)"
(export PYTHONPATH=/tmp/site:$PWD; timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_models_cuda.py > $R/cuda_tests.out 2>&1; echo "rc $?"; tail -25 $R/cuda_tests.out); pack call3
step stmt_after . internvl3_5_8b 100 "--docs 24 --statements 24" "--configs docvlm:auto --check-docs 0"; pack call3
step stmt_before .base3 internvl3_5_8b 100 "--docs 24 --statements 24" "--configs docvlm:auto --check-docs 0"; pack call3
