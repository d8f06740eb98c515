#!/usr/bin/env bash
# Streamed first turns (HEAD) against cb4686e (.base5) on one machine: Qwen3-VL 64 and InternVL 128 documents.
source .gpu/common.sh
step qwen_stream . qwen3_vl_8b 95 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callG
step qwen_base .base5 qwen3_vl_8b 90 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callG
step internvl_stream . internvl3_5_8b 110 "--docs 128 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callG
step internvl_base .base5 internvl3_5_8b 110 "--docs 128 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callG
grep -h "predicted\|cannot count\|inputs_s" $R/*.out | head -5
