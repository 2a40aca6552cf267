"""The test suite's one fake trainer (``fake_trainer.py``) and one run-directory factory
(``run_factory.py``). ``tests/`` is on ``sys.path`` (pytest's rootdir conftest), so every test
folder imports them as ``from fakes.run_factory import make_run`` and
``from fakes.fake_trainer import FAKE_TRAINER, fake_cmd``."""
