"""Sweeps: one recipe, many runs (a grid, named variants, seeds, or an Optuna search), run on this
machine or on SLURM. Pure zone: no torch; each point is an ordinary ``fgbench run`` in its own
process.

The package, one contract per module:

* :mod:`~fgbench.sweeps.plan`: the points, their expansion (variants x grid x seeds, counted
  before expanding) and overrides; pure, nothing written.
* :mod:`~fgbench.sweeps.state`: ``<runs root>/sweeps/<tag>/sweep.json``, its locks (one writer at a
  time), and a point's status, which is its run directory's (:mod:`fgbench.rundir.status`).
* :mod:`~fgbench.sweeps.launch`: a point's ``fgbench run`` (fresh or ``--resume``) and how its
  end is recorded, shared by every backend.
* :mod:`~fgbench.sweeps.backend`: the ``Backend`` protocol (submit, poll, cancel, scheduler
  states) and the one registry; :mod:`~fgbench.sweeps.local` and :mod:`~fgbench.sweeps.slurm`
  implement it.
* :mod:`~fgbench.sweeps.search`: Optuna searches (trials asked when their point starts, pruned
  from the run's events).
* :mod:`~fgbench.sweeps.tables`: the ablation and status tables, a search's best recipe.

The command line (``fgbench sweep``) is :mod:`fgbench.cli.sweep`.

Nothing is imported here: ``fgbench --help`` imports :mod:`~fgbench.sweeps.backend` (for the
``--launcher`` choices) and must not build the recipe schema on the way.
"""
