"""The README's recipe reference is generated from the schema and must match it exactly."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from fgbench import docs
from fgbench.recipe import UNION_SECTIONS, Recipe, union_variants

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
FIX = "run `python -m fgbench.docs --write README.md` and commit the result"


def test_readme_holds_exactly_the_generated_reference() -> None:
    assert README.is_file(), f"README.md is missing; {FIX}"
    text = README.read_text(encoding="utf-8")
    assert docs.START_MARKER in text and docs.END_MARKER in text, (
        f"README.md has no {docs.START_MARKER} ... {docs.END_MARKER} block; {FIX}")
    block = docs.extract_block(text)
    assert block == docs.reference_block(), f"README.md's recipe reference is stale; {FIX}"


# ------------------------------------------------------------------ the reference itself


def _leaf_paths(cls: type[BaseModel], prefix: str) -> list[str]:
    """Every key a user can write, walked independently of fgbench.docs."""
    out = []
    for name, info in cls.model_fields.items():
        path = f"{prefix}{name}"
        ann = info.annotation
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if path in UNION_SECTIONS:
            for variant in union_variants(path).values():
                out += _leaf_paths(variant, path + ".")
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _leaf_paths(ann, path + ".")
        elif typing.get_origin(ann) is list and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            out += _leaf_paths(args[0], path + "[].")  # an array of tables (stages)
        elif len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            out += _leaf_paths(args[0], path + ".")  # an optional section (sweep)
        else:
            out.append(path)
    return out


def test_every_key_of_the_schema_is_documented() -> None:
    md = docs.recipe_reference_markdown()
    paths = sorted(set(_leaf_paths(Recipe, "")))
    assert len(paths) > 100
    # a union's tag is documented by one heading per variant (`optim.name = "sgd"`), other keys by a row
    missing = [p for p in paths if f"| `{p}` |" not in md and f"`{p} = " not in md]
    assert missing == []


def test_every_key_has_a_description_where_it_is_declared() -> None:
    undocumented = []

    def walk(cls: type[BaseModel], prefix: str) -> None:
        for name, info in cls.model_fields.items():
            if not (info.description or "").strip():
                undocumented.append(f"{prefix}{name}")
    seen: set[type[BaseModel]] = set()

    def classes(cls: type[BaseModel]) -> None:
        if cls in seen:
            return
        seen.add(cls)
        for info in cls.model_fields.values():
            for a in (info.annotation, *typing.get_args(info.annotation)):
                for b in (a, *typing.get_args(a)):
                    if isinstance(b, type) and issubclass(b, BaseModel):
                        classes(b)
    classes(Recipe)
    for cls in seen:
        walk(cls, cls.__name__ + ".")
    assert undocumented == []


def _row(md: str, path: str) -> str:
    (row,) = [line for line in md.splitlines() if line.startswith(f"| `{path}` |")]
    return row


def test_rows_carry_type_default_bounds_and_description() -> None:
    md = docs.recipe_reference_markdown()
    row = _row(md, "data.train_size")
    assert "| integer | `224` | >= 8, <= 2048 | Side of the square training crop in pixels. |" in row
    row = _row(md, "data.train_crop")
    assert '`"random_resized"`, `"pad_crop"`, `"resize_crop"`, `"resize"`' in row
    assert _row(md, "data.crop_scale").split("|")[3].strip() == "`[0.08, 1.0]`"
    assert "*unset*" in _row(md, "data.root")
    assert "**required**" in _row(md, "stages[].epochs")
    assert "length >= 1, length <= 120, matches `^[A-Za-z0-9_.+-]+$`" in _row(md, "name")
    assert "`false`" in _row(md, "ema.enabled")


def test_union_variants_are_listed_with_their_own_keys() -> None:
    md = docs.recipe_reference_markdown()
    for section in UNION_SECTIONS:
        tag = "source" if section.endswith("pretrained") else "name"
        for value, _cls in union_variants(section).items():
            assert f'`{section}.{tag} = "{value}"`' in md
    # keys shared by every optimizer are listed once, variant keys under their variant
    assert md.count("| `optim.weight_decay` |") == 1
    sgd = md.index('`optim.name = "sgd"`')
    adam = md.index('`optim.name = "adam"`')
    assert sgd < md.index("| `optim.momentum` |") < adam
    # the same key with different defaults (lr: 0.1 for SGD, 0.001 for Adam) appears per variant
    assert md.count("| `optim.lr` |") == 4
    assert "No further keys." in md.split('`model.pretrained.source = "none"`')[1].split("#####")[0]


def test_generic_union_detection_agrees_with_the_schema_table() -> None:
    for section in UNION_SECTIONS:
        *parents, last = section.split(".")
        cls: type[BaseModel] = Recipe
        for p in parents:
            cls = cls.model_fields[p].annotation  # type: ignore[assignment]
        members = docs._union_members(cls.model_fields[last])
        assert members is not None and set(members) == set(union_variants(section).values())


def test_markdown_tables_are_well_formed() -> None:
    md = docs.recipe_reference_markdown()
    for line in md.splitlines():
        if line.startswith("| "):
            cells = line.replace("\\|", "").split("|")
            assert len(cells) == 7, line  # five cells between six pipes
    assert docs.recipe_reference_markdown() == md  # deterministic


def test_toml_values() -> None:
    assert docs.toml_value(True) == "true" and docs.toml_value(1e-4) == "0.0001"
    assert docs.toml_value((512, 512)) == "[512, 512]" and docs.toml_value('say "hi"') == '"say \\"hi\\""'
    assert docs.toml_value({}) == "{}"


# ------------------------------------------------------------------ --write and --check


def test_replace_block_only_touches_the_block() -> None:
    text = f"# Title\n\nintro\n\n{docs.START_MARKER}\nold stuff\n{docs.END_MARKER}\n\n## After\nmore\n"
    new, found = docs.replace_block(text, "NEW\n")
    assert found and new == "# Title\n\nintro\n\nNEW\n\n## After\nmore\n"
    fresh, _ = docs.replace_block(text)
    assert docs.is_current(fresh) and not docs.is_current(text)
    assert docs.replace_block(fresh) == (fresh, True)  # idempotent


def test_replace_block_appends_without_markers_and_rejects_broken_ones() -> None:
    new, found = docs.replace_block("# Title\n", "B\n")
    assert not found and new == "# Title\n\nB\n"
    with pytest.raises(docs.MarkerError):
        docs.replace_block(f"{docs.START_MARKER}\nno end\n")
    with pytest.raises(docs.MarkerError):
        docs.replace_block(f"{docs.START_MARKER}\n{docs.END_MARKER}\n{docs.START_MARKER}\n{docs.END_MARKER}\n")


def test_cli_write_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# fgbench\n\n## Recipes\n\n{docs.START_MARKER}\nstale\n{docs.END_MARKER}\n\n## CLI\n")
    assert docs.main(["--check", str(readme)]) == 1
    assert "--write" in capsys.readouterr().err
    assert docs.main(["--write", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# fgbench\n\n## Recipes\n\n" + docs.START_MARKER) and text.endswith("\n\n## CLI\n")
    assert docs.extract_block(text) == docs.reference_block()
    assert docs.main(["--check", str(readme)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]  # no temporary file left
    before = readme.stat().st_mtime_ns
    assert docs.main(["--write", str(readme)]) == 0  # already current: not rewritten
    assert readme.stat().st_mtime_ns == before


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert docs.main(["--write", str(tmp_path / "nope.md")]) == 2
    broken = tmp_path / "b.md"
    broken.write_text(f"{docs.START_MARKER}\nno end\n")
    assert docs.main(["--write", str(broken)]) == 2
    assert broken.read_text() == f"{docs.START_MARKER}\nno end\n"
    err = capsys.readouterr().err
    assert "nope.md: cannot read" in err and "without a following" in err


def test_cli_prints_the_block(capsys: pytest.CaptureFixture[str]) -> None:
    assert docs.main([]) == 0
    assert capsys.readouterr().out == docs.reference_block()


def test_readme_holds_exactly_the_generated_event_table() -> None:
    from fgbench.rundir.events import EVENT_DOCS, EVENT_FIELDS

    text = README.read_text(encoding="utf-8")
    assert docs.EVENTS_START in text and docs.EVENTS_END in text, f"README.md has no event table block; {FIX}"
    assert docs.replace_events_block(text) == text, f"README.md's event table is stale; {FIX}"
    assert set(EVENT_DOCS) == set(EVENT_FIELDS)  # every event kind says when it is written
    for kind, (required, optional) in EVENT_FIELDS.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{kind}` |"))
        assert all(f"`{f}`" in row for f in (*required, *optional)), kind
