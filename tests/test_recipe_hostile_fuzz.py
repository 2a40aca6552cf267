"""A seeded, bounded fuzz test of the recipe front door (issue 11).

Each case takes one of the shipped recipes in ``recipes/`` (all valid: ``test_seed_recipes`` loads
them) and breaks it in exactly one way: a value of the wrong TOML type, an unknown key at any depth
(keys with control characters and escape sequences included), a value outside its documented
bounds, a cross-field rule broken, ``inf``/``nan`` in a scalar or a list, an unknown union variant,
broken TOML syntax, a section given as a scalar, a broken sweep, or the same faults given as
``--set`` overrides instead of in the file. Every case then goes through ``fgbench recipe
validate`` or ``fgbench run`` (in-process, ``fgbench.cli.main``) and must end with exit 2, one line
on stderr that names the file (or the ``--set`` override) and the field, no traceback, only
printable characters, and nothing written: no run directory, no new file beside the recipe.

The expected field of each case is the path the case itself changed, never something computed by
fgbench. The number of cases is ``FGBENCH_FUZZ_EXAMPLES`` (default 300; the figure for a large run
is in BENCHMARKS.md). Hypothesis is derandomized, so a run is repeatable; a failure prints the case.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from fgbench import cli
from fgbench.tomlread import tomllib

REPO = Path(__file__).resolve().parent.parent
SHIPPED = {p.name: tomllib.loads(p.read_text(encoding="utf-8")) for p in sorted((REPO / "recipes").glob("*.toml"))}
SWEEPS = sorted(n for n, d in SHIPPED.items() if "sweep" in d)
EXAMPLES = int(os.environ.get("FGBENCH_FUZZ_EXAMPLES", "300"))

Path_ = tuple[Any, ...]

# Documented bounds (README recipe reference and Recipes rules), written here by hand: each value
# lies outside what the field accepts. ``when`` says which union variant has the field.
OUT_OF_BOUNDS: list[tuple[str, list[Any], str | None]] = [
    ("data.train_size", [7, 2049, 0], None),
    ("data.test_size", [-224, 100000], None),
    ("data.batch_size", [0, 10**6], None),
    ("data.workers", [-1, 1000], None),
    ("data.val_fraction", [-0.1, 1.0], None),
    ("data.crop_padding", [-1], None),
    ("data.crop_scale", [[0.5, 0.2], [0.0, 1.0], [0.5, 1.5]], None),
    ("data.test_resize", [[0, 512], [512, -1]], None),
    ("data.val_seed", [-1, 2**40], None),
    ("model.num_classes", [1, 0, 10**9], None),
    ("model.vit.patch_size", [0, 65], None),
    ("model.dropout", [1.0, -0.5], None),
    ("optim.lr", [0, -0.1, 11.0], None),
    ("optim.weight_decay", [-1e-4, 2.0], None),
    ("optim.momentum", [1.0, -0.1], "optim=sgd"),
    ("optim.betas", [[0.9, 1.0], [-0.1, 0.999], [1.5, 0.9]], "optim=adam"),
    ("optim.eps", [0.0, 10.0], "optim=adam"),
    ("schedule.epochs", [0, 10**6], None),
    ("schedule.warmup_epochs", [-1.0], None),
    ("schedule.max_steps", [0, 10**12], None),
    ("augment.mix_prob", [1.5, -0.5], None),
    ("augment.mixup_alpha", [-1.0, 1e6], None),
    ("augment.cutmix_alpha", [-0.5, 1e6], None),
    ("augment.rotation", [181.0, -1.0], None),
    ("augment.random_erasing", [1.1], None),
    ("loss.label_smoothing", [1.0, -0.1], None),
    ("ema.decay", [0.0, 1.0], None),
    ("ema.every", [0, 10**9], None),
    ("runtime.seed", [-1, 2**40], None),
    ("runtime.log_every_steps", [0], None),
    ("eval.top_k", [0, 1000], None),
    ("eval.final_test_sizes", [[100000], [0], [224, -224]], None),
]

# Float fields that need not be in a recipe: `--set schedule.min_lr=inf` must fail like any other.
FLOAT_FIELDS: list[tuple[str, str, str | None]] = [
    ("optim.lr", "scalar", None),
    ("schedule.min_lr", "scalar", "schedule=decay"),
    ("schedule.warmup_epochs", "scalar", None),
    ("augment.rotation", "scalar", None),
    ("loss.label_smoothing", "scalar", None),
    ("ema.ramp_steps", "scalar", None),
    ("data.mean", "triple", None),
    ("data.std", "triple", None),
    ("data.crop_scale", "pair", None),
    ("optim.betas", "pair", "optim=adam"),
]

NON_FINITE = [math.inf, -math.inf, math.nan]
FREE = ("grid", "set")  # sweep tables whose keys are dotted recipe fields, not schema keys
KEY_CHARS = st.sampled_from(list("abcxyz019_-.\" \\\t\n\r\x00\x07\x1b[m;\u2028\u0085\x7féÅ"))


@dataclass
class Case:
    kind: str
    recipe: str
    data: dict[str, Any] | None = None  # the file's content, or ``text`` for a syntax case
    text: str | None = None
    overrides: list[str] = field(default_factory=list)
    blame: str = "file"  # "file" or "--set"
    expect: list[str] = field(default_factory=list)  # each must appear in the line
    many: bool = False  # a sweep fault is reported once per point that it breaks
    validate_only: bool = False  # only `recipe validate` expands a sweep


# ------------------------------------------------------------------------------- helpers


def text_of(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + p
    return out


def nodes(node: Any, path: Path_ = ()):
    """Every (path, value) below ``node``; the sweep's free tables are not entered."""
    yield path, node
    if isinstance(node, dict):
        if path and path[-1] in FREE and "sweep" in path:
            return
        for k, v in node.items():
            yield from nodes(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from nodes(v, path + (i,))


def in_free(path: Path_) -> bool:
    return "sweep" in path and any(p in FREE for p in path)


def set_in(data: dict[str, Any], path: Path_, value: Any) -> None:
    node: Any = data
    for p in path[:-1]:
        if isinstance(p, int):
            node = node[p]
        else:
            node = node.setdefault(p, {})
    node[path[-1]] = value


def literal(value: Any) -> str:
    """``value`` as a TOML literal for ``--set`` (tables inline)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {literal(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[4:].strip()


def variant(data: dict[str, Any], section: str, default: str) -> str:
    tag = "source" if section == "pretrained" else "name"
    node = data.get(section, {})
    return node.get(tag, default) if isinstance(node, dict) else default


def applies(data: dict[str, Any], when: str | None) -> bool:
    if when == "optim=sgd":
        return variant(data, "optim", "sgd") == "sgd"
    if when == "optim=adam":
        return variant(data, "optim", "sgd") in ("adam", "adamw", "radam")
    if when == "schedule=decay":
        return variant(data, "schedule", "cosine") in ("cosine", "linear")
    return True


def wrong_type(value: Any, draw) -> Any:
    if isinstance(value, bool):
        return draw(st.sampled_from(["off", 1, "true"]))
    if isinstance(value, (int, float)):
        return draw(st.sampled_from([True, str(value), [value]]))
    if isinstance(value, str):
        return draw(st.sampled_from([5, True, 1.5, [value]]))
    if isinstance(value, list):
        return draw(st.sampled_from(["x", 3, False]))
    raise AssertionError(value)


# ------------------------------------------------------------------------------- cases


@st.composite
def cases(draw) -> Case:
    kind = draw(st.sampled_from(["type", "unknown_key", "bounds", "cross_field", "non_finite", "union",
                                 "scalar_section", "syntax", "sweep", "set_syntax"]))
    as_set = kind in ("type", "unknown_key", "bounds", "cross_field", "non_finite", "union") and draw(st.booleans())
    name = draw(st.sampled_from(SWEEPS if kind == "sweep" else sorted(SHIPPED)))
    data = _deepcopy(SHIPPED[name])
    case = Case(kind, name, data)

    def put(path: Path_, value: Any) -> None:
        """The fault at ``path``: in the file, or as ``--set`` when asked and expressible."""
        if as_set and not any(isinstance(p, int) for p in path) and all(isinstance(p, str) and "." not in p
                                                                        and "=" not in p for p in path):
            case.overrides.append(f"{'.'.join(path)}={literal(value)}")
            case.blame = "--set"
        else:
            set_in(data, path, value)

    if kind == "type":
        leaves = [(p, v) for p, v in nodes(data) if p and not isinstance(v, dict) and not in_free(p)
                  and not (isinstance(v, list) and v and isinstance(v[0], dict))]
        path, value = draw(st.sampled_from(leaves))
        put(path, wrong_type(value, draw))
        case.expect = [text_of(path)]
    elif kind == "unknown_key":
        tables = [p for p, v in nodes(data) if isinstance(v, dict) and not in_free(p)]
        if as_set:
            tables.append(("data",))
        parent = draw(st.sampled_from(tables))
        key = "zz" + draw(st.text(KEY_CHARS, min_size=1, max_size=6))
        if as_set:
            key = key.replace("=", "").replace(".", "")
        put(parent + (key,), draw(st.sampled_from([1, "x", [1], {"a": 1}, True])))
        if re.fullmatch(r"[A-Za-z0-9_-]+", key):
            case.expect = [text_of(parent + (key,))]
        else:  # quoted and escaped: the printable part of it, under its table
            case.expect = [text_of(parent)] if parent else []
            case.expect.append("zz")
    elif kind == "bounds":
        choices = [(p, vs) for p, vs, when in OUT_OF_BOUNDS if applies(data, when)]
        path, values = draw(st.sampled_from(choices))
        parts = tuple(path.split("."))
        put(parts, draw(st.sampled_from(values)))
        case.expect = [path]
    elif kind == "cross_field":
        sched = data.get("schedule", {})
        lr = data.get("optim", {}).get("lr", 0.1 if variant(data, "optim", "sgd") == "sgd" else 1e-3)
        options = []
        if variant(data, "schedule", "cosine") in ("cosine", "linear"):
            options.append((("schedule", "min_lr"), min(lr * 2, 10.0), "schedule.min_lr"))
        if "max_steps" not in sched and "warmup_steps" not in sched:
            options.append((("schedule", "warmup_epochs"), float(sched.get("epochs", 10)), "schedule.warmup_epochs"))
        if variant(data, "schedule", "cosine") == "multistep" and "max_steps" not in sched:
            epochs = sched.get("epochs", 10)
            options.append((("schedule", "milestones"), [2, 1], "schedule.milestones[1]"))
            options.append((("schedule", "milestones"), [epochs + 5], "schedule.milestones[0]"))
        if data.get("model", {}).get("arch") in ("vit_cifar", "vitn_cifar"):
            options.append((("model", "vit", "patch_size"), 7, "model.vit.patch_size"))
        options.append((("augment", "randaugment_bins"), 2, "augment.randaugment_magnitude"))
        path, value, expect = draw(st.sampled_from(options))
        if path == ("augment", "randaugment_bins"):
            data.setdefault("augment", {})["randaugment_magnitude"] = 5
        put(path, value)
        case.expect = [expect]
    elif kind == "non_finite":
        numeric = [(p, v) for p, v in nodes(data) if p and not in_free(p)
                   and isinstance(v, (int, float)) and not isinstance(v, bool)]
        bad = draw(st.sampled_from(NON_FINITE))
        if numeric and draw(st.booleans()):
            path, _ = draw(st.sampled_from(numeric))
            put(path, bad)
            case.expect = [text_of(path)]
        else:
            fields = [(p, shape) for p, shape, when in FLOAT_FIELDS if applies(data, when)]
            path, shape = draw(st.sampled_from(fields))
            parts = tuple(path.split("."))
            if shape == "scalar":
                put(parts, bad)
                case.expect = [path]
            else:
                n = 3 if shape == "triple" else 2
                i = draw(st.integers(0, n - 1))
                value = [0.5] * n
                value[i] = bad
                put(parts, value)
                case.expect = [f"{path}[{i}]"]
    elif kind == "union":
        section, tag = draw(st.sampled_from([(("optim",), "name"), (("schedule",), "name"),
                                             (("model", "pretrained"), "source")]))
        put(section + (tag,), draw(st.sampled_from(["lamb", "step", "hub", "", "SGD", 7])))
        case.expect = [text_of(section + (tag,))]
    elif kind == "scalar_section":
        section = draw(st.sampled_from(["data", "model", "optim", "schedule", "augment", "ema", "runtime", "eval"]))
        data[section] = draw(st.sampled_from([5, "x", [1, 2], True]))
        case.expect = [f": {section}: "]
    elif kind == "syntax":
        text = tomli_w.dumps(data, multiline_strings=True)
        junk = draw(st.sampled_from(["= 1", "[data", "x = ", "x = 'unterminated", "x = [1, 2", "[[", "x = 1 2",
                                     "x = \x00", "a.b = 1\na = 2", "[data]\n[data]"]))
        lines = text.splitlines()
        at = draw(st.sampled_from([0, len(lines), draw(st.integers(0, len(lines)))]))
        text = "\n".join(lines[:at] + [junk] + lines[at:]) + "\n"
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            pass
        else:
            assume(False)  # the junk landed inside a multi-line string: not a syntax fault
        case.data, case.text = None, text
        case.expect = ["TOML syntax", "line"]
    elif kind == "sweep":
        sweep = data["sweep"]
        case.validate_only, case.many = True, True
        what = draw(st.sampled_from(["grid_key", "grid_value", "variant_set"] if sweep.get("variants") else
                                    ["grid_key", "grid_value"]))
        if what == "grid_key" or (what == "grid_value" and not sweep.get("grid")):
            sweep.setdefault("grid", {})["optim.zzlr"] = [0.1]
            case.expect = ["optim.zzlr"]
        elif what == "grid_value":
            key = draw(st.sampled_from(sorted(sweep["grid"])))
            sweep["grid"][key] = [{"zz": 1}]
            case.expect = [key]
        else:
            i = draw(st.integers(0, len(sweep["variants"]) - 1))
            sweep["variants"][i].setdefault("set", {})["zzq.r"] = 1
            case.expect = ["zzq"]
    elif kind == "set_syntax":
        item = draw(st.sampled_from(["noequals", "a..b=1", ".a=1", "data.mean=[0.5,", 'optim.lr="0.1',
                                     "optim.lr={", "name.x=1", "data.batch_size=1\nx = 2", "=3"]))
        case.overrides.append(item)
        case.blame = "--set"
        case.expect = [item.split("=")[0].split("\n")[0] or "--set"]
    return case


def _deepcopy(x: Any) -> Any:
    import copy

    return copy.deepcopy(x)


# ------------------------------------------------------------------------------- running


def run_case(case: Case, mode: str, workdir: Path, capsys) -> tuple[int, str, str]:
    recipe = workdir / f"broken-{case.recipe}"
    text = case.text if case.text is not None else tomli_w.dumps(case.data, multiline_strings=True)
    recipe.write_text(text, encoding="utf-8")
    sets = [a for o in case.overrides for a in ("--set", o)]
    runs_root = workdir / "runs"
    argv = (["recipe", "validate", str(recipe), *sets] if mode == "validate"
            else ["run", str(recipe), "--runs-root", str(runs_root), *sets])
    capsys.readouterr()
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def check(case: Case, recipe: Path, workdir: Path, rc: int, out: str, err: str) -> None:
    where = f"{case.kind} on {case.recipe}, --set {case.overrides}"
    lines = err.splitlines()
    assert rc == 2, f"{where}: exit {rc}, stderr {err!r}"
    assert "Traceback" not in err, where
    assert lines, f"{where}: nothing on stderr"
    if not case.many:
        assert len(lines) == 1, f"{where}: {lines}"
    for line in lines:
        assert line.isprintable(), f"{where}: {line!r}"
        if case.blame == "file":
            assert line.startswith(f"{recipe}: "), f"{where}: {line!r} does not name the file"
        else:
            assert line.startswith("--set ") and str(recipe) not in line, f"{where}: {line!r} does not name the --set"
        for want in case.expect:
            assert want in line, f"{where}: {line!r} does not name {want!r}"
    assert ": ok" not in out, where
    assert sorted(p.name for p in workdir.iterdir()) == [recipe.name], f"{where}: wrote {list(workdir.iterdir())}"


@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(case=cases(), mode=st.sampled_from(["validate", "run"]))
def test_fuzzed_recipes_fail_with_one_line_naming_file_or_override_and_field(case: Case, mode: str, capsys) -> None:
    if case.validate_only:
        mode = "validate"
    event(f"{case.kind} in {case.blame} via {mode}")  # shown by --hypothesis-show-statistics
    with tempfile.TemporaryDirectory(prefix="fgbench-fuzz-") as tmp:
        workdir = Path(tmp)
        rc, out, err = run_case(case, mode, workdir, capsys)
        check(case, workdir / f"broken-{case.recipe}", workdir, rc, out, err)


# ----------------------------------------------------------------- a few in a real process


REAL = [
    ("validate", "quickstart.toml", "[data]\nbatch_size = true\n", [], "data.batch_size"),
    ("run", "quickstart.toml", None, ["schedule.min_lr=inf"], "--set schedule.min_lr=inf"),
    ("run", "quickstart.toml", "[augment]\nhflip = \"off\"\n", [], "augment.hflip"),
    ("validate", "sweep_sc_ema.toml", None, ["optim.\x1b[31mx=1"], "--set optim.\\x1b[31mx=1"),
    ("run", "sc_cub_r50_fixres_two_stage.toml", None, ["stages=5"], "--set stages=5"),
]


@pytest.mark.parametrize("mode, name, extra, sets, expect", REAL)
def test_a_real_process_gives_the_same_one_line(tmp_path: Path, mode: str, name: str, extra: str | None,
                                                sets: list[str], expect: str) -> None:
    data = _deepcopy(SHIPPED[name])
    if extra:
        for key, table in tomllib.loads(extra).items():
            data.setdefault(key, {}).update(table)
    recipe = tmp_path / name
    recipe.write_text(tomli_w.dumps(data, multiline_strings=True), encoding="utf-8")
    argv = ["recipe", "validate", str(recipe)] if mode == "validate" else [
        "run", str(recipe), "--runs-root", str(tmp_path / "runs")]
    for s in sets:
        argv += ["--set", s]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "fgbench", *argv], capture_output=True, text=True, env=env,
                          timeout=120)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and expect in lines[0] and lines[0].isprintable(), lines
    assert (lines[0].startswith("--set ") if sets else lines[0].startswith(f"{recipe}: ")), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
