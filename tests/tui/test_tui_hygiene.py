"""The TUI process never imports torch or torchvision, and paints its first screen fast."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tui_helpers import REPO


def test_tui_never_imports_torch(tmp_path):
    code = textwrap.dedent(f"""
        import asyncio, json, sys, time
        t0 = time.perf_counter()
        from fgbench.cli import build_parser
        build_parser()  # what `fgbench` does before it opens the TUI: every command module registers
        from fgbench.tui.app import make_app
        from pathlib import Path
        base = Path({str(tmp_path)!r})
        app = make_app(runs_root=base / "runs", data_root=base / "data")
        out = {{}}

        async def drive():
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                out["first_paint_s"] = time.perf_counter() - t0
                for key in "1234":  # mount and show every pane
                    await pilot.press(key)
                    await pilot.pause()
                await pilot.press("question_mark")
                await pilot.pause()

        asyncio.run(drive())
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
        out["heavy"] = heavy
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    # import + first paint; "well under a second" on a normal machine, generous on a loaded CI box
    assert result["first_paint_s"] < 5.0, result
