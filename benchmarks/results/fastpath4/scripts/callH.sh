#!/usr/bin/env bash
# What the remaining device time allows: Qwen3-VL 64 documents, docvlm:auto only (HEAD), on whatever card comes.
source .gpu/common.sh
step qwen_h . qwen3_vl_8b 100 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callH
