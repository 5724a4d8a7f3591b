"""Forward time by dtype and number of new tokens, on a 300-token cache: why issue 9's benchmark
runs Qwen2.5-Coder 0.5B and 1.5B in bf16 (benchmarks/run_draft_models.sh). Run it alone on the
machine: `python benchmarks/forward_cost_by_dtype.py` (median of 5 per cell)."""

import statistics
import time

import torch

from decodekit.models.hf import load_backend
from decodekit.types import Draft

CONTEXT = list(range(1000, 1300))
NEW_TOKENS = [1, 5, 9, 17]

torch.set_num_threads(2)
for name in ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"]:
    for dtype in ["fp32", "bf16"]:
        backend = load_backend(name, dtype=dtype, calibrate=False)
        cells = []
        for n in NEW_TOKENS:
            times = []
            for _ in range(5):
                cache = backend.new_cache()
                backend.forward(CONTEXT, Draft.empty(), cache)
                start = time.perf_counter()
                backend.forward([5], Draft(list(range(7, 6 + n))), cache)  # 1 pending + n - 1 drafted
                times.append(time.perf_counter() - start)
            cells.append(f"{n}: {statistics.median(times) * 1000:.0f} ms")
        print(name, dtype, " | ".join(cells), flush=True)
        del backend
