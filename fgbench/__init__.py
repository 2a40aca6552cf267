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

__version__ = "0.1.0"
