#!/usr/bin/env bash
# Issue 22 on the H200 (or what comes): Qwen3-VL and Llama after, each with its seed-style baseline.
source .gpu/common.sh
step qwen_after . qwen3_vl_8b 185 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0 --profile-docs 16"; pack callC
step llama_after . llama3_2_11b_vision 150 "--docs 64 --statements 0" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 0"; pack callC
