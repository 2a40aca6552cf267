"""The TUI's Stop follows the rule for signals (fgbench.rundir.launcher.request_stop): a run whose
launch.json names a live process without that process's start time is not running, and Stop says
its process is unknown and signals nothing.

No wait here depends on timing: the Runs pane and the table's focus are waited for, and whether the
bystander got a SIGINT is asked of it (a probe signal it answers), not guessed from a sleep that a
loaded machine could outlast before delivering the signal."""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import sys

from fgbench import rundir
from fakes.fake_trainer import fake_cmd
from fakes.run_factory import make_fixture_run
from tui_helpers import WAIT_LIMIT_S, ready_pane, tui_app, wait_for

BYSTANDER = """\
import signal, sys, time
def interrupted(*a):
    print("SIGINT", flush=True)
    sys.exit(7)
signal.signal(signal.SIGINT, interrupted)
signal.signal(signal.SIGUSR1, lambda *a: print("probe", flush=True))
print("ready", flush=True)
time.sleep(600)
"""


def _first_answer(proc: subprocess.Popen) -> str:
    """The bystander's next line (within the hang guard): "probe" when it got our SIGUSR1 and no
    SIGINT before it. A SIGINT sent earlier is either handled already or still pending, and Python
    runs pending handlers in signal-number order: SIGINT (2) before SIGUSR1 (10)."""
    assert proc.stdout is not None
    ready, _w, _x = select.select([proc.stdout], [], [], WAIT_LIMIT_S)
    assert ready, "the bystander did not answer the probe"
    return proc.stdout.readline().strip()


async def test_stop_never_signals_a_process_fgbench_did_not_start(dirs):
    bystander = subprocess.Popen([sys.executable, "-c", BYSTANDER], stdout=subprocess.PIPE, text=True)
    try:
        assert bystander.stdout.readline().strip() == "ready"
        run = make_fixture_run(dirs.runs, "20250305-130000-forged", name="forged", dataset="cub200",
                               arch="resnet18", status="interrupted")
        rundir.write_json(run / rundir.LAUNCH_FILE, {"launch": "forged", "command": ["x"], "time": 1.0,
                                                     "supervisor": {"pid": bystander.pid, "host": socket.gethostname()},
                                                     "trainer": None})
        app = tui_app(dirs, fgbench_cmd=fake_cmd(), initial_pane="runs", watch_interval=0.2)
        async with app.run_test(size=(120, 30)) as pilot:
            pane = await ready_pane(pilot, "runs")
            await wait_for(pilot, lambda: pane.table.row_count == 1, what="listed")
            assert app.store.model(run).status == "interrupted"  # not "running" forever
            pane.table.focus()
            await wait_for(pilot, lambda: pane.table.has_focus, what=lambda: f"focus on the runs table, not {app.focused}")
            await pilot.press("x")
            await wait_for(pilot, lambda: any("process is unknown" in n.message for n in app._notifications),
                           what=lambda: f"the unknown-process notice, not {[n.message for n in app._notifications]}")
        bystander.send_signal(signal.SIGUSR1)
        assert _first_answer(bystander) == "probe"  # "SIGINT" had Stop signalled it
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
