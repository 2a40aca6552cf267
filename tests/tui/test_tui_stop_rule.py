"""The TUI's Stop follows the rule for signals (fgbench.rundir.launcher.request_stop): a run whose
launch.json names a live process without that process's start time is not running, and Stop says
its process is unknown and signals nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from fgbench import rundir
from fakes.fake_trainer import fake_cmd
from fakes.run_factory import make_fixture_run
from tui_helpers import tui_app, wait_for


async def test_stop_never_signals_a_process_fgbench_did_not_start(dirs):
    code = "import signal, sys, time\nsignal.signal(signal.SIGINT, lambda *a: sys.exit(7))\nprint('ready', flush=True)\ntime.sleep(600)\n"
    bystander = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert bystander.stdout.readline().strip() == "ready"
        run = make_fixture_run(dirs.runs, "20250305-130000-forged", name="forged", dataset="cub200",
                               arch="resnet18", status="interrupted")
        rundir.write_json(run / rundir.LAUNCH_FILE, {"launch": "forged", "command": ["x"], "time": 1.0,
                                                     "supervisor": {"pid": bystander.pid, "host": socket.gethostname()},
                                                     "trainer": None})
        app = tui_app(dirs, fgbench_cmd=fake_cmd(), initial_pane="runs", watch_interval=0.2)
        async with app.run_test(size=(120, 30)) as pilot:
            pane = app.pane("runs")
            await wait_for(pilot, lambda: pane.table.row_count == 1, what="listed")
            assert app.store.model(run).status == "interrupted"  # not "running" forever
            pane.table.focus()
            await pilot.press("x")
            await wait_for(pilot, lambda: any("process is unknown" in n.message for n in app._notifications),
                           what=lambda: f"the unknown-process notice, not {[n.message for n in app._notifications]}")
        time.sleep(0.2)  # a signal, had one been sent, is delivered by now
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
