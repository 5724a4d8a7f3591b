"""The layer-skipping view (models/hf/skip.py): a model drafting with a subset of its own layers.

The reference for a subset is a separate, smaller model: a deep copy of the tiny model holding
only the kept layers, renumbered 0..k-1 with a config to match, driven by a plain HFBackend with
its own (compact) cache. The view must give its logits, bit for bit (the same operations on the
same shapes), while running the shared original model.
"""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from tiny import ARCHITECTURES, VOCAB, tiny_backend

from decodekit.errors import DecodekitError, UnsupportedModelError
from decodekit.models.hf import HFBackend, LayerSkipBackend, balanced_layers, early_exit_layers, skipping_layers
from decodekit.models.hf.layers import decoder_layers
from decodekit.types import Draft

NUM_LAYERS = 4
ALL = list(range(NUM_LAYERS))
# Gemma 3's layers alternate sliding/full: [0, 2, 3] keeps sliding, sliding, full, so the kept
# layers' kinds no longer match their positions; [0, 3] and [0, 1] are balanced and early exit.
SUBSETS = [[0, 3], [0, 2, 3], [0, 1]]
# Longer than Gemma 3's sliding window (24), so the sliding layers' mask matters.
PROMPT = torch.randint(0, VOCAB - 2, (40,), generator=torch.Generator().manual_seed(1)).tolist()
TREE = Draft([10, 11, 12, 13, 14], parents=[-1, 0, 0, -1, 3])


def full_backend(arch: str) -> HFBackend:
    return tiny_backend(arch, num_layers=NUM_LAYERS)


def reference_backend(full: HFBackend, keep: list[int]) -> HFBackend:
    """An independent model built from only the kept layers: copied weights, renumbered cache
    slots, a config of len(keep) layers."""
    model = copy.deepcopy(full.model)
    layers = model.model.layers
    model.model.layers = torch.nn.ModuleList([layers[i] for i in keep])
    for slot, layer in enumerate(model.model.layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = slot
    config = model.config
    assert model.model.config is config
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in keep]
    config.num_hidden_layers = len(keep)
    return HFBackend(model=model, tokenizer=full.tokenizer, name="reference")


def scenario(backend):
    """Prefill, a chain step cropped to 2 accepted, a tree step compacted to a 2-node path, one
    more step, a crop back to the prompt and a last step: yields each forward's logits."""
    cache = backend.new_cache()
    yield backend.forward(PROMPT, Draft(), cache)
    assert len(cache) == len(PROMPT)
    yield backend.forward([5], Draft([6, 7, 8]), cache)
    assert len(cache) == len(PROMPT) + 4
    cache.keep(len(PROMPT) + 1, [0, 1])  # chain: a crop
    assert len(cache) == len(PROMPT) + 3
    start = len(cache)
    yield backend.forward([9], TREE, cache)
    assert len(cache) == start + 1 + len(TREE.tokens)
    cache.keep(start + 1, [0, 2])  # tree path 10 -> 12: gathered and compacted
    assert len(cache) == start + 3
    yield backend.forward([20], Draft([21, 22]), cache)
    cache.crop(len(PROMPT))
    yield backend.forward([30, 31], Draft([32]), cache)
    assert len(cache) == len(PROMPT) + 3


def run(backend) -> list[torch.Tensor]:
    return list(scenario(backend))


def assert_all_equal(got: list[torch.Tensor], want: list[torch.Tensor]):
    assert len(got) == len(want)
    for step, (a, b) in enumerate(zip(got, want)):
        assert torch.equal(a, b), f"step {step}: max difference {(a - b).abs().max().item():.3g}"


def assert_intact(full: HFBackend, baseline: list[torch.Tensor]):
    layers = full.model.model.layers
    assert len(layers) == NUM_LAYERS
    assert [layer.self_attn.layer_idx for layer in layers] == ALL
    assert len(getattr(full.model.config, "layer_types", None) or ALL) == NUM_LAYERS
    assert_all_equal(run(full), baseline)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_keeping_every_layer_is_the_full_model(arch):
    full = full_backend(arch)
    view = LayerSkipBackend(full, ALL)
    assert_all_equal(run(view), run(full))


@pytest.mark.parametrize("keep", SUBSETS, ids=str)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_subset_equals_a_model_built_from_those_layers(arch, keep):
    full = full_backend(arch)
    baseline = run(full)
    view = LayerSkipBackend(full, keep)
    got = run(view)
    assert_all_equal(got, run(reference_backend(full, keep)))
    for a, b in zip(got, baseline):
        assert (a - b).abs().max() > 1e-2  # skipping layers changes the logits
    assert_intact(full, baseline)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_skipped_layers_stay_empty_in_the_cache(arch):
    view = LayerSkipBackend(full_backend(arch), [0, 2])
    cache = view.new_cache()
    view.forward(PROMPT, TREE, cache)
    layers = cache.hf_cache.layers
    assert [layer.is_initialized for layer in layers[:3]] == [True, False, True]
    assert all(layer.keys.shape[-2] == len(PROMPT) + len(TREE.tokens) for layer in (layers[0], layers[2]))
    cache.keep(len(PROMPT), [1, 3])  # compacts the kept layers, passes over the skipped ones
    assert len(cache) == len(PROMPT) + 2
    assert layers[2].keys.shape[-2] == len(PROMPT) + 2
    assert not layers[1].is_initialized


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_layers_come_back_after_an_exception(arch):
    full = full_backend(arch)
    baseline = run(full)
    model = full.model
    original = model.model.layers
    with pytest.raises(RuntimeError, match="inside"), skipping_layers(model, [0, 3]):
        assert list(model.model.layers) == [original[0], original[3]]
        raise RuntimeError("inside")
    assert model.model.layers is original
    view = LayerSkipBackend(full, [0, 1, 3])
    with pytest.raises(IndexError):  # raised by the embedding, deep inside the view's forward
        view.forward([VOCAB + 5], Draft(), view.new_cache())
    assert model.model.layers is original
    assert_intact(full, baseline)


def test_nested_skipping_is_refused():
    full = full_backend("llama")
    view = LayerSkipBackend(full, [0, 3])
    with pytest.raises(DecodekitError, match="nested"), skipping_layers(full.model, [0, 1, 3]):
        view.forward([1, 2], Draft(), view.new_cache())
    assert len(full.model.model.layers) == NUM_LAYERS
    assert len(view.forward([1, 2], Draft(), view.new_cache())) == 1


@pytest.mark.parametrize("keep", [[0, 3], [0, 2, 3]], ids=str)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_incremental_decoding_matches_one_forward(arch, keep):
    view = LayerSkipBackend(full_backend(arch), keep)
    tokens = PROMPT + [3, 1, 4, 1, 5, 9, 2, 6]
    whole = view.forward(tokens[:1], Draft(tokens[1:]), view.new_cache())  # a row per position
    cache = view.new_cache()
    rows = [view.forward(tokens[:1], Draft(), cache)[0]]
    for token in tokens[1:]:
        rows.append(view.forward([token], Draft(), cache)[0])
    assert len(cache) == len(tokens)
    torch.testing.assert_close(torch.stack(rows), whole, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_full_model_and_view_used_alternately(arch):
    full = full_backend(arch)
    view = LayerSkipBackend(full, [0, 2, 3])
    alone_full, alone_view = run(full), run(view)
    mixed_full, mixed_view = [], []
    for a, b in zip(scenario(full), scenario(view)):  # full step, view step, full step, ...
        mixed_full.append(a)
        mixed_view.append(b)
    assert_all_equal(mixed_full, alone_full)
    assert_all_equal(mixed_view, alone_view)


def test_view_reports():
    full = full_backend("llama")
    view = LayerSkipBackend(full, balanced_layers(NUM_LAYERS, 2.0))
    assert view.kept_layers == (0, 3) and view.num_layers == NUM_LAYERS
    assert view.identity == f"{full.identity} keeping 2 of 4 layers"
    assert view.identity != LayerSkipBackend(full, [0, 1, 3]).identity
    for attribute in ["name", "context_length", "vocab_size", "dtype_name", "has_chat_template"]:
        assert getattr(view, attribute) == getattr(full, attribute), attribute
    assert view.eos_token_ids == full.eos_token_ids
    assert view.latency is not full.latency
    assert view.encode("héllo") == full.encode("héllo") and view.decode([104, 105]) == full.decode([104, 105])
    view.synchronize()


def test_view_refuses_a_cache_not_its_own():
    full = full_backend("llama")
    view = LayerSkipBackend(full, [0, 3])
    with pytest.raises(TypeError, match="cache of its own"):
        view.forward([1, 2], Draft(), full.new_cache())
    with pytest.raises(TypeError, match=r"for layers \[0, 1\]"):
        view.forward([1, 2], Draft(), LayerSkipBackend(full, [0, 1]).new_cache())


@pytest.mark.parametrize("keep", [[], [1, 2], [0, 4], [0, 2, 1], [0, 0, 3], [0, 1.0], [0, True]], ids=str)
def test_bad_keep(keep):
    full = full_backend("llama")
    with pytest.raises(DecodekitError):
        LayerSkipBackend(full, keep)
    with pytest.raises(DecodekitError), skipping_layers(full.model, keep):
        pass
    assert len(full.model.model.layers) == NUM_LAYERS


def test_decoder_layers():
    model = full_backend("gemma3").model
    owner, attribute, layers = decoder_layers(model)
    assert owner is model.model and attribute == "layers" and layers is model.model.layers

    class NoLayers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = copy.deepcopy(model.config)
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(NUM_LAYERS - 1)])

    with pytest.raises(UnsupportedModelError, match="decoder layer list"):
        decoder_layers(NoLayers())
    with pytest.raises(UnsupportedModelError, match="config"):
        decoder_layers(torch.nn.Linear(2, 2))


@pytest.mark.parametrize(
    ("num_layers", "speedup", "expected"),
    [
        (4, 1.0, [0, 1, 2, 3]),
        (4, 1.5, [0, 2, 3]),  # 4 / 1.5 = 2.67 -> 3 layers
        (4, 2.0, [0, 3]),
        (12, 3.0, [0, 4, 7, 11]),
        (30, 2.0, [0, 2, 4, 6, 8, 10, 12, 15, 17, 19, 21, 23, 25, 27, 29]),
        (32, 4.0, [0, 4, 9, 13, 18, 22, 27, 31]),
        (5, 2.0, [0, 2, 4]),  # 5 / 2 = 2.5 rounds half up
    ],
)
def test_balanced_layers(num_layers, speedup, expected):
    assert balanced_layers(num_layers, speedup) == expected


@pytest.mark.parametrize("num_layers", range(2, 41))
@pytest.mark.parametrize("speedup", [1.0, 1.3, 2.0, 2.5, 3.0, 4.5])
def test_balanced_layers_are_spread_evenly(num_layers, speedup):
    count = math.floor(num_layers / speedup + 0.5)
    if count < 2:
        with pytest.raises(DecodekitError, match="fewer than 2"):
            balanced_layers(num_layers, speedup)
        return
    kept = balanced_layers(num_layers, speedup)
    assert len(kept) == count and kept[0] == 0 and kept[-1] == num_layers - 1
    gaps = {b - a for a, b in itertools.pairwise(kept)}
    step = (num_layers - 1) / (count - 1)
    assert gaps <= {math.floor(step), math.ceil(step)}  # evenly spread: gaps differ by at most one


@pytest.mark.parametrize(
    ("num_layers", "speedup"),
    [(4, 0.5), (4, 0.0), (4, -2.0), (4, math.nan), (4, math.inf), (4, 3.0), (1, 1.0), (0, 1.0), (4.0, 2.0), (4, "2")],
)
def test_balanced_layers_bad_input(num_layers, speedup):
    with pytest.raises(DecodekitError):
        balanced_layers(num_layers, speedup)


def test_early_exit_layers():
    assert early_exit_layers(4, 1) == [0]
    assert early_exit_layers(4, 2) == [0, 1]
    assert early_exit_layers(4, 4) == [0, 1, 2, 3]
    for bad in [0, 5, -1, 2.0, True]:
        with pytest.raises(DecodekitError):
            early_exit_layers(4, bad)


def test_early_exit_view_runs():
    full = full_backend("qwen2")
    view = LayerSkipBackend(full, early_exit_layers(NUM_LAYERS, 1))
    assert_all_equal(run(view), run(reference_backend(full, [0])))
