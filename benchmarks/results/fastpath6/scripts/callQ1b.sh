#!/usr/bin/env bash
# Call 1 of 2 (the device is scarce): CUDA tests, Llama and Qwen3-VL after/before. HEAD vs .base7 (= f9804df).
source .gpu/common.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false DOCVLM_CACHE=/tmp/docvlm-cache
(export PYTHONPATH=/tmp/site:$PWD; timeout 100 python3 -m pytest -q tests/test_models_cuda.py -k 'fused_kernels or graph_decode or triton_attention or cross' > $R/cuda_tests.out 2>&1; echo "cuda tests rc $?"; grep -E "^FAILED|passed|failed" $R/cuda_tests.out | tail -5); pack callQ1b
step llama_after . llama3_2_11b_vision 110 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0"; pack callQ1b
step llama_before .base7 llama3_2_11b_vision 80 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callQ1b
step qwen_after . qwen3_vl_8b 110 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0"; pack callQ1b
step qwen_before .base7 qwen3_vl_8b 85 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callQ1b
