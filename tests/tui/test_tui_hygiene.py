"""What the TUI loads before its first paint (that it never imports torch is in tests/test_import_zones.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

from tui_helpers import REPO


def test_what_the_first_paint_needs_leaves_out_the_schema_and_plotext():
    # The recipe schema (pydantic, ~0.3 s) and plotext load after the first paint: the Recipes pane
    # is Deferred and plots import textual-plotext when composed. Everything the main screen needs
    # to paint must import without them.
    code = textwrap.dedent("""
        import json, sys
        from fgbench.cli import build_parser
        build_parser()
        import fgbench.tui.app, fgbench.tui.screens.main
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "plotext", "textual_plotext")
                                or m == "fgbench.recipe")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


async def test_the_recipe_list_shows_before_the_schema_loads_and_run_waits_for_it(dirs, monkeypatch):
    """The Recipes pane's load is held until the test lets it go, so the test sees the loading
    state every time (it used to check whether the pane was still loading, and the load could end
    between that check and the key press, or before the check on an idle machine)."""
    from fgbench.tui.app import make_app
    from fgbench.tui.screens.main import RecipesPreview
    from fgbench.tui.widgets.deferred import Deferred
    from tui_helpers import ready_pane, wait_for

    gate = asyncio.Event()
    held: list[str] = []
    load = Deferred._load

    async def held_load(self: Deferred) -> None:
        held.append(self.module)
        await gate.wait()
        await load(self)

    monkeypatch.setattr(Deferred, "_load", held_load)
    app = make_app(recipes_dirs=[dirs.project, dirs.user], runs_root=dirs.runs, data_root=dirs.data,
                   initial_recipe=dirs.project / "tiny.toml")
    async with app.run_test(size=(100, 30)) as pilot:
        preview = app.screen.query_one(RecipesPreview)
        assert "● tiny" in str(preview.query_one(".recipe-preview-list").render())
        await wait_for(pilot, lambda: held == ["fgbench.tui.widgets.recipes_pane"], what=lambda: f"the load held: {held}")
        assert app.pane("recipes") is None
        await pilot.press("ctrl+r")  # still loading: running is refused with a reason, not lost silently
        await wait_for(pilot, lambda: any("still loading" in n.message for n in app._notifications),
                       what=lambda: f"the still-loading notice, not {[n.message for n in app._notifications]}")
        gate.set()
        pane = await ready_pane(pilot, "recipes")
        assert not preview.display  # the placeholder gives way to the pane
        assert pane.form.doc["name"] == "tiny"
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "recipe-list",
                       what=lambda: f"focus on the recipe list, not {app.focused}")
