"""The README's server examples, run as written: `decodekit serve` on the default model, the curl
example and the openai-client example against it."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

README = Path(__file__).parent.parent / "README.md"


def server_blocks() -> dict[str, str]:
    section = README.read_text(encoding="utf-8").split("## Server:", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(bash|python)\n(.*?)```", section, re.S)
    serve = next(code for lang, code in blocks if lang == "bash" and "decodekit serve" in code)
    curl = next(code for lang, code in blocks if lang == "bash" and code.startswith("curl"))
    client = next(code for lang, code in blocks if lang == "python")
    return {"serve": serve.strip(), "curl": curl, "client": client}


@pytest.mark.slow
def test_the_readme_server_examples_run_as_written():
    blocks = server_blocks()
    bin_dir = Path(sys.executable).parent  # the venv's `decodekit`
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(shlex.split(blocks["serve"]), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                if httpx.get("http://127.0.0.1:8000/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.5)
        curl = subprocess.run(["bash", "-c", blocks["curl"]], capture_output=True, text=True, timeout=300, check=True)
        answer = json.loads(curl.stdout)
        assert answer["choices"][0]["message"]["content"]
        assert answer["metrics"]["speculative_decoding"]["method"] == "token-recycling"
        client = subprocess.run([sys.executable, "-c", blocks["client"]], capture_output=True, text=True, timeout=300,
                                check=True)
        assert re.search(r"τ \d+\.\d\d tokens/step, \d+\.\d tok/s", client.stdout), client.stdout
    finally:
        server.terminate()
        server.wait(60)
