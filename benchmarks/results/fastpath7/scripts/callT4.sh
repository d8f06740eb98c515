#!/usr/bin/env bash
source .gpu/common.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false DOCVLM_CACHE=/tmp/docvlm-cache
step qwen_after . qwen3_vl_8b 90 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callT4
step qwen_before .base7 qwen3_vl_8b 90 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callT4
step llama_after . llama3_2_11b_vision 90 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callT4
step llama_before .base7 llama3_2_11b_vision 90 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callT4
