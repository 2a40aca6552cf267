"""`fgbench bench`: the report's structure and arithmetic on a tiny recipe (no timing asserts), the
diagnosis on hand-made rates, and bad input."""

from __future__ import annotations

import json

import pytest

from fgbench.cli import main
from fgbench.recipe import validate_recipe
from fgbench.train.bench import Rate, diagnose

from .conftest import write_recipe


def test_bench_reports_limit_loaders_end_to_end_and_writes_nothing_else(tmp_path, tiny_folder, capsys,
                                                                         monkeypatch) -> None:
    runs_root = tmp_path / "runs"
    monkeypatch.setenv("FGBENCH_RUNS", str(runs_root))
    recipe = write_recipe(tmp_path, tiny_folder, ema={"enabled": True, "decay": 0.9})
    out_json = tmp_path / "bench.json"
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["bench", str(recipe), "--seconds", "0.05", "--json", str(out_json), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["bench.json"])  # no run directory
    assert not runs_root.exists()
    rep = json.loads(out_json.read_text())
    limit = rep["limit"]
    assert limit["images"] >= 3 * 16 and limit["seconds"] > 0 and limit["ratio"] == 1.0
    assert limit["images_per_s"] == pytest.approx(limit["images"] / limit["seconds"])
    assert len(limit["extra"]["rates"]) == 2 and limit["images_per_s"] == pytest.approx(max(limit["extra"]["rates"]))
    kinds = [r["extra"]["kind"] for r in rep["loaders"]]
    # the recipe's own loader first; pad-and-crop PNGs of one size also allow the device loader
    assert kinds[0] == "standard" and "device" in kinds and len(set(kinds)) == len(kinds)
    for r in [*rep["loaders"], rep["end_to_end"]] + ([rep["cheaper"]] if rep["cheaper"] else []):
        assert r["images"] > 0 and r["seconds"] > 0
        assert r["ratio"] == pytest.approx(r["images_per_s"] / limit["images_per_s"])
    assert 0 <= rep["end_to_end"]["extra"]["data_wait_frac"] <= 1
    assert rep["setup"]["batch_size"] == 16 and rep["setup"]["loader"] == "standard"
    assert rep["bottleneck"].startswith(("the loader", "the model step")) and rep["advice"]
    lines = out.splitlines()
    assert lines[2].startswith("limit: the step on batches in memory")
    assert any(line.startswith("loader alone: standard (the recipe's)") for line in lines)
    assert any(line.startswith("bottleneck: ") for line in lines) and err == ""


def test_bench_bad_input_is_one_line_exit_2(tmp_path, tiny_folder, capsys) -> None:
    assert main(["bench", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert "missing.toml" in err and "Traceback" not in err
    recipe = write_recipe(tmp_path, tiny_folder)
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(recipe), "--seconds", "0"])
    assert exc.value.code == 2 and "--seconds" in capsys.readouterr().err
    assert main(["bench", str(recipe), "--set", "optim.lr=-1"]) == 2
    assert "optim.lr" in capsys.readouterr().err


def _rate(name, ips, kind=None, ratio=None, wait=None) -> Rate:
    extra = {"kind": kind} if kind else {}
    if wait is not None:
        extra["data_wait_frac"] = wait
    return Rate(name, int(ips * 10), 10.0, ratio, "", extra)


RECIPE = validate_recipe({"name": "x", "data": {"workers": 1}})


def test_a_slow_loader_is_the_bottleneck_and_the_faster_one_is_advised() -> None:
    limit = _rate("limit", 1000, ratio=1.0)
    loaders = [_rate("standard", 400, "standard", 0.4), _rate("device", 5000, "device", 5.0)]
    e2e = _rate("e2e", 380, ratio=0.38, wait=0.6)
    bottleneck, advice = diagnose(limit, loaders, e2e, None, recipe=RECIPE)
    assert bottleneck.startswith("the loader: standard gives 400 images/s, the model could take 1000")
    assert "60 %" in bottleneck
    assert advice[0] == 'set data.loader = "device" (5000 images/s alone)'
    assert any(a.startswith("more loader workers (data.workers = 1") for a in advice)


def test_a_slow_step_is_the_bottleneck_and_bf16_is_advised_when_faster() -> None:
    limit = _rate("limit", 100, ratio=1.0)
    loaders = [_rate("device", 5000, "device", 50.0)]
    e2e = _rate("e2e", 97, ratio=0.97, wait=0.01)
    cheaper = _rate("bf16", 190, ratio=1.9)
    bottleneck, advice = diagnose(limit, loaders, e2e, cheaper, recipe=RECIPE)
    assert bottleneck.startswith("the model step: 100 images/s")
    assert advice == ['bf16 autocast + channels_last is 1.90x the step rate here: set runtime.precision = "bf16" '
                      'and runtime.channels_last = true if this recipe\'s precision is not part of what it '
                      'reproduces (check the accuracy on a short run)']
    _, advice = diagnose(limit, loaders, e2e, _rate("bf16", 90, ratio=0.9), recipe=RECIPE)
    assert advice == ["nothing obvious: end to end is close to the limit"]
    # on a GPU where runtime.precision = "auto" picks bf16, that is what it recommends
    _, advice = diagnose(limit, loaders, e2e, cheaper, recipe=RECIPE, auto_bf16=True)
    assert advice == ['bf16 autocast + channels_last is 1.90x the step rate here: set runtime.precision = "auto" '
                      '(bf16 on this GPU, fp32 where there is none) and runtime.channels_last = true if this '
                      'recipe\'s precision is not part of what it reproduces (check the accuracy on a short run)']


@pytest.mark.parametrize("cpus,local_world,expected", [(1, 1, 0), (2, 1, 1), (6, 1, 5), (64, 1, 8), (16, 4, 3),
                                                       (2, 4, 0)])
def test_auto_workers_leave_a_core_for_training(cpus, local_world, expected) -> None:
    from fgbench.data.loaders import resolve_workers

    data = validate_recipe({"name": "x", "data": {"workers": "auto"}}).data
    n, why = resolve_workers(data, cpus=cpus, local_world=local_world)
    assert n == expected and why.startswith(f"auto: {cpus} CPU{'' if cpus == 1 else 's'}")
    assert resolve_workers(validate_recipe({"name": "x", "data": {"workers": 3}}).data) == (3, "set in the recipe")


def test_auto_workers_in_a_recipe_and_its_errors(tmp_path, tiny_folder) -> None:
    from fgbench.errors import UserError
    from fgbench.recipe import load_recipe

    recipe = write_recipe(tmp_path, tiny_folder, data={"workers": "auto"})
    assert load_recipe(recipe).data.workers == "auto"
    for bad in ("many", "-1", "129", "true"):
        with pytest.raises(UserError) as err:
            load_recipe(recipe, [f"data.workers={bad}"])
        assert str(err.value) == (f'--set data.workers={bad}: should be a number of worker processes from 0 to 128, '
                                  'or "auto"')  # one line, not one per half of the union


def test_a_run_with_auto_workers_says_how_many(tmp_path, tiny_folder, monkeypatch) -> None:
    from fgbench.data import loaders as L

    from .conftest import events_of
    from .test_run import run_cli

    # one CPU: no worker processes (an in-process run that forks workers can leave them behind in pytest)
    monkeypatch.setattr(L.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    recipe = write_recipe(tmp_path, tiny_folder, data={"workers": "auto"},
                          schedule={"name": "cosine", "epochs": 1, "warmup_epochs": 0})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    logs = [e["message"] for e in events_of(run) if e["event"] == "log"]
    assert "loader workers: 0 (auto: 1 CPU, one left for training, at most 8)" in logs
