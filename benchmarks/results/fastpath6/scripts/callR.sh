#!/usr/bin/env bash
# The last device seconds: the rotary diagnosis, Qwen3-VL after with the turn ways, the CUDA attention test.
source .gpu/common.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false DOCVLM_CACHE=/tmp/docvlm-cache
(export PYTHONPATH=/tmp/site:$PWD; timeout 40 python3 .gpu/rotary_diag.py > $R/rotary_diag.out 2>&1; echo "diag rc $?"; tail -12 $R/rotary_diag.out); pack callR
step qwen_turn . qwen3_vl_8b 90 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; grep -h "turn attention" $R/qwen_turn/*.log | head -3; pack callR
(export PYTHONPATH=/tmp/site:$PWD; timeout 80 python3 -m pytest -q tests/test_models_cuda.py -k 'triton_attention' > $R/cuda_attention.out 2>&1; echo "attention test rc $?"; tail -3 $R/cuda_attention.out); pack callR
step llama_turn . llama3_2_11b_vision 90 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; grep -h "turn attention" $R/llama_turn/*.log | head -3; pack callR
