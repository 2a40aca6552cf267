"""Saving over an existing recipe file keeps it as its author wrote it (fgbench.tui.recipe_save)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from fgbench.recipe import load_recipe, validate_recipe
from fgbench.tomlread import tomllib
from fgbench.tui.recipe_save import preserving_toml

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "recipes").glob("*.toml"))


def _changed_lines(before: str, after: str) -> list[str]:
    return [ln for ln in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if not ln.startswith(("---", "+++", "@@"))]


def _edited(recipe, section: str, key: str, value):
    data = recipe.model_dump(mode="json", exclude_none=True)
    data[section][key] = value
    return validate_recipe(data)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_editing_one_field_of_a_shipped_recipe_changes_that_one_line(path: Path):
    text = path.read_text(encoding="utf-8")
    recipe = load_recipe(path)
    assert preserving_toml(text, recipe) == text, "saving with no change must leave the file byte for byte"
    edited = _edited(recipe, "data", "batch_size", recipe.data.batch_size + 1)
    out = preserving_toml(text, edited)
    diff = _changed_lines(text, out)
    new_line = f"batch_size = {recipe.data.batch_size + 1}"
    if f"\nbatch_size = {recipe.data.batch_size}\n" in text.split("[model]")[0]:
        assert diff == [f"-batch_size = {recipe.data.batch_size}", f"+{new_line}"], diff
    else:  # the file leaves it at the default: one line added to [data]
        assert diff == [f"+{new_line}"], diff
    assert validate_recipe(tomllib.loads(out)) == edited


COMMENTED = '''\
# my recipe: keep this comment
name = "mine"
description = """\\
wrapped by hand \\
over two lines."""

[data]
dataset = "synthetic"   # offline
batch_size = 128        # the default, written on purpose

[optim]
name = "sgd"
lr = 0.05
momentum = 0.9
nesterov = true
'''


def test_comments_layout_and_explicit_defaults_survive_an_edit():
    recipe = load_recipe_text(COMMENTED)
    out = preserving_toml(COMMENTED, _edited(recipe, "optim", "lr", 0.2))
    assert _changed_lines(COMMENTED, out) == ["-lr = 0.05", "+lr = 0.2"]


def test_a_variant_switch_drops_only_the_fields_the_new_variant_lacks():
    recipe = load_recipe_text(COMMENTED)
    data = recipe.model_dump(mode="json", exclude_none=True)
    data["optim"] = {"name": "adam", "lr": 0.05}
    adam = validate_recipe(data)
    out = preserving_toml(COMMENTED, adam)
    assert _changed_lines(COMMENTED, out) == ['-name = "sgd"', '+name = "adam"', "-momentum = 0.9", "-nesterov = true"]
    assert "# my recipe: keep this comment" in out and "# offline" in out
    assert validate_recipe(tomllib.loads(out)) == adam


def test_an_optional_section_switched_on_holds_only_what_differs():
    recipe = load_recipe_text(COMMENTED)
    data = recipe.model_dump(mode="json", exclude_none=True)
    data["ema"] = {**data["ema"], "enabled": True}
    target = validate_recipe(data)
    out = preserving_toml(COMMENTED, target)
    assert _changed_lines(COMMENTED, out) == ["+", "+[ema]", "+enabled = true"]
    assert validate_recipe(tomllib.loads(out)) == target


def test_an_invalid_file_fixed_in_the_editor_keeps_its_comments():
    text = '# fix me\nname = "bad"\n[data]\nbatch_size = 0  # oops\n'
    target = validate_recipe({"name": "bad", "data": {"batch_size": 16}})
    out = preserving_toml(text, target)
    assert out.startswith("# fix me\n")
    assert validate_recipe(tomllib.loads(out)) == target


def load_recipe_text(text: str):
    return validate_recipe(tomllib.loads(text))
