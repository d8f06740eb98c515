#!/usr/bin/env bash
# The command of the fourth call (run inline): before tree .base3 = 0802ab1, same warm H100 as callC.
source .gpu/common.sh; step qwen_before .base3 qwen3_vl_8b 90 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callD; step llama_before .base3 llama3_2_11b_vision 90 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callD
