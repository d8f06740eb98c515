#!/usr/bin/env bash
# The fused kernels' CUDA test with the scaled tolerance; InternVL after (this code) and before (f9804df, .base7)
# on the same machine; then every other CUDA test.
source .gpu/common.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false DOCVLM_CACHE=/tmp/docvlm-cache
(export PYTHONPATH=/tmp/site:$PWD; timeout 90 python3 -m pytest -q tests/test_models_cuda.py -k fused_kernels > $R/cuda_fused.out 2>&1; echo "fused test rc $?"; tail -3 $R/cuda_fused.out); pack callT3
step internvl_after . internvl3_5_8b 100 "--docs 128 --statements 0" "--configs docvlm:auto --check-docs 0"; grep -h "turn attention\|rotary" $R/internvl_after/*.log | cut -c1-300 | head -4; pack callT3
step internvl_before .base7 internvl3_5_8b 100 "--docs 128 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callT3
(export PYTHONPATH=/tmp/site:$PWD; timeout 200 python3 -m pytest -q tests/test_models_cuda.py -k 'not fused_kernels' > $R/cuda_tests_rest.out 2>&1; echo "other cuda tests rc $?"; tail -4 $R/cuda_tests_rest.out); pack callT3
