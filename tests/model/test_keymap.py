"""Key maps rename by the longest matching source prefix, whatever the prefix looks like."""

from __future__ import annotations

import random

from vdnodes.model.keymap import PrefixIndex, remap, rename_key


def longest_prefix(key: str, keymap: dict[str, str]) -> str | None:
    """The definition, by brute force."""
    hits = [src for src in keymap if key.startswith(src)]
    if not hits:
        return None
    src = max(hits, key=len)
    return keymap[src] + key[len(src):]


def test_the_longest_prefix_wins_dotted_or_not():
    keymap = {"": "all.", "a.": "A.", "a.b.": "AB.", "a.b.c.weight": "exact", "a.bx": "odd", "q": "Q"}
    index = PrefixIndex(keymap)
    assert index.rename("a.b.c.weight") == "exact"  # a whole key beats its dotted prefixes
    assert index.rename("a.b.c.bias") == "AB.c.bias"
    assert index.rename("a.bxy.w") == "oddy.w"  # a prefix that ends inside a name
    assert index.rename("a.c") == "A.c"
    assert index.rename("qq.z") == "Qq.z"
    assert index.rename("z.y") == "all.z.y"  # "" matches everything, last
    assert PrefixIndex({"a.": "A."}).rename("b.c") is None
    assert rename_key("a.b.c.weight", keymap) == "exact"


def test_prefix_index_agrees_with_brute_force_on_random_maps():
    rng = random.Random(0)
    parts = ["a", "b", "ab", "c", "weight", "0", "10", "1"]
    for _ in range(200):
        keys = [".".join(rng.choice(parts) for _ in range(rng.randint(1, 5))) for _ in range(30)]
        keymap = {}
        for k in rng.sample(keys, 8):
            cut = rng.randint(0, len(k))  # anywhere: on a dot, inside a name, the whole key, ""
            keymap[k[:cut]] = f"m{len(keymap)}."
        index = PrefixIndex(keymap)
        for k in keys:
            assert index.rename(k) == longest_prefix(k, keymap), (k, keymap)


def test_remap_reports_unmatched_and_drops_ignored_keys():
    state = {"x.a.w": 1, "x.b.w": 2, "y.w": 3, "skip.w": 4}
    renamed, unmatched = remap(state, {"x.a.": "A.", "x.": "X."}, ignore=("skip.",))
    assert renamed == {"A.w": 1, "X.b.w": 2}
    assert unmatched == ["y.w"]
