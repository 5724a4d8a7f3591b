"""Tree helpers (table-driven) and tree forwards checked against plain chain forwards."""

import pytest
import torch
from tiny import ARCHITECTURES, tiny_backend

from decodekit.models.hf import HFCache as KVCache
from decodekit.tree import ancestor_mask, depths
from decodekit.types import Draft


@pytest.mark.parametrize(
    "parents, expected",
    [([], []), ([-1], [1]), ([-1, 0, 1], [1, 2, 3]), ([-1, 0, 0, -1, 3], [1, 2, 2, 1, 2])],
)
def test_depths(parents, expected):
    assert depths(parents) == expected


def test_ancestor_mask():
    assert ancestor_mask([-1, 0, 0, -1]).int().tolist() == [
        [1, 0, 0, 0],
        [1, 1, 0, 0],
        [1, 0, 1, 0],
        [0, 0, 0, 1],
    ]


@pytest.mark.parametrize("bad", [[0], [-1, 1], [-1, 2, 0]])
def test_parents_must_come_first(bad):
    with pytest.raises(ValueError):
        depths(bad)
    with pytest.raises(ValueError):
        ancestor_mask(bad)


TREE = Draft(tokens=[5, 6, 7, 8, 9, 10], parents=[-1, 0, 0, 2, -1, 4])
#   root ─┬─ 5 ─┬─ 6
#         │     └─ 7 ── 8
#         └─ 9 ── 10
PATHS = [[0, 1], [0, 2, 3], [4, 5]]


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("context", [10, 40])  # 40 crosses gemma3's 24-token sliding window
def test_tree_forward_matches_each_path_as_a_chain(arch, context):
    backend = tiny_backend(arch)
    prefix = [(i * 37) % 250 for i in range(context)]
    tree_cache = KVCache()
    tree_logits = backend.forward(prefix, TREE, tree_cache)
    for path in PATHS:
        chain_cache = KVCache()
        chain = Draft(tokens=[TREE.tokens[i] for i in path])
        chain_logits = backend.forward(prefix, chain, chain_cache)
        rows = [0] + [i + 1 for i in path]
        torch.testing.assert_close(tree_logits[rows], chain_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_compaction_keeps_exactly_the_accepted_path(arch):
    """After keep(path), the cache equals one built by feeding that path as a chain."""
    backend = tiny_backend(arch)
    prefix = [(i * 11) % 250 for i in range(30)]
    path = PATHS[1]
    tree_cache = KVCache()
    backend.forward(prefix, TREE, tree_cache)
    tree_cache.keep(len(prefix), path)
    chain_cache = KVCache()
    backend.forward(prefix, Draft(tokens=[TREE.tokens[i] for i in path]), chain_cache)
    assert len(tree_cache) == len(chain_cache) == len(prefix) + len(path)
    for a, b in zip(tree_cache.hf_cache.layers, chain_cache.hf_cache.layers):
        torch.testing.assert_close(a.keys, b.keys, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.values, b.values, atol=1e-5, rtol=1e-5)
    # and decoding on from both caches gives the same next logits
    nxt = Draft()
    torch.testing.assert_close(backend.forward([3], nxt, tree_cache), backend.forward([3], nxt, chain_cache),
                               atol=1e-4, rtol=1e-4)


def test_crop_and_keep_validate():
    cache = KVCache()
    backend = tiny_backend("llama")
    backend.forward([1, 2, 3, 4], Draft(), cache)
    with pytest.raises(ValueError):
        cache.crop(10)
    cache.keep(2, [0])
    assert len(cache) == 3
