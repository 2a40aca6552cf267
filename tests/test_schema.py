"""fgbench.schema: the one walker of pydantic schemas, on a small schema of its own (not the recipe),
so every expected value here is read off the declarations below."""

from __future__ import annotations

from typing import Annotated, Literal, Union

import pytest
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from fgbench import schema


class _M(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class Plain(_M):
    kind: Literal["plain"] = "plain"
    """Plain variant."""


class Fancy(_M):
    kind: Literal["fancy"] = "fancy"
    level: int = 3


class SamePlain(_M):
    kind: Literal["plain"] = "plain"


class Item(_M):
    pick: Union[Plain, Fancy] = Field(default_factory=Plain)


class Inner(_M):
    depth: Annotated[int, Field(ge=1, lt=10)] = 2
    """How   deep:
    in  two lines."""


def _pick(v: object) -> str:
    return v.get("kind", "plain") if isinstance(v, dict) else getattr(v, "kind", "plain")


class Top(_M):
    name: Annotated[str, Field(min_length=2, max_length=8, pattern="^[a-z]+$")] = "ab"
    needed: int
    inner: Inner = Field(default_factory=Inner)
    maybe: Inner | None = None
    items: list[Item] = []
    choice: Annotated[Union[Annotated[Plain, Tag("plain")], Annotated[Fancy, Tag("fancy")]],
                      Discriminator(_pick)] = Field(default_factory=Fancy)
    size: tuple[int, int] = (1, 2)
    opt_size: tuple[int, int] | None = None
    count: int | None = None


F = Top.model_fields


def test_strip_optional() -> None:
    assert schema.strip_optional(F["count"].annotation) == (int, True)
    assert schema.strip_optional(F["needed"].annotation) == (int, False)
    assert schema.strip_optional(Union[int, str, None]) == (Union[int, str], True)


def test_sections_and_lists_of_sections() -> None:
    assert schema.model_of(F["inner"].annotation) is Inner
    assert schema.model_of(F["maybe"].annotation) is Inner
    assert schema.model_of(F["needed"].annotation) is None
    assert schema.list_model_of(F["items"].annotation) is Item
    assert schema.list_model_of(F["size"].annotation) is None
    assert schema.list_model_of(list[int]) is None


def test_unions_are_found_from_the_models() -> None:
    members = schema.union_members(F["choice"].annotation)
    assert members == [Plain, Fancy]
    assert schema.union_tag(members) == "kind"
    assert schema.variants(members, "kind") == {"plain": Plain, "fancy": Fancy}
    assert schema.union_members(Union[int, str]) is None
    assert schema.union_members(F["maybe"].annotation) is None  # Inner | None: strip None first
    with pytest.raises(ValueError):
        schema.union_tag([Inner, Item])
    with pytest.raises(ValueError):  # a tag must tell the variants apart
        schema.union_tag([Plain, SamePlain])


def test_walk_unions_looks_into_lists_and_variants() -> None:
    found = [(path, tag, list(v)) for path, tag, v in schema.walk_unions(Top)]
    assert found == [("items[].pick", "kind", ["plain", "fancy"]), ("choice", "kind", ["plain", "fancy"])]


def test_field_facts() -> None:
    assert schema.description(Inner.model_fields["depth"]) == "How deep: in two lines."
    assert schema.description(F["needed"]) == ""
    assert schema.bounds(Inner.model_fields["depth"]) == [("ge", 1), ("lt", 10)]
    assert schema.bounds(F["name"]) == [("min_length", 2), ("max_length", 8), ("pattern", "^[a-z]+$")]
    assert schema.default_of(F["needed"]) is schema.REQUIRED
    assert schema.default_of(F["name"]) == "ab"
    assert schema.default_of(F["inner"]) == Inner(depth=2)
    assert schema.default_of(F["count"]) is None
    assert schema.tuple_fields(Top) == frozenset({"size", "opt_size"})


def test_parse_path() -> None:
    assert schema.parse_path("stages[0].epochs") == ("stages", 0, "epochs")
    assert schema.parse_path("a.b[12][3]") == ("a", "b", 12, 3)
    assert schema.parse_path("") == ()
