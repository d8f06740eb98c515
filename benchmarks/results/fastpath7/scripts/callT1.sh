#!/usr/bin/env bash
# The owed checks: rotary diagnosis, the CUDA kernel tests, Qwen3-VL and Llama after (engine logs: rotary, turn ways).
source .gpu/common.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false DOCVLM_CACHE=/tmp/docvlm-cache
python3 -c "import transformers, torch, triton; print('versions', transformers.__version__, torch.__version__, triton.__version__)"
(export PYTHONPATH=/tmp/site:$PWD; timeout 40 python3 .gpu/rotary_diag.py > $R/rotary_diag.out 2>&1; echo "diag rc $?"; tail -14 $R/rotary_diag.out); pack callT1
(export PYTHONPATH=/tmp/site:$PWD; timeout 150 python3 -m pytest -q tests/test_models_cuda.py -k 'fused_kernels or graph_decode or triton_attention or cross' > $R/cuda_tests.out 2>&1; echo "cuda tests rc $?"; tail -4 $R/cuda_tests.out); pack callT1
step qwen_after . qwen3_vl_8b 110 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; grep -h "turn attention\|rotary" $R/qwen_after/*.log | head -5; pack callT1
step llama_after . llama3_2_11b_vision 110 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; grep -h "turn attention\|rotary" $R/llama_after/*.log | head -5; pack callT1
