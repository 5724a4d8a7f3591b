"""Where llama.cpp's time goes by weight type: prefill throughput, the cost of 1-16-token
verification forwards, and what re-quantising costs in quality (issue 22's profile).

For each weight type (the zoo file's own, then re-quantised copies: `decodekit` keeps them in
$DECODEKIT_HOME/gguf), on 2 threads:
- prefill: seconds for a 512- and a 1024-token prompt from an empty cache (median of 3);
- forward cost of n new tokens on a 300-token cache, relative to one (median of 7);
- perplexity of a fixed text (the copy-heavy set's rewriting prompts, CPython docstrings),
  each scored as one forward over the whole text.

Run it alone on the machine (it needs both cores):

    python benchmarks/llamacpp_weight_types.py smollm2-135m q4_1,q4_0,iq4_nl,q8_0,bf16
"""

import json
import statistics
import sys

from decodekit.bench.forms import perplexity
from decodekit.calibrate import timed_forward
from decodekit.machine import cpu_model
from decodekit.models.llamacpp.load import load_llamacpp
from decodekit.types import Draft

SIZES = [1, 2, 4, 8, 16]
FILLER = [(i * 7919) % 30000 + 100 for i in range(1100)]


def prefill_seconds(backend, length: int) -> float:
    times = [timed_forward(backend, FILLER[:length], Draft.empty(), backend.new_cache()) for _ in range(3)]
    return statistics.median(times)


def curve(backend) -> dict[int, float]:
    cache = backend.new_cache()
    backend.forward(FILLER[:300], Draft.empty(), cache)
    seconds = {}
    for n in SIZES:
        times = []
        for _ in range(8):
            times.append(timed_forward(backend, [FILLER[300]], Draft(FILLER[301: 300 + n]), cache))
            cache.crop(300)
        seconds[n] = statistics.median(times[1:])
    return seconds


def main() -> None:
    model, quants = sys.argv[1], sys.argv[2].split(",")
    print(f"# {model}, {cpu_model()}, 2 threads")
    print("| weight type | prefill 512 tok | prefill 1024 tok | 1 token | " + " | ".join(f"{n}" for n in SIZES[1:])
          + " | perplexity |")
    print("|---|---|---|---|" + "---|" * (len(SIZES) - 1) + "---|")
    rows = []
    for i, quant in enumerate(quants):
        backend = load_llamacpp(model, quant=None if i == 0 else quant, threads=2, calibrate=False)
        p512, p1024 = prefill_seconds(backend, 512), prefill_seconds(backend, 1024)
        seconds = curve(backend)
        ppl = perplexity(backend)
        one = seconds[1]
        label = backend.weight_type + (" (the zoo file)" if i == 0 else "")
        print(f"| {label} | {p512 * 1000:.0f} ms ({512 / p512:.0f} tok/s) | {p1024 * 1000:.0f} ms "
              f"({1024 / p1024:.0f} tok/s) | {one * 1000:.1f} ms | "
              + " | ".join(f"{seconds[n] / one:.2f}" for n in SIZES[1:]) + f" | {ppl:.3f} |", flush=True)
        rows.append({"weight_type": backend.weight_type, "prefill_512_s": p512, "prefill_1024_s": p1024,
                     "forward_s": seconds, "perplexity": ppl})
        del backend
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
