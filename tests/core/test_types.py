"""Socket types: parsing, compatibility, explanations, value checks, declarations."""

from __future__ import annotations

import pytest

from vdnodes.core.node import In, Out, Param, node
from vdnodes.core.registry import Registry, RegistryError
from vdnodes.core.types import SocketType, TypeRegistry, explain_mismatch

T = SocketType.parse


def test_parse_and_print_round_trip():
    for text in ["Image", "Latent[image]", "Context[text]", "List[Latent[image]]"]:
        assert str(T(text)) == text
    assert T("List[Latent[image]]").args == ("Latent[image]",)
    for bad in ["Latent[", "La tent", "Latent[]", "Latent[image"]:
        with pytest.raises(ValueError):
            T(bad)


@pytest.mark.parametrize("src,dst", [
    ("Latent[image]", "Latent[image]"), ("Latent[text]", "Latent"), ("Int", "Float"),
    ("Image", "Any"), ("Seed", "Int"),
])
def test_compatible(src, dst):
    assert explain_mismatch(T(src), T(dst)) is None


def test_modality_mismatch_is_explained_in_words():
    why = explain_mismatch(T("Context[text]"), T("Context[image]"))
    assert why == "Context[text] cannot feed Context[image]: the context kinds differ (text vs image)"
    assert "types differ" in explain_mismatch(T("Image"), T("Latent[image]"))
    assert "not known before running" in explain_mismatch(T("Latent"), T("Latent[image]"))
    assert explain_mismatch(T("Float"), T("Int")) is not None  # lossy, refused


def test_unknown_types_and_modalities_suggest_close_matches():
    types = TypeRegistry.with_builtins()
    assert "did you mean 'Image'" in types.problem(T("Imagee"))
    assert "did you mean 'image'" in types.problem(T("Latent[imag]"))
    assert "takes no arguments" in types.problem(T("Image[x]"))
    types.add_modality("palette", "colour palettes")
    assert types.problem(T("Context[palette]")) is None


def test_value_checks_catch_wrong_shapes():
    import torch

    types = TypeRegistry.with_builtins()
    assert types.check_value(T("Latent[image]"), torch.zeros(1, 4, 8, 8)) is None
    assert "text latent [B,D]" in types.check_value(T("Latent[text]"), torch.zeros(1, 4, 8, 8))
    assert "[B,3,H,W]" in types.check_value(T("Image"), torch.zeros(1, 4, 8, 8))
    assert types.check_value(T("Text"), ["a", "b"]) is None
    assert "list of strings" in types.check_value(T("Text"), "a")
    assert "expected int" in types.check_value(T("Int"), True)


def test_param_rules():
    p = Param("Float", 0.5, min=0, max=1)
    assert p.problem(1.5) == "1.5 is above the maximum 1"
    assert p.problem("x").startswith("expected a number")
    assert p.parse_text("0.25") == 0.25
    e = Param("Enum", "ddim", choices=("ddim", "dpmpp_2m"))
    assert "not one of" in e.problem("euler")
    with pytest.raises(ValueError):
        Param("Int", 5, min=10)  # invalid default
    assert Param("Bool", False).parse_text("yes") is True


def test_registration_checks_declaration_against_function():
    @node("t.bad", version="1.0", category="x", inputs={"a": In("Int")}, outputs={"o": Out("Imagee")})
    def bad(ctx, b):
        return 1

    reg = Registry()
    with pytest.raises(RegistryError) as info:
        reg.register(bad)
    msg = str(info.value)
    assert "semver" in msg and "['a']" in msg and "['b']" in msg and "did you mean 'Image'" in msg


def test_duplicate_ids_are_refused():
    @node("t.one", version="1.0.0", category="x", outputs={"o": Out("Int")})
    def one(ctx):
        return 1

    reg = Registry()
    reg.register(one)
    with pytest.raises(RegistryError, match="already registered by 'core'"):
        reg.register(one, owner="some_plugin")
