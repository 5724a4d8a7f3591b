"""The server's load test on a real model: `decodekit serve` in a subprocess on loopback, then
8 clients x 10 requests (mixed streaming and plain, some hanging up mid-stream), then a burst
of 2 x max-queue + 1 simultaneous requests. Writes OUT/report.md and OUT/summary.json.

    python benchmarks/serve_load.py --model smollm2-135m --method prompt-lookup --out benchmarks/smollm2-serve-load

Run it alone on the machine: the server and the clients share its cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from decodekit.server.loadtest import burst, run_load, single_answers

PROMPTS = [
    "Rewrite this function with type hints, keeping the logic:\n\ndef area(w, h):\n    return w * h",
    "Summarize in one sentence: The city council met on Tuesday and voted to extend the library's opening "
    "hours on weekends, citing a rise in student visitors during exam season.",
    "Translate to French: The weather is nice today and we are going to the park.",
    "What is 17 times 23? Explain briefly.",
    "Write a haiku about the sea.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--method", default="prompt-lookup")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "decodekit", "serve", "--model", args.model, "--method",
                               args.method, "--port", str(port), "--max-queue", str(args.max_queue)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_up(url, server)
        process = psutil.Process(server.pid)
        bodies = [{"model": args.model, "messages": [{"role": "user", "content": p}], "max_tokens": args.max_tokens,
                   "temperature": 0} for p in PROMPTS]
        print("single requests (the answers to compare with) ...", flush=True)
        expected = single_answers(url, bodies)
        print("one client alone (unloaded latency) ...", flush=True)
        alone = run_load(url, bodies, expected, clients=1, per_client=10, hang_up_every=1000)
        baseline = process.memory_info().rss
        total = args.clients * args.per_client
        done = [0]

        def progress() -> None:
            done[0] += 1
            print(f"\r{done[0]}/{total} requests", end="", flush=True)

        report = run_load(url, bodies, expected, clients=args.clients, per_client=args.per_client, progress=progress)
        print()
        after_load = process.memory_info().rss
        statuses = burst(url, bodies[3], 2 * args.max_queue + 1)
        time.sleep(2)
        after = process.memory_info().rss
    finally:
        server.terminate()
        server.wait(60)
    unloaded = alone.summary()
    summary = {**report.summary(), "alone_latency_p50_s": unloaded["latency_p50_s"],
               "alone_first_token_p50_s": unloaded["first_token_p50_s"],
               "alone_requests_per_s": unloaded["requests_per_s"], "alone_mismatches": unloaded["mismatches"],
               "burst_statuses": dict(statuses), "rss_baseline_mib": round(baseline / 2**20, 1),
               "rss_after_load_mib": round(after_load / 2**20, 1), "rss_after_burst_mib": round(after / 2**20, 1),
               "server_exit_code": server.returncode, "model": args.model, "method": args.method,
               "max_tokens": args.max_tokens, "cpu": _cpu()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "report.md").write_text(_markdown(summary, args))
    print(json.dumps(summary, indent=2))
    if summary["mismatches"] or any(int(s) >= 500 for s in summary["statuses"]):
        sys.exit(1)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {psutil.cpu_count()} cores"
    return platform.machine()


def _wait_until_up(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not come up in 10 minutes")


def _markdown(s: dict, args: argparse.Namespace) -> str:
    command = " ".join(["python benchmarks/serve_load.py", *sys.argv[1:]])
    return f"""# Server load test: {s['model']}, {s['method']}

Command: `{command}`

{args.clients} clients x {args.per_client} requests, back to back, on loopback; even-numbered requests
stream, every 7th streaming request hangs up after two text chunks; greedy, {s['max_tokens']} tokens
at most. Then a burst of {2 * args.max_queue + 1} simultaneous requests against a queue of {args.max_queue}.

| figure | value |
|---|---|
| requests sent (429s retried after Retry-After) | {s['requests']} |
| completed / hung up | {s['completed']} / {s['left_early']} |
| HTTP statuses | {s['statuses']} |
| completed answers unlike the request's answer alone | {s['mismatches']} (one client alone: {s['alone_mismatches']}) |
| requests/s | {s['requests_per_s']} |
| latency p50 / p95 | {s['latency_p50_s']} s / {s['latency_p95_s']} s |
| time to first token p50 / p95 (streams) | {s['first_token_p50_s']} s / {s['first_token_p95_s']} s |
| one client alone: requests/s, latency p50, time to first token p50 | {s['alone_requests_per_s']}, {s['alone_latency_p50_s']} s, {s['alone_first_token_p50_s']} s |
| burst statuses | {s['burst_statuses']} |
| server RSS: baseline / after load / after burst | {s['rss_baseline_mib']} / {s['rss_after_load_mib']} / {s['rss_after_burst_mib']} MiB |
| server exit status after SIGTERM | {s['server_exit_code']} (uvicorn re-raises the signal after a clean shutdown) |

Machine: {s['cpu']}.

One worker runs one generation at a time, so latency grows with the queue: with 8 clients a
request waits for about 7 others. Time to first token includes that wait.
"""


if __name__ == "__main__":
    main()
