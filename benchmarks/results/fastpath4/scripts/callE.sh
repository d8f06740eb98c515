#!/usr/bin/env bash
# The processor on the host (first batch wait), then Qwen3-VL after (planned follow-up reserve) / before (.base4 = 7058d89).
source .gpu/common.sh
echo "=== preprocess $(date -u +%T)"
(export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false DOCVLM_CACHE=/tmp/docvlm-cache; timeout 150 python3 scripts/bench_preprocess.py --model qwen3_vl_8b --docs 56 > $R/preprocess.out 2>&1; echo "rc $?"; grep -v Loading $R/preprocess.out | tail -6); pack callE
step qwen_after . qwen3_vl_8b 150 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callE
step qwen_before .base4 qwen3_vl_8b 120 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callE
grep -h "KV buffers\|batch " $R/qwen_after.out $R/qwen_before.out | head -8
