#!/usr/bin/env bash
# Image work on the GPU + planned Qwen rope positions (HEAD) against a2f2958 (.base6) on one machine.
source .gpu/common.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false DOCVLM_CACHE=/tmp/docvlm-cache
(export PYTHONPATH=/tmp/site:$PWD; timeout 150 python3 -m pytest -q -x tests/test_models_cuda.py > $R/cuda_tests.out 2>&1; echo "cuda tests rc $?"; tail -2 $R/cuda_tests.out); pack callI
(export PYTHONPATH=/tmp/site:$PWD; timeout 80 python3 scripts/bench_preprocess.py --model qwen3_vl_8b --docs 32 > $R/preprocess.out 2>&1; echo "rc $?"; grep -v Loading $R/preprocess.out | tail -5); pack callI
step qwen_after . qwen3_vl_8b 110 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0"; pack callI
step qwen_before .base6 qwen3_vl_8b 80 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callI
step llama_after . llama3_2_11b_vision 110 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0"; pack callI
step llama_before .base6 llama3_2_11b_vision 80 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callI
