#!/usr/bin/env bash
# InternVL after/before (.base6) and a Qwen3-VL profile of HEAD, same machine as callI.
source .gpu/common.sh
step internvl_after . internvl3_5_8b 130 "--docs 128 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0"; pack callJ
step internvl_before .base6 internvl3_5_8b 100 "--docs 128 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callJ
step qwen_profile . qwen3_vl_8b 170 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0 --profile-docs 16"; pack callJ
