#!/usr/bin/env bash
# Final (stop 21), same machine: Llama before, InternVL after (seed baseline) / before (.base4 = 7058d89).
source .gpu/common.sh
step llama_before .base4 llama3_2_11b_vision 100 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callF2
step internvl_after . internvl3_5_8b 170 "--docs 128 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0"; pack callF2
step internvl_before .base4 internvl3_5_8b 120 "--docs 128 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callF2
