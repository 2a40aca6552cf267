"""The plan is built once: one run loads its recipe once and resolves its stages once."""

from __future__ import annotations

from fgbench.cli import main

from .conftest import summary_of, write_recipe


def test_a_run_loads_its_recipe_and_resolves_its_stages_once(tmp_path, tiny_folder, monkeypatch):
    import fgbench.recipe
    from fgbench.train import plan, stages

    calls = {"load_recipe": 0, "resolve_stages": 0}

    def counted(module, name):
        orig = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return orig(*args, **kwargs)
        return wrapper

    for module, name in ((fgbench.recipe, "load_recipe"), (plan, "load_recipe"),
                         (stages, "resolve_stages"), (plan, "resolve_stages")):
        monkeypatch.setattr(module, name, counted(module, name))
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 1})
    run = tmp_path / "run"
    assert main(["run", str(recipe), "--run-dir", str(run), "--progress", "none"]) == 0
    assert summary_of(run)["epochs_done"] == 1
    # the CLI loads the recipe before importing torch; the plan reuses it; the trainer takes the plan's stages
    assert calls == {"load_recipe": 1, "resolve_stages": 1}
