#!/usr/bin/env bash
# Issue 22's Llama-3.2-Vision row: before (.base2 = 47ca0a0, masked vision attention) / after, one call.
source .gpu/common.sh
W="--docs 64 --statements 0"
step llama_before .base2 llama3_2_11b_vision 130 "$W" "--configs docvlm:auto --check-docs 0"; pack llama
step llama_after . llama3_2_11b_vision 280 "$W" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 8 --profile-docs 32"; pack llama
