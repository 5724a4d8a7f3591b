"""Where one llama.cpp forward's time goes, by kind of operation (issue 22's profile, step 1).

llama.cpp's scheduler can call back after every graph node (`cb_eval`); this script times the
gap between callbacks and adds it up by what the node does:

- weight matmuls by role: attention projections (q, k, v, output), feed-forward (gate, up,
  down), and the output head over the vocabulary;
- attention itself: the q·k and p·v products over the cache, softmax, rope, writing the cache;
- everything else (norms, activations, adds, the embedding lookup).

Computing node by node adds a dispatch per node, so the per-node sum runs above a normal
forward; the script prints both, and the shares are what to read. Then it times decodekit's own
work around a forward: one AR step through decodekit's loop against one bare llama_decode.

Run it alone on the machine (it needs both cores):

    python benchmarks/llamacpp_op_profile.py smollm2-135m q4_0
"""

import ctypes
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from decodekit.auto import run_once
from decodekit.drafters.base import NoDrafter
from decodekit.machine import cpu_model
from decodekit.models.llamacpp.library import lib
from decodekit.models.llamacpp.load import load_llamacpp
from decodekit.sampling import SamplingConfig
from decodekit.types import Draft

SIZES = [1, 2, 4, 8]
CONTEXT = 300
REPEATS = 7
FILLER = [(i * 7919) % 30000 + 100 for i in range(CONTEXT + 16)]


class Tensor(ctypes.Structure):
    """The head of ggml.h's struct ggml_tensor (llama-cpp-python 0.3.36's ggml), up to the name."""

    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
                ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64)]


def kind(node: Tensor, ggml) -> str:
    op = ggml.ggml_op_name(node.op).decode()
    name = node.name.decode(errors="replace").split("-")[0]
    if op == "MUL_MAT":
        weight = Tensor.from_address(node.src[0])
        weight_type = ggml.ggml_type_name(weight.type).decode()
        if name in ("kq", "kqv"):
            return f"attention {name} over the cache ({weight_type})"
        if name == "result_output":
            return f"output head ({weight_type})"
        role = ("attention projections" if name in ("Qcur", "Kcur", "Vcur", "attn_out", "kqv_out")
                else "feed-forward" if name.startswith("ffn") else name)
        return f"{role} ({weight_type})"
    if op in ("SOFT_MAX", "ROPE", "CPY", "SET_ROWS"):
        return f"attention {op.lower()}"
    return f"other: {op.lower()}"


def main() -> None:
    model, quant = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    backend = load_llamacpp(model, quant=quant, threads=2, calibrate=False)
    llama = lib()
    ggml = ctypes.CDLL(str(Path(llama.__file__).parent / "lib" / "libggml-base.so"))  # ggml_op_name lives there
    ggml.ggml_op_name.restype = ctypes.c_char_p
    ggml.ggml_type_name.restype = ctypes.c_char_p

    totals: dict[str, float] = defaultdict(float)
    clock = {"last": 0.0, "on": False}

    @llama.ggml_backend_sched_eval_callback
    def on_node(tensor, ask, _data):
        if ask:
            return True  # compute each node on its own, so the gap between callbacks is its time
        now = time.perf_counter()
        if clock["on"]:
            totals[kind(Tensor.from_address(tensor), ggml)] += now - clock["last"]
        clock["last"] = now
        return True

    print(f"# {backend.identity}, {cpu_model()}")
    plain = {}
    for n in SIZES:  # normal forwards first, on decodekit's own context
        cache = backend.new_cache()
        backend.forward(FILLER[:CONTEXT], Draft.empty(), cache)
        times = []
        for _ in range(REPEATS + 1):
            start = time.perf_counter()
            backend.forward([FILLER[CONTEXT]], Draft(FILLER[CONTEXT + 1: CONTEXT + n]), cache)
            times.append(time.perf_counter() - start)
            cache.crop(CONTEXT)
        plain[n] = statistics.median(times[1:])

    params = llama.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = 1024, 512, 512
    params.n_threads = params.n_threads_batch = 2
    params.flash_attn_type = llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
    params.cb_eval = on_node
    context = llama.llama_init_from_model(backend._model, params)
    memory = llama.llama_get_memory(context)
    batch = llama.llama_batch_init(512, 0, 1)

    def decode(tokens: list[int], first_position: int) -> None:
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, first_position + i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, 1
        clock["last"] = time.perf_counter()
        assert llama.llama_decode(context, batch) == 0

    rows = {}
    for n in SIZES:
        llama.llama_memory_clear(memory, True)
        clock["on"] = False
        decode(FILLER[:CONTEXT], 0)
        totals.clear()
        walls = []
        for repeat in range(REPEATS + 1):
            clock["on"] = repeat > 0
            start = time.perf_counter()
            decode(FILLER[CONTEXT: CONTEXT + n], CONTEXT)
            walls.append(time.perf_counter() - start)
            llama.llama_memory_seq_rm(memory, 0, CONTEXT, -1)
        rows[n] = ({k: v / REPEATS for k, v in totals.items()}, statistics.median(walls[1:]))
    kinds = sorted({k for shares, _ in rows.values() for k in shares}, key=lambda k: -rows[1][0].get(k, 0))
    print("| part | " + " | ".join(f"{n} token{'s' if n > 1 else ''}" for n in SIZES) + " |")
    print("|---|" + "---|" * len(SIZES))
    for k in kinds:
        cells = []
        for n in SIZES:
            shares, _ = rows[n]
            total = sum(shares.values())
            cells.append(f"{shares.get(k, 0) * 1e3:.2f} ms ({shares.get(k, 0) / total:.0%})")
        print(f"| {k} | " + " | ".join(cells) + " |")
    print("| sum node by node | " + " | ".join(f"{sum(rows[n][0].values()) * 1e3:.2f} ms" for n in SIZES) + " |")
    print("| forward, normal | " + " | ".join(f"{plain[n] * 1e3:.2f} ms" for n in SIZES) + " |")

    # decodekit's own work per AR step: its loop against the bare forwards it makes. Two answer
    # lengths from the same prompt, so the prefill cancels out of the difference.
    prompt = FILLER[:CONTEXT]
    run_once(backend, NoDrafter(), prompt, 16, SamplingConfig())
    short, long = (min((run_once(backend, NoDrafter(), prompt, n, SamplingConfig()) for _ in range(5)),
                       key=lambda stats: stats.wall_s) for n in (16, 144))
    step = (long.wall_s - short.wall_s) / (long.new_tokens - short.new_tokens)
    print(f"\ndecodekit AR: {step * 1e3:.2f} ms per step after the prefill, against a bare one-token forward of "
          f"{plain[1] * 1e3:.2f} ms: {(step - plain[1]) * 1e3:.2f} ms per step outside the forward")

if __name__ == "__main__":
    main()
