#!/bin/sh
# Issue 9's benchmark: Qwen2.5-Coder-0.5B drafting for Qwen2.5-Coder-1.5B on Spec-Bench, bf16
# (both models: on this CPU bf16 verifies 9 tokens faster than one fp32 step, and the 0.5B's
# one-token bf16 forward costs what its fp32 one does), greedy then temperature 0.7, each run
# alone on the machine; then self-spec on SmolLM2-135M. Needs the acceptance head:
#   decodekit train acceptance-head --model qwen2.5-coder-1.5b --draft qwen2.5-coder-0.5b --dtype bf16 \
#       --per-category 5 --max-new-tokens 48 --draft-len 8
set -e
cd "$(dirname "$0")"
Q="--model qwen2.5-coder-1.5b --draft qwen2.5-coder-0.5b --dtype bf16 --threads 2 --per-category 1 --max-new-tokens 64"
decodekit bench $Q --out qwen-draft-models-greedy \
  --methods "ar,ar@fp32,draft-model,draft-model[stop=fixed,max_draft=4],draft-model[stop=threshold],draft-model[predictor=head],self-spec,spectr,rsd,pearl,hf-assisted"
decodekit bench $Q --temperature 0.7 --out qwen-draft-models-t0.7 \
  --methods "ar,ar@fp32,draft-model,draft-model[stop=fixed,max_draft=4],draft-model[predictor=head],spectr,rsd,pearl,hf-assisted"
decodekit bench --model smollm2-135m --threads 2 --per-category 5 --max-new-tokens 64 --out smollm2-self-spec \
  --methods "ar,self-spec,self-spec[exit_layer=24],self-spec[exit_layer=24,stop=fixed,max_draft=3],layer-skip[speedup=1.25],layer-skip[exit_layer=24]"
