#!/usr/bin/env bash
# HEAD (image work on the GPU, once a batch): CUDA tests, the qwen2_5_vl diagnosis, each family with its seed-style baseline.
source .gpu/common.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false DOCVLM_CACHE=/tmp/docvlm-cache
(export PYTHONPATH=/tmp/site:$PWD; timeout 170 python3 -m pytest -q tests/test_models_cuda.py > $R/cuda_tests.out 2>&1; echo "cuda tests rc $?"; grep -E "^FAILED|passed|failed" $R/cuda_tests.out | tail -5); pack callK
(export PYTHONPATH=/tmp/site:$PWD; timeout 60 python3 .gpu/diag.py qwen2_5_vl > $R/diag.out 2>&1; echo "diag rc $?"; grep -v Loading $R/diag.out | tail -6); pack callK
step qwen_after . qwen3_vl_8b 110 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0"; pack callK
step llama_after . llama3_2_11b_vision 105 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0"; pack callK
step internvl_after . internvl3_5_8b 125 "--docs 128 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0"; pack callK
