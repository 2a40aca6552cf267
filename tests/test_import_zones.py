"""The import zones, proven twice: statically (import-linter's contracts in pyproject.toml) and at run
time (real entry points in fresh interpreters, then a look at ``sys.modules``).

Zones (README, Development): the pure modules import neither torch nor textual; the TUI never
imports torch; the trainer never imports textual; ``fgbench --help`` does not even build the recipe
schema (pydantic). This file is the one run-time probe; the static contracts cover every import,
including the ones inside functions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TORCH = ("torch", "torchvision")
TEXTUAL = ("textual", "plotext", "textual_plotext")
SCHEMA = ("pydantic", "fgbench.recipe")

PROBE = """
import json, sys
sys.path.insert(0, {repo!r})
{body}
print("LOADED=" + json.dumps(sorted(m for m in sys.modules)))
"""


def loaded(body: str, tmp_path: Path) -> set[str]:
    code = PROBE.format(repo=str(REPO), body=textwrap.dedent(body).format(tmp=str(tmp_path), repo=str(REPO)))
    env = {"FGBENCH_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=180,
                       env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("LOADED=")]
    return set(json.loads(line.removeprefix("LOADED=")))


def heavy(mods: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in mods if m in prefixes or m.split(".")[0] in prefixes)


CLI = "from fgbench.cli import main\n"
CASES = {
    "help": (CLI + "try:\n    main(['--help'])\nexcept SystemExit:\n    pass", TORCH + TEXTUAL + SCHEMA + ("scipy",)),
    "recipe validate": (CLI + "assert main(['recipe', 'validate', *__import__('glob').glob('{repo}/recipes/*.toml')]) == 0",
                        TORCH + TEXTUAL),
    "recipe show": (CLI + "assert main(['recipe', 'show', '{repo}/recipes/sc_cub_r50_fixres_two_stage.toml']) == 0",
                    TORCH + TEXTUAL),
    "runs and sweeps": ("""
        from fgbench.cli import main
        root = '{tmp}/runs'
        assert main(['runs', 'list', '--runs-root', root]) == 0
        assert main(['sweep', '{repo}/recipes/sweep_sc_fixres.toml', '--dry-run', '--runs-root', root]) == 0
        """, TORCH + TEXTUAL + ("tensorboard",)),
    "data commands": ("""
        import argparse
        import fgbench.settings, fgbench.data.catalog, fgbench.data.download, fgbench.data.prepare
        import fgbench.cli.data as c
        c.register(argparse.ArgumentParser().add_subparsers())
        from fgbench.cli import main
        assert main(['data', 'list']) == 0
        """, TORCH + TEXTUAL + ("PIL", "numpy")),
    "pure modules": ("""
        import fgbench.recipe, fgbench.rundir, fgbench.rundir.launcher, fgbench.rundir.supervise, fgbench.rundir.session
        import fgbench.paths, fgbench.schema, fgbench.formats, fgbench.docs, fgbench.errors, fgbench.report, fgbench.groups, fgbench.stats, fgbench.runmodel
        """, TORCH + TEXTUAL + ("scipy",)),
    "rundir alone": ("import fgbench.rundir, fgbench.rundir.launcher, fgbench.rundir.supervise",
                     TORCH + TEXTUAL + ("pydantic",)),
    "tui": ("""
        import asyncio
        from pathlib import Path
        from fgbench.cli import build_parser
        build_parser()  # what `fgbench` does before it opens the TUI: every command module registers
        from fgbench.tui.app import make_app
        app = make_app(runs_root=Path('{tmp}/runs'), data_root=Path('{tmp}/data'))

        async def drive():
            async with app.run_test(size=(80, 24)) as pilot:
                for key in '1234?':  # mount and show every pane, and the help
                    await pilot.press(key)
                    await pilot.pause()

        asyncio.run(drive())
        """, TORCH),
    "trainer": ("import fgbench.train.runner, fgbench.train.trainer, fgbench.data.loaders", TEXTUAL),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_entry_points_stay_in_their_zone(case: str, tmp_path: Path) -> None:
    body, forbidden = CASES[case]
    assert heavy(loaded(body, tmp_path), forbidden) == []


def test_the_probe_sees_what_it_forbids(tmp_path: Path) -> None:
    # the probe must be able to fail: json is fine, textual and pydantic are seen
    mods = loaded("import json, textual, pydantic", tmp_path)
    assert "textual" in heavy(mods, TEXTUAL) and "pydantic" in heavy(mods, SCHEMA)
    assert heavy(mods, TORCH) == []


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        found = shutil.which("lint-imports")
        assert found, "lint-imports (import-linter, in the test extra) is not installed"
        exe = Path(found)
    return str(exe)


def test_the_static_import_contracts_hold() -> None:
    r = subprocess.run([_lint_imports(), "--no-cache"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:]
    assert " 0 broken" in r.stdout or "broken" not in r.stdout.split("Contracts:")[-1]


def test_a_broken_contract_is_caught(tmp_path: Path) -> None:
    config = tmp_path / "contracts.ini"
    config.write_text("[importlinter]\nroot_package = fgbench\ninclude_external_packages = True\n\n"
                      "[importlinter:contract:1]\nname = trainer without torch (false on purpose)\n"
                      "type = forbidden\nsource_modules = fgbench.train.trainer\nforbidden_modules = torch\n")
    r = subprocess.run([_lint_imports(), "--no-cache", "--config", str(config)], capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    assert r.returncode == 1 and "BROKEN" in r.stdout, r.stdout[-2000:]
