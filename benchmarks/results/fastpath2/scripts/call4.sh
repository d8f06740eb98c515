#!/usr/bin/env bash
# Qwen3-VL before/after again (the first pair differed by 3%), the Qwen3-VL vision hook taken out as in call2.
sed -i 's/, self.adapter.packed_vision():/:/' docvlm/models/static_engine.py
source .gpu/common.sh
step qwen_before2 .base3 qwen3_vl_8b 95 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack call4
step qwen_after2 . qwen3_vl_8b 95 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack call4
