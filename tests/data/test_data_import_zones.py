"""The catalog, download engine, prepare step, settings and `fgbench data` stay in the pure zone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pure_data_modules_import_no_torch_pil_or_numpy():
    code = (
        "import sys\n"
        "import fgbench.settings, fgbench.data.catalog, fgbench.data.download, fgbench.data.prepare\n"
        "import fgbench.cli.data as c, argparse\n"
        "p = argparse.ArgumentParser(); c.register(p.add_subparsers())\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'PIL', 'numpy', 'textual') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
