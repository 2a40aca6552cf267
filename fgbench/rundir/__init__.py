"""The run directory, owned here and nowhere else (pure zone: stdlib only, and numpy, imported
lazily, for the ``confusion.npy`` of a run with many classes).

Everything that reads or writes a run directory goes through this package, so that every reader
says the same thing about a run:

* :mod:`~fgbench.rundir.layout`: the file names and how run directories are made, listed and named;
* :mod:`~fgbench.rundir.files`: the one guarded way to read a run-directory file (regular files
  only, never blocking, a size cap per file, a JSON depth limit), so one damaged file makes one run
  *damaged* instead of hanging or crashing every reader;
* :mod:`~fgbench.rundir.procs`: whether a recorded process is still the run's (pid, start time and
  host), the rule for signals;
* :mod:`~fgbench.rundir.events`: the ``metrics.jsonl`` event schema, its writer and tailer, and the
  one table of series names;
* :mod:`~fgbench.rundir.summary`: ``summary.json`` as a type the trainer writes and readers check;
* :mod:`~fgbench.rundir.confusion`: ``confusion.json`` (and ``confusion.npy`` past 1,000 classes);
* :mod:`~fgbench.rundir.status`: the one rule for a run's status;
* :mod:`~fgbench.rundir.reader`: the incremental reader (CLI, sweeps, ``--resume``, TUI);
* :mod:`~fgbench.rundir.lock`: one process trains in a directory at a time;
* :mod:`~fgbench.rundir.request` and :mod:`~fgbench.rundir.session`: how a run was asked (the
  ``RunRequest`` the CLI builds) and one process's hold on its directory (new or adopted by one
  rule, lock, disk reserve, log tee, signals, discard on bad input);
* :mod:`~fgbench.rundir.launcher` and :mod:`~fgbench.rundir.supervise`: starting and stopping
  trainers, with their exit recorded in the directory.

Before this package, the same knowledge was spread over eight modules whose copies disagreed (a
run "failed" in the TUI that launched it was "interrupted" in ``fgbench runs list``).
"""

from fgbench.rundir.layout import (
    BEST_CKPT, CHECKPOINT_DIR, CLASSES_FILE, CONFUSION_FILE, CONSOLE_FILE, EXIT_FILE, LAST_CKPT, LAUNCH_FILE,
    LAUNCH_FILES, LAUNCH_RECIPE, is_launch_file, LOCK_FILE, LOG_FILE, PREDICTIONS_FILE, RECIPE_FILE, RUN_INFO_FILE, SUMMARY_FILE, RunDir, create_run_dir, is_run_dir, newest_first, read_json, resolve_run, run_dirs, write_json,
    write_run_info,
)
from fgbench.rundir.events import METRICS_FILE
from fgbench.rundir.procs import pid_alive
from fgbench.rundir.reader import RunInfo, RunReader, list_runs, read_run

__all__ = ["BEST_CKPT", "CHECKPOINT_DIR", "CLASSES_FILE", "CONFUSION_FILE", "CONSOLE_FILE", "EXIT_FILE", "LAST_CKPT",
           "LAUNCH_FILE", "LAUNCH_FILES", "is_launch_file", "LAUNCH_RECIPE", "LOCK_FILE", "LOG_FILE", "METRICS_FILE",
           "PREDICTIONS_FILE", "RECIPE_FILE", "RUN_INFO_FILE", "SUMMARY_FILE", "RunDir", "RunInfo", "RunReader",
           "create_run_dir", "is_run_dir", "list_runs", "newest_first", "pid_alive", "read_json", "read_run", "resolve_run",
           "run_dirs", "write_json", "write_run_info"]
