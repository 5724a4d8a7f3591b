"""Serve the tiny model, each forward slowed by DELAY seconds, through uvicorn.run and its own
signal handling, as `decodekit serve` does: `python tests/serve_tiny.py PORT DELAY`."""

import sys
from pathlib import Path

import torch
import uvicorn

sys.path.insert(0, str(Path(__file__).parent))
from serving import SlowBackend
from tiny import tiny_backend

from decodekit.server import DecodingChoice, ServerLimits, create_app

if __name__ == "__main__":
    torch.set_num_threads(1)
    port, delay = int(sys.argv[1]), float(sys.argv[2])
    app = create_app(SlowBackend(tiny_backend("llama"), delay), "tiny", DecodingChoice.parse("ar"),
                     limits=ServerLimits(max_tokens=256, default_max_tokens=16))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=20)
