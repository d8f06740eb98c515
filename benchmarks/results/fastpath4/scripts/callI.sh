#!/usr/bin/env bash
# The last device seconds, warm H200 after call H: Llama-3.2-Vision 64 documents, docvlm:auto only (HEAD).
source .gpu/common.sh; step llama_h . llama3_2_11b_vision 90 "--docs 64 --statements 0" "--configs docvlm:auto --check-docs 0"; pack callI
