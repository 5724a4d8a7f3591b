#!/bin/sh
# Issue 11's benchmark: decodekit on the llama.cpp backend against llama-cpp-python's own AR and
# prompt lookup (same GGUF, same threads, one process), then decodekit on llama.cpp against
# decodekit on transformers for every zoo model. Each run alone on the machine.
set -e
cd "$(dirname "$0")"
decodekit bench --backend llama.cpp --model smollm2-135m --threads 2 --per-category 10 --out llamacpp-smollm2-spec-bench \
  --methods "ar,prompt-lookup,copy-spec,llama-greedy,llama-prompt-lookup"
decodekit bench --backend llama.cpp --model qwen2.5-coder-1.5b --threads 2 --per-category 2 --out llamacpp-qwen1.5b-spec-bench \
  --draft qwen2.5-coder-0.5b --methods "ar,copy-spec,draft-model,llama-greedy,llama-prompt-lookup"
# The same 6 prompts (1 per category), 64 tokens, on both backends: which is faster in absolute terms.
for model in smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b; do
  dtype=fp32; [ "$model" = qwen2.5-coder-1.5b ] && dtype=bf16   # bf16 decodes fastest there (issue 9)
  decodekit bench --model "$model" --dtype "$dtype" --threads 2 --per-category 1 --max-new-tokens 64 \
    --out "absolute/$model-transformers" --methods "ar,copy-spec"
  decodekit bench --backend llama.cpp --model "$model" --threads 2 --per-category 1 --max-new-tokens 64 \
    --out "absolute/$model-llamacpp" --methods "ar,copy-spec"
done
