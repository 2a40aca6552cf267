"""The README's recipe reference, generated from the schema in ``fgbench.recipe``.

Decisions:

* The schema is the single source: every section, key, type, default, bound and description in the
  reference comes from the pydantic models (the descriptions are the attribute docstrings). A test
  (``tests/test_docs.py``) fails when README.md's block differs from what this module generates, so
  the README cannot drift from the code; ``python -m fgbench.docs --write README.md`` fixes it.
* The block sits between two HTML comments, ``<!-- recipe-reference:start -->`` and
  ``<!-- recipe-reference:end -->``, so the rest of the README stays hand-written. ``--write``
  replaces only that block, atomically (temporary file + rename); without the markers it appends
  the block at the end and says so, rather than guessing where it belongs.
* A discriminated union (optimizer, schedule, pretrained source) is shown as "pick one with
  `name`": the keys every variant shares are listed once, then each variant with its own keys.
  That is how a user reads it (choose, then fill in), and it keeps the tables short.
* Values are shown as TOML literals (``"cosine"``, ``true``, ``[0.08, 1.0]``) since that is what
  the user types; ``None`` defaults are shown as *unset* because TOML has no null.
* Output is deterministic (declaration order, no timestamps) so the comparison is exact.
* Pure zone: stdlib and pydantic only.
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from fgbench import schema
from fgbench.formats import toml_value
from fgbench.recipe import Recipe, atomic_write_text

START_MARKER = "<!-- recipe-reference:start -->"
END_MARKER = "<!-- recipe-reference:end -->"



# ------------------------------------------------------------------------------ rendering bits


def _cell(text: str) -> str:
    """One markdown table cell: a single line, pipes escaped (GFM allows ``\\|`` even in code)."""
    return " ".join(text.split()).replace("|", "\\|")


def type_name(ann: Any) -> str:
    """A short, TOML-flavoured description of a field's type."""
    ann, _ = schema.strip_optional(ann)
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:  # a constrained member of a union (its bounds are in the description)
        return type_name(args[0])
    if schema.is_union(ann) and not any(schema.is_model(a) for a in args):
        return " or ".join(type_name(a) for a in args)
    if origin is Literal:
        text = "one of " + ", ".join(f"`{toml_value(a)}`" for a in args)
    elif ann is bool:
        text = "bool"
    elif ann is int:
        text = "integer"
    elif ann is float:
        text = "float"
    elif ann is str:
        text = "string"
    elif origin is tuple:
        text = "[" + ", ".join(type_name(a) for a in args) + "]"
    elif origin is list:
        inner = args[0] if args else Any
        if schema.is_model(inner):
            text = "array of tables"
        else:
            text = f"[{type_name(inner)}, ...]"
    elif origin is dict:
        text = "table"
    elif schema.is_model(ann):
        text = "table"
    elif ann is Any:
        text = "any"
    else:
        text = getattr(ann, "__name__", str(ann))
    return text


def default_text(info: FieldInfo) -> str:
    value = schema.default_of(info)
    if value is schema.REQUIRED:
        return "**required**"
    if value is None:
        return "*unset*"
    if isinstance(value, BaseModel):
        return ""
    return f"`{toml_value(value)}`"


_BOUND_FORMATS = {"ge": ">= {}", "gt": "> {}", "le": "<= {}", "lt": "< {}", "min_length": "length >= {}",
                  "max_length": "length <= {}", "pattern": "matches `{}`"}


def bounds_text(info: FieldInfo) -> str:
    return ", ".join(_BOUND_FORMATS[name].format(value) for name, value in schema.bounds(info))


# ------------------------------------------------------------------------------- schema walk


def _union_members(info: FieldInfo) -> list[type[BaseModel]] | None:
    """The variants of a discriminated-union field, or None for any other field."""
    return schema.union_members(info.annotation)


def _is_leaf(info: FieldInfo) -> bool:
    ann = info.annotation
    return _union_members(info) is None and schema.model_of(ann) is None and schema.list_model_of(ann) is None


def _field_signature(info: FieldInfo) -> tuple[str, str, str, str]:
    return (type_name(info.annotation), default_text(info), bounds_text(info), schema.description(info))


_TABLE_HEAD = ["| key | type | default | bounds | description |", "| --- | --- | --- | --- | --- |"]


def _rows(prefix: str, fields: list[tuple[str, FieldInfo]]) -> list[str]:
    rows = []
    for name, info in fields:
        t, d, b, desc = _field_signature(info)
        rows.append(f"| `{prefix}{name}` | {_cell(t)} | {_cell(d)} | {_cell(b)} | {_cell(desc)} |")
    return rows


def _table(prefix: str, fields: list[tuple[str, FieldInfo]]) -> list[str]:
    if not fields:
        return []
    return [*_TABLE_HEAD, *_rows(prefix, fields), ""]


def _render_model(path: str, cls: type[BaseModel], level: int, *, array: bool = False) -> list[str]:
    """Leaf keys of ``cls`` as a table, then its nested tables and unions as subsections."""
    prefix = f"{path}." if path and not array else (f"{path}[].") if array else ""
    leaves = [(n, i) for n, i in cls.model_fields.items() if _is_leaf(i)]
    out = _table(prefix, leaves)
    for name, info in cls.model_fields.items():
        if _is_leaf(info):
            continue
        sub = f"{path}.{name}" if path else name
        out += _render_section(sub, info, level)
    return out


def _render_union(path: str, info: FieldInfo, members: list[type[BaseModel]], level: int) -> list[str]:
    tag = schema.union_tag(members)
    by_tag = schema.variants(members, tag)
    default = info.get_default(call_default_factory=True)
    default_tag = getattr(default, tag, None)
    out = [
        f"Pick one with `{tag}`: "
        + ", ".join(f"`{toml_value(value)}`" for value in by_tag)
        + (f" (default `{toml_value(default_tag)}`)." if default_tag is not None else "."),
        "",
    ]
    # Keys that every variant declares identically are listed once.
    names = [n for n in members[0].model_fields if n != tag]
    common = [
        n for n in names
        if all(n in c.model_fields for c in members)
        and len({_field_signature(c.model_fields[n]) for c in members}) == 1
    ]
    if common:
        out += [f"Keys of every `{path}` variant:", ""]
        out += _table(f"{path}.", [(n, members[0].model_fields[n]) for n in common])
    for value, cls in by_tag.items():
        out += [f"{'#' * (level + 1)} `{path}.{tag} = {toml_value(value)}`", ""]
        desc = schema.description(cls.model_fields[tag])
        if desc:
            out += [desc, ""]
        own = [(n, i) for n, i in cls.model_fields.items() if n != tag and n not in common]
        if own:
            out += _table(f"{path}.", own)
        else:
            out += ["No further keys.", ""]
    return out


def _render_section(path: str, info: FieldInfo, level: int) -> list[str]:
    members = _union_members(info)
    list_model = schema.list_model_of(info.annotation)
    header = f"[[{path}]]" if list_model is not None else f"[{path}]"
    out = [f"{'#' * level} `{header}`", ""]
    desc = schema.description(info)
    if desc:
        out += [desc, ""]
    if members is not None:
        out += _render_union(path, info, members, level)
    elif list_model is not None:
        out += [f"Each `[[{path}]]` table is one entry; keys:", ""]
        out += _render_model(path, list_model, level + 1, array=True)
    else:
        model = schema.model_of(info.annotation)
        assert model is not None
        out += _render_model(path, model, level + 1)
    return out


def recipe_reference_markdown(level: int = 3) -> str:
    """The recipe reference as markdown (without the markers), headings starting at ``level``."""
    out = [
        "<!-- Generated from fgbench/recipe.py by `python -m fgbench.docs`; do not edit by hand. -->",
        "",
        "A recipe is one TOML file. Every key is optional unless marked **required**; unknown keys "
        "are errors. `--set section.key=value` on the command line overrides any key (the value "
        "is TOML: `--set eval.final_test_sizes=[224,448]`). Defaults marked *unset* are absent "
        "from the file (TOML has no null).",
        "",
        f"{'#' * level} Top-level keys",
        "",
    ]
    leaves = [(n, i) for n, i in Recipe.model_fields.items() if _is_leaf(i)]
    out += _table("", leaves)
    for name, info in Recipe.model_fields.items():
        if not _is_leaf(info):
            out += _render_section(name, info, level)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def reference_block() -> str:
    """The generated reference wrapped in its markers, as it appears in README.md."""
    return f"{START_MARKER}\n{recipe_reference_markdown()}{END_MARKER}\n"


EVENTS_START = "<!-- events-reference:start -->"
EVENTS_END = "<!-- events-reference:end -->"


def events_reference_markdown() -> str:
    """The metrics-event table, from ``fgbench.rundir.events`` (EVENT_FIELDS and EVENT_DOCS)."""
    from fgbench.rundir.events import EVENT_DOCS, EVENT_FIELDS, SCHEMA_VERSION

    lines = [f"<!-- Generated from fgbench/rundir/events.py (schema version {SCHEMA_VERSION}) by "
             "`python -m fgbench.docs`; do not edit by hand. -->",
             "| event | written when | required fields | optional fields |", "| --- | --- | --- | --- |"]
    for kind, (required, optional) in EVENT_FIELDS.items():
        req = ", ".join(f"`{f}`" for f in required)
        opt = ", ".join(f"`{f}`" for f in optional) or "-"
        lines.append(f"| `{kind}` | {_cell(EVENT_DOCS[kind])} | {req} | {opt} |")
    return "\n".join(lines) + "\n"


def events_block() -> str:
    return f"{EVENTS_START}\n{events_reference_markdown()}{EVENTS_END}\n"


def _between(text: str, start: str, end: str) -> tuple[int, int] | None:
    a = text.find(start)
    if a < 0:
        return None
    b = text.find(end, a)
    if b < 0:
        raise MarkerError(f"{start} without a following {end}")
    b += len(end)
    if text[b:b + 1] == "\n":
        b += 1
    return a, b


def replace_events_block(text: str) -> str:
    """``text`` with its events block (if it has the markers) regenerated."""
    span = _between(text, EVENTS_START, EVENTS_END)
    if span is None:
        return text
    return text[:span[0]] + events_block() + text[span[1]:]


# ---------------------------------------------------------------------------- README block


class MarkerError(ValueError):
    pass


def extract_block(text: str) -> str | None:
    """What lies between the markers, markers included; None without both markers."""
    span = _between(text, START_MARKER, END_MARKER)
    if span is None:
        return None
    if text.count(START_MARKER) > 1:
        raise MarkerError(f"{START_MARKER} appears more than once")
    return text[span[0]:span[1]]


def replace_block(text: str, block: str | None = None) -> tuple[str, bool]:
    """``text`` with its reference block replaced by ``block`` (default: freshly generated).
    Returns (new text, whether the markers were found); without markers the block is appended."""
    block = block if block is not None else reference_block()
    old = extract_block(text)
    if old is None:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return text + sep + block, False
    return text.replace(old, block, 1), True


def is_current(text: str) -> bool:
    try:
        return extract_block(text) == reference_block() and replace_events_block(text) == text
    except MarkerError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fgbench.docs",
        description="Print the recipe reference generated from the schema, or put it into a README.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", help="replace the block between the markers in FILE")
    group.add_argument("--check", metavar="FILE", help="exit 1 if FILE's block is not the generated one")
    args = parser.parse_args(argv)

    target = args.write or args.check
    if target is None:
        sys.stdout.write(reference_block())
        return 0
    path = Path(target)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        print(f"{path}: cannot read: {err.strerror or err}", file=sys.stderr)
        return 2
    if args.check:
        if is_current(text):
            print(f"{path}: recipe reference is up to date")
            return 0
        print(f"{path}: recipe reference is stale; run `python -m fgbench.docs --write {path}`", file=sys.stderr)
        return 1
    try:
        new, found = replace_block(text)
        new = replace_events_block(new)
    except MarkerError as err:
        print(f"{path}: {err}", file=sys.stderr)
        return 2
    if new != text:
        atomic_write_text(path, new)
    if not found:
        print(f"{path}: no {START_MARKER} marker: appended the reference at the end; move it where it belongs",
              file=sys.stderr)
    else:
        print(f"{path}: recipe reference {'updated' if new != text else 'already up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
