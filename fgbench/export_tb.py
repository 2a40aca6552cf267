"""`fgbench runs export --format tensorboard`: runs' metrics as TensorBoard event files.

The ``tensorboard`` package is an optional extra (``pip install 'fgbench[tensorboard]'``); without
it the command stops with a one-line error saying so. We use tensorboard's own event-file writer
and protobufs, not ``torch.utils.tensorboard``: exporting must not cost a torch import.

Layout: one sub-directory per run under the output directory (named by the run directory), which
is how TensorBoard tells runs apart and overlays them. The scalars and their names are those of
``fgbench.rundir.events.event_scalars`` (``epoch/val_top1``, ``step/loss``, ...), with the global optimizer
step as TensorBoard's step and the event's time as its wall time, so the "relative" and "wall"
axes work too.

The export is written into a temporary directory beside the target and renamed into place at the
end, so an interrupted export leaves no half-written log directory.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from fgbench.errors import UserError


def _tensorboard():
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise UserError("--format tensorboard needs the tensorboard package: pip install 'fgbench[tensorboard]'") from None
    return Event, Summary, EventFileWriter


def export_tensorboard(run_infos: Sequence[Any], out: Path, *, force: bool = False) -> int:
    """Write one event file per run under ``out``; returns the number of scalars written."""
    from fgbench.rundir.events import METRICS_FILE, event_scalars, read_events

    Event, Summary, EventFileWriter = _tensorboard()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    total = 0
    try:
        for run in run_infos:
            rows = event_scalars(read_events(run.path / METRICS_FILE))
            writer = EventFileWriter(str(tmp / run.run_id), max_queue_size=1000, flush_secs=3600)
            try:
                for row in rows:
                    step = row["step"] if isinstance(row["step"], int) else (row["epoch"] or 0)
                    summary = Summary(value=[Summary.Value(tag=row["metric"], simple_value=float(row["value"]))])
                    writer.add_event(Event(wall_time=float(row["time"] or 0.0), step=int(step), summary=summary))
                    total += 1
            finally:
                writer.close()
        if out.exists():
            if not force:
                raise UserError(f"{out}: already exists (use --force to replace it)")
            if not _is_export_dir(out):
                raise UserError(f"{out}: not a TensorBoard export of fgbench (only event files in per-run folders); "
                                "refusing to replace it")
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return total


def _is_export_dir(path: Path) -> bool:
    """Only a directory of per-run folders holding event files may be replaced by --force."""
    for child in path.iterdir():
        if not child.is_dir() or child.is_symlink():
            return False
        for f in child.iterdir():
            if not (f.is_file() and f.name.startswith("events.out.tfevents.")):
                return False
    return True
