#!/usr/bin/env bash
# Diagnostics: Qwen3-VL 64 docs with the 16-document profile (host waits, inputs_s), current tree.
source .gpu/common.sh
step qwen_diag . qwen3_vl_8b 300 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0 --profile-docs 16"; pack callD
grep -A30 "GPU idle" $R/qwen_diag/profile_qwen3_vl_8b.txt | head -40
