#!/usr/bin/env bash
# Issue 21 before (.base = 0187343) / after + issue 22's InternVL row, one call.
source .gpu/common.sh
S="--docs 128 --statements 0"; B="--docs 24 --statements 24"
step before_std .base internvl3_5_8b 110 "$S" "--configs docvlm:auto --check-docs 0"; pack internvl
step after_std . internvl3_5_8b 230 "$S" "--configs seed:8,docvlm:auto --baseline-docs 8 --check-docs 8 --profile-docs 32"; pack internvl
step before_stmt .base internvl3_5_8b 90 "$B" "--configs docvlm:auto --check-docs 0"; pack internvl
step after_stmt . internvl3_5_8b 90 "$B" "--configs docvlm:auto --check-docs 0"; pack internvl
