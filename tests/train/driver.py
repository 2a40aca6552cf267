"""Runs `fgbench run` in a subprocess with test-only pacing, so a test can signal it at a known point.

FGBENCH_TEST_SLOW_FROM_STEP=N : sleep 0.25 s after every step from step N on (a SIGINT lands mid-epoch)
FGBENCH_TEST_PAUSE_AFTER_CHECKPOINT_EPOCH=E : sleep 60 s right after the `last` checkpoint of epoch E
(the test SIGKILLs the process during that pause). Nothing here changes what the trainer computes.
"""

import os
import sys
import time

import fgbench.train.trainer as tr

slow_from = int(os.environ.get("FGBENCH_TEST_SLOW_FROM_STEP", "0") or 0)
pause_epoch = int(os.environ.get("FGBENCH_TEST_PAUSE_AFTER_CHECKPOINT_EPOCH", "0") or 0)

if slow_from:
    import fgbench.train.progress as pg

    orig_tick = pg.Progress.tick

    def tick(self, **kw):
        orig_tick(self, **kw)
        if kw["step"] >= slow_from:
            time.sleep(0.25)

    pg.Progress.tick = tick

if pause_epoch:
    orig_save = tr.Trainer._save_last

    def save_last(self, **kw):
        orig_save(self, **kw)
        if kw.get("epoch") == pause_epoch and not kw.get("batch"):
            time.sleep(60)

    tr.Trainer._save_last = save_last

from fgbench.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
