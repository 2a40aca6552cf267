"""Reading a pydantic schema: the one set of helpers that walk field annotations and metadata.

The recipe's schema itself is declared in :mod:`fgbench.recipe`. Three parts of fgbench read it
field by field: the recipe module (which sections are unions, which fields are tuples, where an error
is), the generated reference (:mod:`fgbench.docs`) and the TUI's form (:mod:`fgbench.tui.form`).
They all ask these functions what a field is, so they cannot disagree about it:

* :func:`strip_optional` -- ``X | None`` is ``X``, optional (TOML has no null: ``None`` is "unset").
* :func:`model_of`, :func:`list_model_of` -- a nested section (``[data]``) or a list of them
  (``[[stages]]``).
* :func:`union_members`, :func:`union_tag`, :func:`variants` -- a discriminated union ("pick one
  with ``name``"), recognised from the models alone: the variants share one single-value
  ``Literal`` field whose values are distinct.
* :func:`walk_unions` -- every union section under a model, by dotted path.
* :func:`description`, :func:`bounds`, :func:`default_of` -- a field's docstring on one line, its
  bounds as ``(name, value)`` pairs, and its default (or :data:`REQUIRED`). How each is *shown* is
  the caller's business (the docs write ``>= 0``, the form ``≥0``).
* :func:`parse_path` -- ``stages[0].epochs`` as ``("stages", 0, "epochs")``.

Nothing here names a recipe field. Pure zone: the standard library and pydantic only.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = [
    "REQUIRED", "bounds", "default_of", "description", "is_model", "list_model_of", "model_of",
    "parse_path", "strip_optional", "tuple_fields", "union_members", "union_tag", "variants",
    "walk_unions",
]

NONE_TYPE = type(None)


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""What :func:`default_of` returns for a field without a default."""


# ------------------------------------------------------------------------------- annotations


def is_union(ann: Any) -> bool:
    """``Union[...]`` or ``X | Y`` (an ``Annotated`` union is not: pydantic moves the metadata of
    a field's annotation to ``FieldInfo.metadata``, so ``FieldInfo.annotation`` is the bare union)."""
    return typing.get_origin(ann) in (Union, types.UnionType)


def strip_optional(ann: Any) -> tuple[Any, bool]:
    """(the annotation without ``None``, whether ``None`` was allowed)."""
    if is_union(ann):
        args = [a for a in typing.get_args(ann) if a is not NONE_TYPE]
        optional = len(args) != len(typing.get_args(ann))
        if len(args) == 1:
            return args[0], optional
        return Union[tuple(args)], optional  # type: ignore[return-value]
    return ann, False


def is_model(tp: Any) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def model_of(ann: Any) -> type[BaseModel] | None:
    """The section model of a field annotated ``Model`` or ``Model | None``, else None."""
    ann, _ = strip_optional(ann)
    return ann if is_model(ann) else None


def list_model_of(ann: Any) -> type[BaseModel] | None:
    """The item model of a field annotated ``list[Model]`` (optionally ``| None``), else None."""
    ann, _ = strip_optional(ann)
    if typing.get_origin(ann) is list:
        args = typing.get_args(ann)
        if args and is_model(args[0]):
            return args[0]
    return None


def tuple_fields(cls: type[BaseModel]) -> frozenset[str]:
    """The fields of ``cls`` that hold a tuple (``crop_scale: tuple[float, float]``), optional or in
    a union: TOML gives them as arrays."""
    out = set()
    for name, info in cls.model_fields.items():
        ann = info.annotation
        args = [a for a in typing.get_args(ann) if a is not NONE_TYPE] if is_union(ann) else [ann]
        if any(typing.get_origin(a) is tuple for a in args):
            out.add(name)
    return frozenset(out)


# ------------------------------------------------------------------------------------- unions


def union_members(annotation: Any) -> list[type[BaseModel]] | None:
    """The variant classes of a union of sub-models (as on ``FieldInfo.annotation``), else None.
    ``None`` in the union is not stripped here: strip it first (:func:`strip_optional`) where an
    optional union is meant."""
    if not is_union(annotation):
        return None
    members = []
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is Annotated:
            arg = typing.get_args(arg)[0]
        if not is_model(arg):
            return None
        members.append(arg)
    return members if len(members) > 1 else None


def union_tag(members: list[type[BaseModel]]) -> str:
    """The tag field of a union's variants: the one field every variant declares as a single,
    distinct ``Literal`` (``name`` for optim and schedule, ``source`` for model.pretrained).
    Raises ValueError when there is none."""
    for name in members[0].model_fields:
        values = []
        for m in members:
            f = m.model_fields.get(name)
            if f is None or typing.get_origin(f.annotation) is not Literal or len(typing.get_args(f.annotation)) != 1:
                break
            values.append(typing.get_args(f.annotation)[0])
        else:
            if len(set(values)) == len(values):
                return name
    raise ValueError(f"no tag field shared by {members}")


def variants(members: list[type[BaseModel]], tag: str) -> dict[str, type[BaseModel]]:
    """``{tag value: variant class}`` in declaration order (``{"sgd": SGDConfig, ...}``)."""
    return {m.model_fields[tag].default: m for m in members}


def walk_unions(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, dict[str, type[BaseModel]]]]:
    """``(dotted path, tag field, variants)`` of every discriminated-union section under ``model``,
    in schema order, looking inside sections, list items (``stages[].x``) and union variants."""
    for name, info in model.model_fields.items():
        path = prefix + name
        ann, _ = strip_optional(info.annotation)
        members = union_members(ann)
        item = list_model_of(ann)
        if members:
            tag = union_tag(members)
            yield path, tag, variants(members, tag)
            for m in members:
                yield from walk_unions(m, path + ".")
        elif is_model(ann):
            yield from walk_unions(ann, path + ".")
        elif item is not None:
            yield from walk_unions(item, path + "[].")


# ------------------------------------------------------------------------------- field facts


def description(info: FieldInfo) -> str:
    """The field's docstring (pydantic's ``description``) on one line, "" without one."""
    return " ".join((info.description or "").split())


_BOUND_NAMES = ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern")


def bounds(info: FieldInfo) -> list[tuple[str, Any]]:
    """The field's constraints as ``(name, value)`` pairs, in the order declared: ``("ge", 0)``,
    ``("max_length", 64)``, ``("pattern", "^[a-z]+$")``. pydantic keeps them as annotated-types
    objects (Ge, Gt, Le, Lt, MinLen, MaxLen) and the pattern in its own metadata; they are read by
    attribute, so every kind of metadata object that carries one is seen."""
    out: list[tuple[str, Any]] = []
    for m in info.metadata:
        for name in _BOUND_NAMES:
            value = getattr(m, name, None)
            if value is not None:
                out.append((name, value))
    return out


def default_of(info: FieldInfo) -> Any:
    """The field's default (a factory is called), or :data:`REQUIRED` when it has none."""
    if info.is_required():
        return REQUIRED
    return info.get_default(call_default_factory=True)


# ------------------------------------------------------------------------------------ paths


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(text: str) -> tuple[str | int, ...]:
    """A field path as validation errors spell it, as parts: ``stages[0].epochs`` ->
    ``("stages", 0, "epochs")``."""
    return tuple(int(m.group(2)) if m.group(2) is not None else m.group(1) for m in _PART.finditer(text))
