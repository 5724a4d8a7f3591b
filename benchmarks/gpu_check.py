"""Device check on a CUDA GPU (the CPU test suite cannot cover it):

1. every registered method reproduces AR's greedy ids on CUDA (tiny Llama / Qwen2 / Gemma 3),
   and seeded sampling reproduces seeded AR token for token;
2. decodekit AR equals Hugging Face generate(do_sample=False) on CUDA;
3. timings synchronise: the loop's forward time adds up to the wall time, and an
   unsynchronised clock would have read launches only;
4. the measured forward-cost curve of a 1.1B-parameter Llama-shaped model (random weights,
   bf16) — on a GPU it should be nearly flat, which is what lets big draft trees pay there.

Run from the project root on a machine with a CUDA GPU: python benchmarks/gpu_check.py [OUT.json]
"""

import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny import ARCHITECTURES, VOCAB, byte_tokenizer, tiny_model  # noqa: E402

from decodekit import Decoder  # noqa: E402
from decodekit.calibrate import measure_curve, timed_forward  # noqa: E402
from decodekit.drafters import METHODS  # noqa: E402
from decodekit.models.hf import HFBackend  # noqa: E402
from decodekit.models.hf.baseline import hf_generate  # noqa: E402
from decodekit.sampling import SamplingConfig  # noqa: E402
from decodekit.types import Draft  # noqa: E402

assert torch.cuda.is_available(), "this check needs a CUDA GPU"
report: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
rng = random.Random(0)


def repeating_prompt() -> list[int]:
    words = [[rng.randrange(VOCAB - 2) for _ in range(rng.randint(1, 4))] for _ in range(5)]
    return [t for _ in range(rng.randint(6, 12)) for t in rng.choice(words)]


methods = [m for m in METHODS if m != "ar"] + ["copy-spec+token-recycling"]
exact: dict = {}
for arch in ARCHITECTURES:
    backend = HFBackend(model=tiny_model(arch).to("cuda"), tokenizer=byte_tokenizer(), name=f"tiny-{arch}")
    prompts = [repeating_prompt() for _ in range(4)]
    ar = Decoder(backend, "ar")
    greedy = [ar.generate(prompt_ids=p, max_new_tokens=40).token_ids for p in prompts]
    sampled = [ar.generate(prompt_ids=p, max_new_tokens=30, temperature=1.0, seed=7).token_ids for p in prompts]
    hf = [hf_generate(backend, p, 40, SamplingConfig(), seed=0) for p in prompts]
    exact[f"{arch}: hf generate"] = hf == greedy
    for method in methods:
        decoder = Decoder(backend, method)
        results = [decoder.generate(prompt_ids=p, max_new_tokens=40) for p in prompts]
        tau = sum(r.stats.new_tokens for r in results) / sum(r.stats.steps for r in results)
        same = [r.token_ids for r in results] == greedy
        seeded = [decoder.generate(prompt_ids=p, max_new_tokens=30, temperature=1.0, seed=7).token_ids
                  for p in prompts] == sampled
        exact[f"{arch}: {method}"] = {"greedy identical": same, "seeded sampling identical": seeded,
                                      "tau": round(tau, 2)}
report["exactness on cuda"] = exact

# A TinyLlama-1.1B-shaped model with random weights: the cost curve depends on shapes only.
from transformers import AutoModelForCausalLM, LlamaConfig  # noqa: E402

config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                     num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048)
torch.manual_seed(0)
big_model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).to("cuda").eval()
big = HFBackend(model=big_model, tokenizer=byte_tokenizer(), name="random-llama-1.1b")
report["identity"] = big.identity
sizes = (1, 2, 4, 8, 16, 32, 64, 128)
report["relative forward cost, bf16, 512-token cache"] = measure_curve(big, context=512, repeats=5, sizes=sizes)

cache = big.new_cache()
big.forward(list(range(512)), Draft.empty(), cache)
unsynced = {}
for n in (1, 64):
    times = []
    for _ in range(6):
        big.synchronize()
        start = time.perf_counter()
        big.forward([5], Draft(tokens=list(range(n - 1))), cache)  # no synchronize: launch time only
        times.append(time.perf_counter() - start)
        big.synchronize()
        cache.crop(512)
    unsynced[n] = round(sorted(times)[3] * 1000, 3)
synced = {}
for n in (1, 64):
    times = []
    for _ in range(6):
        times.append(timed_forward(big, [5], Draft(tokens=list(range(n - 1))), cache))
        cache.crop(512)
    synced[n] = round(sorted(times)[3] * 1000, 3)
report["forward ms, read without synchronize (launch only)"] = unsynced
report["forward ms, synchronised"] = synced

decoder = Decoder(big, "ar")
result = decoder.generate(prompt_ids=list(range(1, 200)), max_new_tokens=64)
stats = result.stats
report["loop: 64 tokens"] = {"wall_s": round(stats.wall_s, 4), "forward_s": round(stats.forward_s, 4),
                             "draft_s": round(stats.draft_s, 4), "other_s": round(stats.other_s, 4),
                             "tokens_per_s": round(stats.tokens_per_s, 1)}

text = json.dumps(report, indent=1)
print(text)
if len(sys.argv) > 1:
    Path(sys.argv[1]).write_text(text)
