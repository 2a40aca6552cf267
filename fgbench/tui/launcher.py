"""The TUI's side of launching trainers (no textual here): fgbench.rundir.launcher does the work.

The run that is started is the editor's current (validated) recipe, handed to the trainer as
``launch.toml`` in the new run directory. Everything else (the supervisor that records how the
trainer ended, SIGINT to stop, nothing left behind by a rejected launch) is the one launcher's,
shared with sweeps: see :mod:`fgbench.rundir.launcher`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fgbench.errors import UserError
from fgbench.rundir import launcher
from fgbench.rundir import layout

if TYPE_CHECKING:
    from fgbench.recipe import Recipe

Launched = launcher.Launched


class Launcher(launcher.Launcher):
    def start(self, recipe: "Recipe") -> launcher.Launched:  # type: ignore[override]
        from fgbench.tui.form import full_toml  # the recipe schema: not needed before the first paint

        try:
            return super().start(full_toml(recipe), recipe.name, args=["--progress", "lines"])
        except launcher.LaunchError as err:
            raise UserError(str(err)) from None

    def resume(self, run_dir: Path) -> launcher.Launched:  # type: ignore[override]
        run_dir = Path(run_dir).absolute()
        if not layout.RunDir(run_dir).last_ckpt.is_file():
            raise UserError(f"{run_dir.name}: no checkpoint to resume from "
                            f"({layout.CHECKPOINT_DIR}/{layout.LAST_CKPT})")
        try:
            return super().resume(run_dir, args=["--progress", "lines"])
        except launcher.LaunchError as err:
            raise UserError(str(err)) from None

    @staticmethod
    def stop(run_dir: Path) -> bool:  # type: ignore[override]
        """SIGINT to the run's trainer (it checkpoints and exits 130). False if it is not running."""
        return launcher.stop(run_dir)

    @staticmethod
    def request_stop(run_dir: Path) -> launcher.StopAnswer:
        """SIGINT to the run's trainer, by the rule for signals; the answer's line says what was done."""
        return launcher.request_stop(run_dir)
