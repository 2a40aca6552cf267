"""Experiment trackers fed from a run's events: TensorBoard, MLflow and Weights & Biases.

Pure zone at import time: each tracker's package (``tensorboard``, ``mlflow``, ``wandb``, all
optional extras) is imported inside the tracker that needs it, when a recipe or settings.toml turns
it on. A run without ``[tracking]`` imports none of them.

Decisions:

* One hook: the run's ``MetricsWriter`` is wrapped in an :class:`EventFanout` that writes the event
  to ``metrics.jsonl`` first and then hands it to each listener (the trackers, and a search trial's
  pruning reporter). The trainer knows nothing about trackers.
* The metrics file stays the source of truth. A tracker that fails (missing package, unreachable
  server, full disk) is reported once on stderr (which the run copies into ``log.txt``) and as one
  ``log`` event, then switched off; training never stops because of it.
* The scalars and their names are ``fgbench.rundir.events.event_scalars``'s (``step/loss``,
  ``epoch/val_top1``, ``eval/val/raw/top1``, ...), the same as ``runs export``; the x axis is the
  global optimizer step. The resolved recipe goes in as flattened parameters (``optim.lr``), the
  final ``summary.json`` as the run's summary / final metrics (``summary/best_raw_val_top1``...).
* Cost per logged step (``benchmarks/trackers.py``): TensorBoard and W&B queue the scalars in
  their own writers; MLflow gets them in batches (every epoch's end, every few seconds, and at the
  end), because each ``log_batch`` is one transaction or request whatever its size, written by
  MLflow's asynchronous logging thread; the run waits for them only at its end.
* Settings: ``[tracking]`` in settings.toml gives defaults for every run on the machine (an MLflow
  server, a W&B project); a recipe's ``[tracking.<name>]`` wins for that tracker.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from fgbench.errors import UserError
from fgbench.rundir.layout import METRICS_FILE, SUMMARY_FILE
from fgbench.textsafe import safe_lines

Listener = Callable[[dict[str, Any]], None]

TRACKERS = ("tensorboard", "mlflow", "wandb")


class EventFanout:
    """A metrics writer that also hands every event to listeners (after it is on disk)."""

    def __init__(self, writer: Any, listeners: Sequence[Any]):
        self.writer = writer
        self.listeners = list(listeners)

    def emit(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        event = self.writer.emit(kind, **fields)
        for listener in self.listeners:
            listener(event)
        return event

    def close(self) -> None:
        for listener in self.listeners:
            close = getattr(listener, "close", None)
            if close is not None:
                close()
        self.writer.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``; lists stay values."""
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif prefix:
        out[prefix[:-1]] = node
    return out


def summary_scalars(summary: dict[str, Any]) -> dict[str, float]:
    """The final summary's numbers as flat ``summary/...`` scalars (for MLflow and W&B)."""
    out: dict[str, float] = {}
    for key, value in flatten(summary).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out["summary/" + key.replace(".", "_")] = float(value)
    return out


class _Tracker:
    """Calls ``_start`` on ``run_started`` and ``_log`` on every event; the first exception turns
    the tracker off after saying so once."""

    name = "tracker"

    def __init__(self, cfg: Any, ctx: dict[str, Any]):
        self.cfg, self.ctx = cfg, ctx
        self.failed = False
        self.started = False

    def __call__(self, event: dict[str, Any]) -> None:
        if self.failed:
            return
        try:
            if not self.started and event.get("event") == "run_started":
                self._start(event)
                self.started = True
            if self.started:
                self._log(event)
        except Exception as err:  # noqa: BLE001 - a tracker must never stop training
            self._fail(err)

    def close(self) -> None:
        if self.failed or not self.started:
            return
        try:
            self._close()
        except Exception as err:  # noqa: BLE001
            self._fail(err)

    def _fail(self, err: BaseException) -> None:
        self.failed = True
        message = f"tracking: {self.name} failed and is off for this run ({type(err).__name__}: {err}); " \
                  f"{METRICS_FILE} has everything"
        try:
            print(safe_lines(message), file=sys.stderr, flush=True)  # a server's error text
        except Exception:  # noqa: BLE001
            pass
        report = self.ctx.get("report")
        if report is not None:
            try:
                report(message)
            except Exception:  # noqa: BLE001
                pass

    def _scalars(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        from fgbench.rundir.events import event_scalars

        return [r for r in event_scalars([event]) if isinstance(r.get("value"), (int, float))]

    def _start(self, event: dict[str, Any]) -> None: ...
    def _log(self, event: dict[str, Any]) -> None: ...
    def _close(self) -> None: ...


class TensorBoardTracker(_Tracker):
    """Event files written as the run goes, with tensorboard's own writer (no torch import)."""

    name = "tensorboard"

    def _start(self, event: dict[str, Any]) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        log_dir = Path(self.cfg.log_dir).expanduser() if self.cfg.log_dir else self.ctx["run_dir"] / "tensorboard"
        # flush_secs: what is logged reaches the file within seconds, so TensorBoard shows it live
        self.writer = EventFileWriter(str(log_dir), max_queue_size=100, flush_secs=2)
        self.last_step = 0

    def _log(self, event: dict[str, Any]) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        if isinstance(event.get("step"), int):
            self.last_step = event["step"]
        rows = self._scalars(event)
        if rows:
            summary = Summary(value=[Summary.Value(tag=r["metric"], simple_value=float(r["value"])) for r in rows])
            self.writer.add_event(Event(wall_time=float(event.get("time") or 0.0), step=int(self.last_step),
                                        summary=summary))
        if event.get("event") == "run_finished":
            self.writer.flush()

    def _close(self) -> None:
        self.writer.close()


class MLflowTracker(_Tracker):
    """One MLflow run per fgbench run, through ``MlflowClient`` (no global active run)."""

    name = "mlflow"

    def _start(self, event: dict[str, Any]) -> None:
        import logging

        from mlflow.tracking import MlflowClient

        # MLflow configures its loggers at INFO on import, and a new SQLite store (alembic) says
        # "Creating initial MLflow database tables..." in the trainer's console: its warnings and
        # errors are enough there.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        uri = self.cfg.tracking_uri or f"sqlite:///{Path(self.ctx['runs_root']).resolve() / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        name = self.cfg.experiment or self.ctx.get("sweep_tag") or "fgbench"
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            exp_id = exp.experiment_id
        else:
            # a local store keeps its artifacts (summary.json) beside it, not in ./mlruns of
            # whatever directory the run was started from
            where = None
            if uri.startswith("sqlite:///"):
                where = (Path(uri[len("sqlite:///"):]).parent / "mlflow-artifacts").as_uri()
            exp_id = self.client.create_experiment(name, artifact_location=where)
        run_id = _read_marker(self.ctx["run_dir"], "mlflow")
        if run_id is None:  # a resumed run continues its MLflow run
            tags = {"fgbench.run_id": str(event.get("run_id")), "mlflow.runName": str(event.get("run_id"))}
            if self.ctx.get("sweep_tag"):
                tags["fgbench.sweep"] = str(self.ctx["sweep_tag"])
            run_id = self.client.create_run(exp_id, tags=tags).info.run_id
            _write_marker(self.ctx["run_dir"], "mlflow", run_id)
            from mlflow.entities import Param

            params = [Param(k, str(v)[:6000]) for k, v in flatten(event.get("recipe") or {}).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(run_id, params=params[i:i + 100])
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id
        self.last_step = 0
        self.pending: list[Any] = []
        self.ops: list[Any] = []
        self.flushed_at = time.monotonic()

    def _flush(self, wait: bool = False) -> None:
        # MLflow's asynchronous logging: its own thread writes the batch, the training loop goes on
        for i in range(0, len(self.pending), MLFLOW_BATCH):
            self.ops.append(self.client.log_batch(self.run_id, metrics=self.pending[i:i + MLFLOW_BATCH],
                                                  synchronous=False))
        self.pending = []
        self.flushed_at = time.monotonic()
        if wait:
            for op in self.ops:
                op.wait()
            self.ops = []

    def _log(self, event: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        if isinstance(event.get("step"), int):
            self.last_step = event["step"]
        ms = int(1000 * float(event.get("time") or 0.0))
        self.pending += [Metric(_mlflow_key(r["metric"]), float(r["value"]), ms, int(self.last_step))
                         for r in self._scalars(event)]
        # one batch every few seconds, not one per event: a batch is a transaction (tens of ms on
        # a SQLite store, a request to a server), whatever its size
        now = time.monotonic()
        if self.pending and (len(self.pending) >= MLFLOW_BATCH or now - self.flushed_at >= MLFLOW_EVERY_S
                             or event.get("event") in ("epoch", "run_finished")):
            self._flush()
        if event.get("event") == "run_finished":
            self._flush(wait=True)  # every metric is in the store before the run is marked finished
            summary = event.get("summary") or {}
            finals = [Metric(_mlflow_key(k), v, ms, int(self.last_step)) for k, v in summary_scalars(summary).items()]
            if finals:
                self.client.log_batch(self.run_id, metrics=finals)
            if summary:
                self.client.log_dict(self.run_id, summary, SUMMARY_FILE)
            status = str(event.get("status"))
            self.client.set_terminated(self.run_id, status={"completed": "FINISHED", "pruned": "KILLED",
                                                            "interrupted": "KILLED"}.get(status, "FAILED"))

    def _close(self) -> None:
        self._flush(wait=True)


MLFLOW_BATCH = 1000
"""Metrics per MLflow batch (the most ``log_batch`` takes)."""
MLFLOW_EVERY_S = 5.0
"""MLflow gets what was logged at least this often (and at every epoch's end)."""


def _mlflow_key(name: str) -> str:
    # MLflow keys allow letters, digits, _ - . space / ; ``@`` (final/raw/top1@224) is not among them
    return name.replace("@", "_at_")


class WandbTracker(_Tracker):
    """A W&B run (offline by default: files under the run directory, ``wandb sync`` uploads them)."""

    name = "wandb"

    def _start(self, event: dict[str, Any]) -> None:
        import wandb

        d = Path(self.cfg.dir).expanduser() if self.cfg.dir else self.ctx["run_dir"]
        d.mkdir(parents=True, exist_ok=True)
        run_id = _read_marker(self.ctx["run_dir"], "wandb")
        if run_id is None:
            import uuid

            run_id = uuid.uuid4().hex[:8]  # W&B run ids: lower-case letters and digits
            _write_marker(self.ctx["run_dir"], "wandb", run_id)
        self.run = wandb.init(project=self.cfg.project, entity=self.cfg.entity, mode=self.cfg.mode, dir=str(d),
                              id=run_id, resume="allow", name=str(event.get("run_id")),
                              group=self.ctx.get("sweep_tag"), config=event.get("recipe") or {},
                              settings=wandb.Settings(console="off", silent=True, x_disable_stats=True,
                                                      x_disable_meta=True))
        self.run.define_metric("*", step_metric="trainer/step")

    def _log(self, event: dict[str, Any]) -> None:
        rows = self._scalars(event)
        if rows:
            data = {r["metric"]: float(r["value"]) for r in rows}
            step = event.get("step")
            data["trainer/step"] = step if isinstance(step, int) else data.get("trainer/step", 0)
            self.run.log(data)
        if event.get("event") == "run_finished":
            for k, v in summary_scalars(event.get("summary") or {}).items():
                self.run.summary[k] = v
            self.run.summary["status"] = str(event.get("status"))

    def _close(self) -> None:
        self.run.finish(exit_code=0)


def _marker(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / f".{name}_run_id"


def _read_marker(run_dir: Path, name: str) -> str | None:
    try:
        return _marker(run_dir, name).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _write_marker(run_dir: Path, name: str, value: str) -> None:
    _marker(run_dir, name).write_text(value + "\n", encoding="utf-8")


_CLASSES = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}


def resolve_tracking(recipe_tracking: Any, settings: dict[str, Any] | None = None,
                     settings_path: str = "settings.toml") -> dict[str, Any]:
    """Tracker name -> its config, for the trackers that are on: the recipe's section for a tracker
    when it has one, else settings.toml's ``[tracking.<name>]``."""
    from pydantic import ValidationError

    from fgbench.recipe import TrackingConfig

    from_settings = TrackingConfig()
    table = (settings or {}).get("tracking")
    if table is not None:
        try:
            from_settings = TrackingConfig.model_validate(table)
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise UserError(f"{settings_path}: tracking.{loc}: {first['msg']}") from None
    out = {}
    for name in TRACKERS:
        cfg = getattr(recipe_tracking, name, None) if recipe_tracking is not None else None
        if cfg is None:
            cfg = getattr(from_settings, name)
        if cfg is not None and cfg.enabled:
            out[name] = cfg
    return out


def build_trackers(configs: dict[str, Any], *, run_dir: Path, runs_root: Path, sweep_tag: str | None,
                   report: Callable[[str], None] | None = None) -> list[_Tracker]:
    ctx = {"run_dir": Path(run_dir), "runs_root": Path(runs_root), "sweep_tag": sweep_tag, "report": report}
    return [_CLASSES[name](cfg, ctx) for name, cfg in configs.items()]


def run_listeners(recipe: Any, run_dir: Path, *, sweep_tag: str | None, trial: str | None, stop: Any,
                  report: Callable[[str], None] | None = None) -> list[Any]:
    """The listeners of one run: its trackers and, for a search trial, the pruning reporter."""
    from fgbench import settings

    listeners: list[Any] = []
    configs = resolve_tracking(recipe.tracking, settings.load_settings(),
                               str(_settings_path()))
    if configs:
        listeners += build_trackers(configs, run_dir=run_dir, runs_root=Path(run_dir).parent, sweep_tag=sweep_tag,
                                    report=report)
    if trial:
        from fgbench.sweeps.search import TrialReporter

        listeners.append(TrialReporter.from_arg(trial, stop))
    return listeners


def _settings_path() -> Path:
    from fgbench import paths

    return paths.settings_file()
