"""Paper-sized trees vs machine-sized trees on this CPU: tau and tok/s on 12 Spec-Bench prompts.

Run from the project root: python benchmarks/paper_sized_trees.py (about 8 minutes on 2 cores)."""
from decodekit.api import Decoder
from decodekit.models.hf import load_backend
from decodekit.bench.dataset import load_questions
qs = load_questions(per_category=2)
b = load_backend("smollm2-135m", threads=2)
print("cost curve:", {n: round(b.latency(n), 2) for n in (1, 2, 4, 8, 16, 32, 64, 81)})
configs = [("ar", {}), ("token-recycling", {}), ("token-recycling", {"adaptive": False}),
           ("lookahead", {}), ("lookahead", {"adaptive": False})]
decs = [(m, o, Decoder(b, m, **o)) for m, o in configs]
for _, _, d in decs: d.generate(prompt_ids=d.user_prompt_ids(qs[0].turns[0]), max_new_tokens=8)
tot = {i: [0.0, 0, 0, 0] for i in range(len(decs))}
for q in qs:
    for i, (m, o, d) in enumerate(decs):
        s = d.generate(prompt_ids=d.user_prompt_ids(q.turns[0]), max_new_tokens=128).stats
        t = tot[i]; t[0] += s.wall_s; t[1] += s.new_tokens; t[2] += s.steps; t[3] += s.drafted_tokens
for i, (m, o, d) in enumerate(decs):
    w, n, st, dr = tot[i]
    print(f"{m} {o or ''}: {n / w:.1f} tok/s, tau {n / st:.2f}, drafted {dr / st:.1f} tokens/step, {w / st * 1000:.0f} ms/step")
