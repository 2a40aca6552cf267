"""The schema -> form layer (fgbench.tui.form), without a terminal."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from fgbench import paths
from fgbench.recipe import Recipe, load_recipe, validate_recipe
from fgbench.tomlread import tomllib
from fgbench.tui import form as F


def test_every_schema_field_gets_a_control_kind():
    doc = F.doc_from_recipe(Recipe())
    seen = {F.path_str(p): s for p, s in F.walk(doc)}
    assert seen["optim"].kind == "union" and set(seen["optim"].variants) >= {"sgd", "adam", "adamw", "radam"}
    assert seen["schedule"].kind == "union"
    assert seen["model.pretrained"].kind == "union" and seen["model.pretrained"].tag == "source"
    assert seen["data.dataset"].kind == "choice" and "cub200" in seen["data.dataset"].choices
    assert seen["data.drop_last"].kind == "bool"
    assert seen["data.batch_size"].kind == "int" and seen["data.batch_size"].bounds == "≥1 ≤65536"
    assert seen["optim.lr"].kind == "float" and seen["optim.lr"].bounds == ">0 ≤10"
    assert seen["data.crop_scale"].kind == "sequence"
    assert seen["stages"].kind == "models"
    assert seen["data.root"].optional
    # help text is the field's docstring
    assert seen["data.val_fraction"].help.startswith("Fraction of the training set held out")
    # every field pydantic declares is reached by the walk (the form holds no list of names)
    expected = set()

    def collect(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            expected.add(prefix + name)
            spec = F.spec_for(name, info)
            if spec.kind == "section" and not spec.optional:
                collect(spec.model, prefix + name + ".")
            elif spec.kind == "union":
                for sub in F.variant_specs(spec, F.current_variant(spec, None)):
                    expected.add(f"{prefix}{name}.{sub.key}")

    collect(Recipe, "")
    assert expected <= set(seen)


def test_a_new_field_appears_without_tui_changes():
    class Extra(BaseModel):
        mode: Literal["a", "b"] = "a"
        """Which mode."""
        size: int = Field(3, ge=1, le=9)
        """How big."""
        tags: list[str] = Field(default_factory=list)
        scale: tuple[float, float] = (0.1, 1.0)
        custom: dict[str, int] | None = None

    Extra.model_rebuild()
    specs = {s.key: s for s in F.model_specs(Extra)}
    assert specs["mode"].kind == "choice" and specs["mode"].choices == ("a", "b")
    assert specs["size"].kind == "int" and specs["size"].bounds == "≥1 ≤9"
    assert specs["tags"].kind == "sequence" and specs["scale"].kind == "sequence"
    assert specs["custom"].kind == "value" and specs["custom"].optional


@pytest.mark.parametrize("kind,text,value", [
    ("float", "0.05", 0.05),
    ("float", "1e-3", 0.001),
    ("int", "64", 64),
    ("float", "abc", "abc"),  # left to pydantic, which names the problem
    ("sequence", "0.08, 1.0", [0.08, 1.0]),
    ("sequence", "[224, 448]", [224, 448]),
    ("sequence", "a, b", ["a", "b"]),
    ("value", '{ "optim.lr" = [0.1, 0.01] }', {"optim.lr": [0.1, 0.01]}),
])
def test_text_to_value(kind, text, value):
    spec = F.FieldSpec(key="x", kind=kind, default=1)
    assert F.parse_text(spec, text) == value


def test_empty_text_unsets_and_values_display_back():
    spec = F.FieldSpec(key="x", kind="int", optional=True)
    assert F.parse_text(spec, "") is F.MISSING
    for kind, value in (("float", 0.0005), ("sequence", [0.08, 1.0]), ("value", {"a": [1, 2]}), ("int", 7)):
        s = F.FieldSpec(key="x", kind=kind)
        assert F.parse_text(s, F.display_value(s, value)) == value


def test_error_lines_map_to_the_deepest_field():
    doc = F.doc_from_recipe(Recipe())
    doc["optim"]["lr"] = -1
    doc["data"]["crop_scale"] = ["x", 1.0]
    doc["eval"]["select_on"] = "val"
    doc["data"]["val_fraction"] = 0
    result = F.validate(doc, "r.toml")
    assert not result.ok
    known = {F.path_str(p) for p, _ in F.walk(doc)}
    owners = {F.owner_path(e.path, known): e.message for e in result.errors}
    assert "greater than 0" in owners["optim.lr"]
    assert "data.crop_scale" in owners  # crop_scale[0] belongs to the crop_scale field
    assert all(e.line.startswith("r.toml: ") for e in result.errors)


def test_switching_a_variant_keeps_changed_shared_fields():
    spec = next(s for s in F.model_specs(Recipe) if s.key == "optim")
    new = F.switch_variant(spec, {"name": "sgd", "lr": 0.02, "weight_decay": 0.0005, "momentum": 0.9}, "adamw")
    assert new == {"name": "adamw", "lr": 0.02}  # tuned lr kept, defaults and sgd-only fields dropped
    assert validate_recipe({"optim": new}).optim.name == "adamw"


def test_saved_text_round_trips_for_every_project_recipe():
    recipes_dir = paths.project_recipes_dir()
    files = sorted(recipes_dir.glob("*.toml")) if recipes_dir else []
    if not files:
        pytest.skip("no project recipes in this checkout")
    for path in files:
        recipe = load_recipe(path)
        text = F.recipe_toml(recipe)
        again = validate_recipe(tomllib.loads(text), str(path))
        assert again == recipe, path.name
        # and through the document the form edits
        assert validate_recipe(F.doc_from_recipe(recipe)) == recipe


def test_minimal_text_keeps_union_tags():
    recipe = validate_recipe({"optim": {"name": "adamw", "lr": 0.01}, "schedule": {"name": "multistep", "epochs": 100},
                              "model": {"pretrained": {"source": "torchvision"}}})
    data = tomllib.loads(F.recipe_toml(recipe))
    assert data["optim"]["name"] == "adamw"
    assert data["schedule"]["name"] == "multistep"
    assert data["model"]["pretrained"]["source"] == "torchvision"
    assert validate_recipe(data) == recipe
