"""The llama.cpp backend's model-free parts: tree layout as sequences, chat templates, and the
checks that reject options a backend cannot honour before anything loads."""

import sys

import pytest

from decodekit import Decoder
from decodekit.bench.baselines import check_baseline
from decodekit.bench.runner import BenchSettings
from decodekit.errors import DecodekitError
from decodekit.models.backends import check_backend
from decodekit.models.llamacpp import library
from decodekit.models.llamacpp.cache import TreeLayout
from decodekit.models.llamacpp.chat import render
from decodekit.models.llamacpp.quantize import check_quant


def test_tree_layout_gives_each_leaf_a_branch_and_each_node_the_branches_through_it():
    #   a ─┬─ b      d ── e
    #      └─ c
    tree = TreeLayout.of([-1, 0, 0, -1, 3])
    assert tree.count == 3
    assert tree.sequences == [[1, 2], [1], [2], [3], [3]]
    assert tree.branch_through([0, 2]) == 2
    assert tree.branch_through([3]) == 3
    assert tree.branch_through([0]) in (1, 2)


def test_tree_layout_refuses_a_commit_that_is_not_a_root_path():
    tree = TreeLayout.of([-1, 0, 0, -1, 3])
    with pytest.raises(ValueError, match="not a path"):
        tree.branch_through([0, 4])
    with pytest.raises(ValueError, match="root"):
        tree.branch_through([1])


def test_a_chain_shaped_tree_is_one_branch():
    assert TreeLayout.of([-1, 0, 1]).sequences == [[1], [1], [1]]


TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
            "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def test_chat_template_renders_messages_and_the_generation_prompt():
    text = render(TEMPLATE, [{"role": "user", "content": "hi"}], "<s>", "</s>")
    assert text == "<s><|user|>\nhi</s>\n<|assistant|>\n"


def test_chat_template_tojson_keeps_non_ascii_and_raise_exception_is_a_clear_error():
    assert render("{{ messages[0]['content'] | tojson }}", [{"role": "user", "content": "café"}], "", "") == '"café"'
    refusing = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be the user') }}{% endif %}"
    with pytest.raises(DecodekitError, match="first message must be the user"):
        render(refusing, [{"role": "system", "content": "x"}], "", "")


@pytest.mark.parametrize("kwargs, message", [
    (dict(backend="llama"), "unknown backend 'llama'"),
    (dict(backend="hf", quant="q8_0"), "quant= re-quantises a GGUF for the llama.cpp backend"),
    (dict(backend="llama.cpp", dtype="bf16"), "pass quant="),
    (dict(backend="llama.cpp", device="cuda"), "runs on the CPU"),
    (dict(backend="llama.cpp", quant="q3"), "unknown quantisation 'q3'"),
])
def test_options_that_do_not_fit_the_backend_fail_before_loading(kwargs, message):
    with pytest.raises(DecodekitError, match=message):
        check_backend(**kwargs)
    with pytest.raises(DecodekitError, match=message):
        Decoder("smollm2-135m", **kwargs)  # no download, no load: the check comes first


def test_unknown_quantisation_names_the_choices():
    with pytest.raises(DecodekitError, match=r"unknown quantisation 'q3'.*q8_0"):
        check_quant("q3")


def test_baselines_must_match_the_benchmarks_backend():
    with pytest.raises(DecodekitError, match=r"runs on the hf backend.*llama-greedy, llama-prompt-lookup"):
        check_baseline("hf-greedy", "llama.cpp")
    with pytest.raises(DecodekitError, match=r"runs on the llama.cpp backend.*hf-greedy"):
        BenchSettings.parse(["ar", "llama-greedy"]).check_backend("hf")
    with pytest.raises(DecodekitError, match=r"'ar@fp32': on the llama.cpp backend .* weight type"):
        BenchSettings.parse(["ar", "ar@fp32"]).check_backend("llama.cpp")
    BenchSettings.parse(["ar", "ar@bf16", "copy-spec@q4_0"]).check_backend("llama.cpp")  # weight types


def test_a_missing_llama_cpp_python_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    library.lib.cache_clear()
    try:
        with pytest.raises(library.BackendUnavailableError, match=r"decodekit\[llamacpp\].*make llamacpp"):
            library.lib()
        assert not library.available()
    finally:
        library.lib.cache_clear()
