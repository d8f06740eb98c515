#!/usr/bin/env bash
# The before (.base6 = a2f2958) of callK's machine: Qwen3-VL and Llama, docvlm:auto only.
source .gpu/common.sh
step qwen_before .base6 qwen3_vl_8b 80 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callL
step llama_before .base6 llama3_2_11b_vision 80 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callL
