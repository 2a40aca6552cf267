"""Saving an edited recipe over the file it came from, the way its author wrote it.

A person's recipe file has comments, a hand-wrapped description, explicit defaults kept on
purpose and an order of its own. Re-serialising the validated recipe (what
:func:`fgbench.tui.form.recipe_toml` does for a *new* file) would throw all of that away, so an
existing file is edited in place with tomlkit, a style-preserving TOML library: only the values
that differ between what the file loads to and the recipe being saved are set, added or removed.

How: load the file as a tomlkit document, validate it, compare its full (defaults filled in) dump
with the target recipe's, and change only the differing leaves, where the file has them (a value
set in place keeps its line and comment) or, for a value the file did not spell out, as a new key
in the right table. A new section (an optional table switched on) is first added empty and filled
on the next round, so it only ever holds what differs from its defaults; a union's tag (``optim.name``)
is one such leaf and the variant's own fields follow in the next round. Rounds repeat until the
document loads to exactly the target (a few rounds at most); if it never does, the minimal form of
the recipe is written instead, so what is saved always loads back as the recipe shown.

Pure zone: tomlkit and the recipe schema, no textual.
"""

from __future__ import annotations

from typing import Any

from fgbench.recipe import Recipe, RecipeError, validate_recipe

_MISSING: Any = object()
MAX_ROUNDS = 8


def _dump(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json", exclude_none=True)


def _new_table(parent: Any) -> Any:
    import tomlkit
    from tomlkit.items import InlineTable

    return tomlkit.inline_table() if isinstance(parent, InlineTable) else tomlkit.table()


def _sync(node: Any, cur: dict[str, Any], target: dict[str, Any], *, add: bool, new_keys: bool = False) -> bool:
    """Make ``node`` (a tomlkit table) hold ``target`` where it differs from ``cur`` (what the
    table loads to). ``add``: also write keys the file does not have (``cur`` then has every
    default). ``new_keys``: also keys that ``cur`` does not have at all; without it they wait for
    the next round, because after a variant switch (``name = "adam"``) the new variant's defaults
    are what ``cur`` has then. Returns whether anything was changed."""
    changed = False
    keys = list(cur) + ([k for k in target if k not in cur] if new_keys else [])
    for key in keys:
        c, t = cur.get(key, _MISSING), target.get(key, _MISSING)
        if c == t:
            continue
        present = key in node
        if t is _MISSING:
            if present:
                del node[key]
                changed = True
            continue
        if isinstance(t, dict):
            if present and isinstance(c, dict) and hasattr(node[key], "keys"):
                changed |= _sync(node[key], c, t, add=add, new_keys=new_keys)
            elif not present and add:
                node[key] = _new_table(node)
                if isinstance(c, dict):  # a section the file leaves at its defaults: only the changes
                    _sync(node[key], c, t, add=add, new_keys=new_keys)
                changed = True  # a section that was unset: filled in on the next round
            elif present:
                node[key] = t
                changed = True
            continue
        if (present and isinstance(t, list) and isinstance(c, list) and len(t) == len(c) and t
                and all(isinstance(x, dict) for x in t + c)):
            items = node[key]
            if len(items) == len(t) and all(hasattr(item, "keys") for item in items):
                for item, ci, ti in zip(items, c, t):
                    changed |= _sync(item, ci, ti, add=add, new_keys=new_keys)
                continue
        if present or add:
            node[key] = t
            changed = True
    return changed


def preserving_toml(text: str, recipe: Recipe, source: str = "<recipe>") -> str:
    """``text`` (a recipe file) edited so that it loads to ``recipe``, changing only what differs.
    Returns ``text`` itself when it already loads to ``recipe``."""
    import tomlkit

    from fgbench.tui.form import recipe_toml

    target = _dump(recipe)
    try:
        doc = tomlkit.parse(text)
    except Exception:  # not TOML at all: nothing to preserve  # noqa: BLE001
        return recipe_toml(recipe)
    for _ in range(MAX_ROUNDS):
        raw = doc.unwrap()
        try:
            current: dict[str, Any] | None = _dump(validate_recipe(raw, source))
        except RecipeError:
            current = None
        if current is not None:
            if current == target:
                return tomlkit.dumps(doc)
            if not (_sync(doc, current, target, add=True) or _sync(doc, current, target, add=True, new_keys=True)):
                break
        # An invalid file (opened to be fixed): first correct or drop what it says, then the
        # next round sees a valid document and adds what is still missing.
        elif not _sync(doc, raw, target, add=False, new_keys=False):
            break
    return recipe_toml(recipe)
