"""`fgbench recipe validate|show|new`: pure zone (no torch, no textual)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from fgbench import paths
from fgbench.errors import UserError
from fgbench.textsafe import safe
from fgbench.textsafe import safe_lines


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipe", help="validate, show and create recipes")
    rs = p.add_subparsers(dest="recipe_command", metavar="ACTION")

    v = rs.add_parser("validate", help="check recipes; exit 0 if all are valid, 2 otherwise")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    v.set_defaults(handler=cmd_validate)

    s = rs.add_parser("show", help="print the resolved recipe, every default spelled out")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    s.set_defaults(handler=cmd_show)

    n = rs.add_parser("new", help="write a new recipe (defaults, or a copy of another)")
    n.add_argument("name", metavar="NAME", help="recipe name, or a path ending in .toml")
    n.add_argument("--from", dest="source", metavar="RECIPE", help="start from this recipe")
    n.add_argument("--dir", metavar="DIR", help="where to write it (default: the user recipe directory)")
    n.add_argument("--force", action="store_true", help="overwrite an existing file")
    n.set_defaults(handler=cmd_new)


def cmd_validate(args: argparse.Namespace) -> int:
    """Each file as ``fgbench run`` reads it and, when it has a ``[sweep]`` table, every point of
    the sweep as ``fgbench sweep`` expands and validates it (the same code)."""
    from fgbench.recipe import RecipeError, parse_override, read_recipe_data, validate_recipe

    try:
        overrides = [parse_override(o) for o in args.overrides]
    except RecipeError as err:
        print(safe_lines(str(err)), file=sys.stderr)
        return 2
    failed = 0
    for f in args.files:
        try:
            data = read_recipe_data(f, overrides)
            recipe = validate_recipe(data, str(f), overrides)
            if recipe.sweep is not None:
                from fgbench.sweeps.plan import expand

                expand(data, str(f))
        except UserError as err:
            failed += 1
            print(safe_lines(str(err)), file=sys.stderr)
        else:
            print(f"{safe(str(f))}: ok")
    return 2 if failed else 0


def cmd_show(args: argparse.Namespace) -> int:
    from fgbench.recipe import dumps_recipe, load_recipe

    recipe = load_recipe(args.file, args.overrides)
    # TOML escapes control characters but not a bidi override; as "\u202e" it is the same value
    # in a basic string (dumps_recipe writes no literal strings and no comments)
    sys.stdout.write(safe_lines(dumps_recipe(recipe, full=True)))
    return 0


_NAME = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$")


def cmd_new(args: argparse.Namespace) -> int:
    from fgbench.recipe import Recipe, load_recipe, save_recipe

    name: str = args.name
    if name.endswith(".toml"):
        target = Path(name)
        stem = target.stem
    else:
        if not _NAME.match(name):
            raise UserError(f"{name!r}: not a recipe name (letters, digits and _.+-, not starting with a "
                            "dot; give a path ending in .toml to write somewhere else)")
        stem = name
        target = Path(args.dir) if args.dir else paths.user_recipes_dir()
        if target.exists() and not target.is_dir():
            raise UserError(f"{safe(str(target))}: --dir is not a directory")
        target = target / f"{name}.toml"
    shown = safe(str(target))
    if target.is_dir():
        raise UserError(f"{shown}: is a directory")
    if (target.exists() or target.is_symlink()) and not args.force:
        raise UserError(f"{shown}: already exists (use --force to overwrite)")
    if target.exists() and not target.is_file():
        raise UserError(f"{shown}: exists and is not a regular file")
    recipe_name = _safe_name(stem)
    if args.source:
        base = load_recipe(args.source)
        recipe = base.model_copy(update={"name": recipe_name})
    else:
        recipe = Recipe(name=recipe_name)
    try:
        save_recipe(recipe, target, full=args.source is None)
    except OSError as err:
        raise UserError(f"{shown}: cannot write the recipe: {err.strerror or err}") from None
    print(shown)
    return 0


def _safe_name(stem: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.+-]+", "-", stem).strip("-")[:120].strip("-")
    if not cleaned:
        raise UserError(f"{stem!r}: not a usable recipe name")
    return cleaned
