"""fgbench: train fine-grained image classifiers from TOML recipes.

The package has three import zones, proven twice: statically by the import-linter contracts in
pyproject.toml and at run time by tests/test_import_zones.py:

* pure (``recipe``, ``rundir``, ``paths``, ``cli``, ``sweep``, ``report``, ``data.catalog``,
  ``data.download``): stdlib, pydantic, platformdirs, tomli-w. ``rundir``, which owns the run
  directory, does without pydantic too. ``fgbench --help`` and
  ``fgbench recipe validate`` stay here, so they answer in a fraction of a second.
* engine (``fgbench.train``, ``data.transforms``, ``data.loaders``): adds torch and torchvision.
  Importing torch costs about 3 s and 650 MB; only the trainer process pays it.
* TUI (``fgbench.tui``): adds textual and plotext, never torch. The monitor talks to the trainer
  only through the run directory's ``metrics.jsonl``.
"""

import os as _os

__version__ = "0.1.0"

#: ``GOMP_SPINCOUNT`` set before torch loads, unless the user set it or ``OMP_WAIT_POLICY``.
#: libgomp, the OpenMP runtime of PyTorch's Linux wheels, reads its environment once, when torch is
#: imported, and by default a thread that waits at the end of a parallel region spins 300000 times
#: before it sleeps. When another process takes one of the cores (a neighbour in another session,
#: where ``nice`` does not reach across Linux's autogroups, or another job's cgroup), one of the two
#: intra-op threads is descheduled and the other burns its own share spinning for it: the training
#: step fell to a tenth of its idle rate on the 2-core VM (BENCHMARKS.md, "Under a low-priority
#: neighbour"). A short spin keeps the idle speed and sleeps soon enough to let the late thread run.
OMP_SPIN_COUNT = "10000"

if "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ:
    # Set here, in the root package, because every fgbench process imports it before torch
    # (the trainer, ``fgbench bench``, loader workers); child processes inherit it.
    _os.environ["GOMP_SPINCOUNT"] = OMP_SPIN_COUNT
