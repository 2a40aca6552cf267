"""Schema -> form: what the recipe editor shows, derived from the pydantic models alone.

Nothing here names a recipe field. The editor walks ``Recipe.model_fields`` recursively and asks
:func:`model_specs` what kind of control each field needs, so a field added to the schema shows up in
the form with its docstring as help and its bounds as a hint, with no change to the TUI.

Decisions and trade-offs:

* The form edits a plain nested ``dict`` (the document), not a model instance. Every change is
  written into the document and the *whole* document is validated with
  :func:`fgbench.recipe.validate_recipe`; cross-field rules (``select_on = "val"`` needs a
  validation split) then appear live, exactly as ``fgbench recipe validate`` reports them.
* Text typed into a number field is read as a TOML value; text that is not a number goes into the
  document as typed, and the (strict) schema rejects it with its own message ("Input should be a
  valid number") instead of a second, TUI-made wording.
* Error lines (``SOURCE: data.crop_scale[0]: msg``) are mapped back to the deepest field whose path
  is a prefix of the error's path; errors of a whole section (a model validator) land on the
  section, errors of the whole recipe on the recipe.
* Saving writes only what differs from the defaults (short, readable files), plus the tag of every
  union section that is written (``[optim] lr = 0.01`` without ``name`` would load back as the
  default variant). ``fgbench.recipe`` finds the unions from the schema and is the one TOML writer
  (``dumps_recipe``), so the editor's files and ``fgbench recipe show`` are written alike.
  :func:`recipe_toml` is tested to round-trip.
* Unions are recognised from the schema (a union of sub-models whose variants share one
  single-value ``Literal`` field, or a declared string discriminator), not from a list of names.
* Pure zone: pydantic and the standard library only (no textual), so it is unit-testable.
"""

from __future__ import annotations

import functools
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from fgbench import schema
from fgbench.formats import toml_inline
from fgbench.recipe import Recipe, RecipeError, dumps_recipe, validate_recipe
from fgbench.textsafe import safe
from fgbench.tomlread import tomllib


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Marks "no value": the key is absent from the document (TOML has no null)."""

Kind = Literal["section", "union", "models", "choice", "bool", "int", "float", "str", "sequence", "value"]
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class FieldSpec:
    """How one schema field is edited."""

    key: str
    kind: Kind
    help: str = ""
    optional: bool = False
    """``None`` is accepted: an empty input removes the key."""
    required: bool = False
    """No default: the key must be given."""
    default: Any = MISSING
    choices: tuple[Any, ...] = ()
    bounds: str = ""
    model: type[BaseModel] | None = None
    """The section's model, or the item model of a list of models."""
    variants: dict[str, type[BaseModel]] = field(default_factory=dict)
    tag: str = ""
    """The discriminator field of a union."""

    @property
    def hint(self) -> str:
        """Short text shown beside the control: the bounds, or what the text should look like."""
        base = {
            "int": "integer",
            "float": "number",
            "sequence": "a, b, ...",
            "value": "TOML value",
        }.get(self.kind, "")
        parts = [p for p in (self.bounds, base if not self.bounds else "") if p]
        if self.optional and self.kind not in ("choice", "bool", "section"):
            parts.append("empty: unset")
        return ", ".join(parts)


# ------------------------------------------------------------------------------- paths


def path_str(path: Path) -> str:
    """The path as validation errors spell it: ``stages[0].epochs``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def parse_path(text: str) -> Path:
    return schema.parse_path(text)


def get_in(doc: Any, path: Path, default: Any = MISSING) -> Any:
    node = doc
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return default
    return node


def set_in(doc: dict[str, Any], path: Path, value: Any) -> None:
    """Set (or, for MISSING, remove) the value at ``path``, creating tables on the way."""
    node: Any = doc
    for i, part in enumerate(path[:-1]):
        if isinstance(part, int):
            node = node[part]
            continue
        nxt = node.get(part)
        want_list = isinstance(path[i + 1], int)
        if not isinstance(nxt, list if want_list else dict):
            if value is MISSING or want_list:
                return
            nxt = node[part] = {}
        node = nxt
    last = path[-1]
    if value is MISSING:
        if isinstance(node, dict):
            node.pop(last, None)
    else:
        node[last] = value


# ------------------------------------------------------------------------------ schema


_BOUND_FORMATS = {"ge": "≥{}", "gt": ">{}", "le": "≤{}", "lt": "<{}", "max_length": "max {} chars"}


def _bounds(info: FieldInfo) -> str:
    out = []
    for name, value in schema.bounds(info):
        if name == "min_length" and value > 1:
            out.append(f"min {value} chars")
        elif name in _BOUND_FORMATS:
            out.append(_BOUND_FORMATS[name].format(value))
    return " ".join(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def spec_for(key: str, info: FieldInfo) -> FieldSpec:
    ann, optional = schema.strip_optional(info.annotation)
    required = info.is_required()
    default = MISSING
    if not required:
        try:
            default = _jsonable(schema.default_of(info))
        except Exception:  # a factory that needs arguments: no default to show
            default = MISSING
        if default is None:
            default = MISSING
    common = dict(key=key, help=schema.description(info), optional=optional, required=required, default=default,
                  bounds=_bounds(info))
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    members = schema.union_members(ann)
    tag = _union_tag(members) if members else None
    if members and tag:
        return FieldSpec(kind="union", variants=schema.variants(members, tag), tag=tag, **common)
    model = schema.model_of(ann)
    if model is not None:
        return FieldSpec(kind="section", model=model, **common)
    item = schema.list_model_of(ann)
    if item is not None:
        return FieldSpec(kind="models", model=item, **common)
    if origin is Literal:
        return FieldSpec(kind="choice", choices=tuple(args), **common)
    if ann is bool:
        return FieldSpec(kind="bool", **common)
    if ann is int:
        return FieldSpec(kind="int", **common)
    if ann is float:
        return FieldSpec(kind="float", **common)
    if ann is str:
        return FieldSpec(kind="str", **common)
    if origin in (tuple, list) and args and all(a in (int, float, str) or a is Ellipsis for a in args):
        return FieldSpec(kind="sequence", **common)
    return FieldSpec(kind="value", **common)


def _union_tag(members: list[type[BaseModel]]) -> str | None:
    """The field that tells the variants apart (see :func:`fgbench.schema.union_tag`), or None."""
    try:
        return schema.union_tag(members)
    except ValueError:
        return None


@functools.cache
def model_specs(model: type[BaseModel]) -> tuple[FieldSpec, ...]:
    return tuple(spec_for(name, info) for name, info in model.model_fields.items())


def variant_specs(spec: FieldSpec, tag_value: str) -> tuple[FieldSpec, ...]:
    """The fields of one union variant, without the tag itself (the picker shows it)."""
    model = spec.variants.get(tag_value)
    if model is None:
        return ()
    return tuple(s for s in model_specs(model) if s.key != spec.tag)


def variant_help(spec: FieldSpec, tag_value: str) -> str:
    model = spec.variants.get(tag_value)
    if model is None:
        return ""
    return schema.description(model.model_fields[spec.tag])


def current_variant(spec: FieldSpec, value: Any) -> str:
    if isinstance(value, dict) and value.get(spec.tag) in spec.variants:
        return str(value[spec.tag])
    if isinstance(spec.default, dict) and spec.default.get(spec.tag) in spec.variants:
        return str(spec.default[spec.tag])
    return next(iter(spec.variants))


def walk(doc: dict[str, Any], model: type[BaseModel] = Recipe, prefix: Path = ()):
    """Yield ``(path, spec)`` for every field the form shows for this document, depth first:
    union sections show their current variant's fields, lists one entry per item, and optional
    sections that are unset show no fields."""
    for spec in model_specs(model):
        path = prefix + (spec.key,)
        yield path, spec
        value = get_in(doc, path)
        if spec.kind == "section":
            if spec.optional and not isinstance(value, dict):
                continue
            yield from walk(doc, spec.model, path)  # type: ignore[arg-type]
        elif spec.kind == "union":
            tag = current_variant(spec, value)
            for sub in variant_specs(spec, tag):
                yield from _walk_one(doc, path + (sub.key,), sub)
        elif spec.kind == "models" and isinstance(value, list):
            for i in range(len(value)):
                yield path + (i,), spec
                yield from walk(doc, spec.model, path + (i,))  # type: ignore[arg-type]


def _walk_one(doc: dict[str, Any], path: Path, spec: FieldSpec):
    yield path, spec
    if spec.kind in ("section", "union", "models"):
        # a nested structure inside a union variant: walk it as a one-field model would
        value = get_in(doc, path)
        if spec.kind == "section" and (not spec.optional or isinstance(value, dict)):
            yield from walk(doc, spec.model, path)  # type: ignore[arg-type]
        elif spec.kind == "union":
            for sub in variant_specs(spec, current_variant(spec, value)):
                yield from _walk_one(doc, path + (sub.key,), sub)
        elif spec.kind == "models" and isinstance(value, list):
            for i in range(len(value)):
                yield path + (i,), spec
                yield from walk(doc, spec.model, path + (i,))  # type: ignore[arg-type]


# -------------------------------------------------------------------------- text values


def display_value(spec: FieldSpec, value: Any) -> str:
    """The text an input shows for a document value, made safe: a description read from a file
    may hold escape sequences or a bidi override (an input draws what it holds). The form compares
    an input's text with this to tell an edit, so an untouched field keeps the file's value; a
    field the user edits takes the text as shown."""
    return safe(_input_text(spec, value))


def _input_text(spec: FieldSpec, value: Any) -> str:
    if value is MISSING or value is None:
        return ""
    if spec.kind == "str":
        return str(value)
    if spec.kind in ("int", "float"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return toml_inline(value)
        return str(value)
    if spec.kind == "sequence":
        if isinstance(value, (list, tuple)):
            return ", ".join(toml_inline(v) if not isinstance(v, str) else v for v in value)
        return str(value)
    return toml_inline(value)


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return MISSING


def parse_text(spec: FieldSpec, text: str) -> Any:
    """What goes into the document for the text of an input (MISSING: remove the key)."""
    stripped = text.strip()
    if spec.kind == "str":
        if text == "" and (spec.optional or spec.required):
            return MISSING
        return text
    if stripped == "":
        return MISSING if (spec.optional or spec.required or spec.default is not MISSING) else ""
    if spec.kind in ("int", "float"):
        # pydantic converts "0.1" -> 0.1 and names the problem for "abc" in its own words
        value = _toml_value(stripped)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else stripped
    if spec.kind == "sequence":
        body = stripped if stripped.startswith("[") else f"[{stripped}]"
        value = _toml_value(body)
        if value is MISSING:
            # bare words: a list of strings
            value = _toml_value("[" + ", ".join(json.dumps(w.strip()) for w in stripped.split(",")) + "]")
        return value if value is not MISSING else stripped
    value = _toml_value(stripped)
    return value if value is not MISSING else stripped


# -------------------------------------------------------------------------------- union


def switch_variant(spec: FieldSpec, old: Any, new_tag: str) -> dict[str, Any]:
    """The document value after picking another variant: the new variant's defaults, keeping
    the values the user had changed in fields both variants share (e.g. a tuned ``lr``)."""
    new: dict[str, Any] = {spec.tag: new_tag}
    if not isinstance(old, dict):
        return new
    old_model = spec.variants.get(str(old.get(spec.tag)))
    new_model = spec.variants[new_tag]
    old_defaults: dict[str, Any] = {}
    if old_model is not None:
        for s in model_specs(old_model):
            old_defaults[s.key] = s.default
    for key, value in old.items():
        if key == spec.tag or key not in new_model.model_fields:
            continue
        if key in old_defaults and old_defaults[key] is not MISSING and _same(value, old_defaults[key]):
            continue
        new[key] = value
    return new


def _same(a: Any, b: Any) -> bool:
    try:
        return json.dumps(_jsonable(a), sort_keys=True) == json.dumps(_jsonable(b), sort_keys=True)
    except (TypeError, ValueError):
        return a == b


# ------------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class FieldError:
    path: str
    """The error's own path (``data.crop_scale[0]``), "" for the whole recipe."""
    message: str
    line: str
    """The line as ``fgbench recipe validate`` prints it."""


def parse_errors(err: RecipeError, source: str) -> list[FieldError]:
    out = []
    prefix = f"{source}: "
    for line in err.lines:
        rest = line[len(prefix):] if line.startswith(prefix) else line
        path, sep, message = rest.partition(": ")
        if not sep:
            path, message = "", rest
        if path == "(recipe)":
            path = ""
        out.append(FieldError(path, message, line))
    return out


def owner_path(error_path: str, known: set[str]) -> str:
    """The deepest known field path that is ``error_path`` or a prefix of it ("" if none)."""
    probe = error_path
    while probe:
        if probe in known:
            return probe
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return ""


@dataclass
class Validation:
    recipe: Recipe | None
    errors: list[FieldError]

    @property
    def ok(self) -> bool:
        return self.recipe is not None


def validate(doc: dict[str, Any], source: str = "<recipe>") -> Validation:
    try:
        return Validation(validate_recipe(doc, source), [])
    except RecipeError as err:
        return Validation(None, parse_errors(err, source))


# --------------------------------------------------------------------------- documents


def doc_from_recipe(recipe: Recipe) -> dict[str, Any]:
    """The document the form edits: every field, defaults included (so each input shows a value)."""
    return recipe.model_dump(mode="json", exclude_none=True)


def recipe_toml(recipe: Recipe) -> str:
    """The file the editor saves: what differs from the defaults (the recipe's one TOML writer)."""
    return dumps_recipe(recipe, full=False)


def full_toml(recipe: Recipe) -> str:
    """The resolved recipe, every default spelled out (the recipe's one TOML writer)."""
    return dumps_recipe(recipe, full=True)
