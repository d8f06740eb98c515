#!/usr/bin/env bash
# Issue 22's Qwen3-VL and InternVL rows on the H200, before tree .base3 = 0802ab1.
source .gpu/common.sh
step qwen_after . qwen3_vl_8b 195 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0 --profile-docs 16"; pack callB
step qwen_before .base3 qwen3_vl_8b 95 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callB
step internvl_after . internvl3_5_8b 150 "--docs 128 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0"; pack callB
step internvl_before .base3 internvl3_5_8b 100 "--docs 128 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callB
