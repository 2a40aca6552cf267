"""Moved to :mod:`fgbench.rundir` (kept as an alias while the other branches merge in)."""

from fgbench.rundir.layout import (  # noqa: F401
    BEST_CKPT, CHECKPOINT_DIR, CLASSES_FILE, CONFUSION_FILE, LAST_CKPT, LOG_FILE, PREDICTIONS_FILE, RECIPE_FILE,
    RUN_INFO_FILE, SUMMARY_FILE, create_run_dir, is_run_dir, read_json, resolve_run, write_json, write_run_info,
)
from fgbench.rundir.procs import pid_alive  # noqa: F401
from fgbench.rundir.reader import RunInfo, list_runs, read_run  # noqa: F401
