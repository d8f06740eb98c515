#!/usr/bin/env bash
# HEAD (text work in the workers on meta stand-ins, image processor once a batch on the GPU): InternVL after/before (.base6), Qwen3-VL after.
source .gpu/common.sh
step internvl_after . internvl3_5_8b 85 "--docs 128 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callM
step internvl_before .base6 internvl3_5_8b 85 "--docs 128 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callM
step qwen_after . qwen3_vl_8b 70 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callM
