"""Searches: a sweep whose points are Optuna trials, pruned from the ``eval`` events they stream.

Pure zone at import time; ``optuna`` is imported inside the functions that use it.

Decisions:

* The study lives in Optuna's RDB storage: ``sqlite:///<sweep dir>/optuna.db`` unless
  ``sweep.search.storage`` names another database. Every process that takes part (the local sweep,
  each SLURM job, each trial's ``fgbench run``) opens the same study by name (the sweep tag), so
  many jobs share one study without a coordinator.
* A trial is asked for when its point starts, not when the sweep is planned, so that a sequential
  search (or a SLURM array with a concurrency limit) samples from what the finished trials
  scored. The point then gets an ordinary recipe file and run directory; its run is an ordinary
  ``fgbench run`` with a hidden ``--trial SPEC:NUMBER`` argument.
* Pruning happens inside the run: :class:`TrialReporter` listens to the run's events, reports
  each validation top-1 of the searched model (raw or EMA) with the epoch as Optuna's step, and
  asks the pruner. A trial to prune stops like an interrupted run (after the epoch, with a
  checkpoint) and records the status ``pruned``.
* The value of a trial is the best validation top-1 over its evaluations (of the raw model, or of
  the EMA model with ``metric = "ema_val_top1"``). Test numbers never reach the study.
* ``choice`` values that Optuna cannot store (lists, tables) are stored as their JSON text and
  decoded when the recipe is made.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPEC_FILE = "search.json"
DB_FILE = "optuna.db"


def storage_url(cfg: dict[str, Any], sweep_dir: Path) -> str:
    return cfg.get("storage") or f"sqlite:///{Path(sweep_dir).resolve() / DB_FILE}"


def _optuna():
    try:
        import optuna
    except ImportError:
        from fgbench.errors import UserError

        raise UserError("sweep.search needs optuna: pip install 'fgbench[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def make_sampler(cfg: dict[str, Any], offset: int = 0):
    """The sampler; a seeded one is seeded with ``seed + offset`` (the number of trials so far):
    every trial is asked by a fresh process, and the same seed there would draw the same values."""
    optuna = _optuna()
    seed = cfg.get("seed")
    seed = None if seed is None else int(seed) + offset
    if cfg.get("sampler") == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(cfg: dict[str, Any]):
    optuna = _optuna()
    kind = cfg.get("pruner", "median")
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(cfg.get("startup_trials", 2)),
                                           n_warmup_steps=int(cfg.get("warmup_epochs", 1)))
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, int(cfg.get("warmup_epochs", 1))),
                                                      reduction_factor=int(cfg.get("reduction_factor", 3)))
    return optuna.pruners.NopPruner()


def _storage(url: str):
    optuna = _optuna()
    if url.startswith("sqlite:"):
        # several processes write one SQLite file: wait for the lock instead of failing at once
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.storages.RDBStorage(url)


def open_study(spec: dict[str, Any], *, create: bool = False):
    optuna = _optuna()
    storage = _storage(spec["storage"])
    if create:
        return optuna.create_study(study_name=spec["study"], storage=storage, direction="maximize",
                                   sampler=make_sampler(spec), pruner=make_pruner(spec), load_if_exists=True)
    return optuna.load_study(study_name=spec["study"], storage=storage, sampler=make_sampler(spec),
                             pruner=make_pruner(spec))


def distributions(params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    optuna = _optuna()
    D = optuna.distributions
    out: dict[str, Any] = {}
    for key, p in params.items():
        kind = p["type"]
        if kind == "uniform":
            out[key] = D.FloatDistribution(float(p["low"]), float(p["high"]))
        elif kind == "log_uniform":
            out[key] = D.FloatDistribution(float(p["low"]), float(p["high"]), log=True)
        elif kind == "int":
            out[key] = D.IntDistribution(int(p["low"]), int(p["high"]), step=int(p.get("step") or 1))
        else:
            out[key] = D.CategoricalDistribution([_storable(v) for v in p["values"]])
    return out


def _storable(v: Any) -> Any:
    return v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v, sort_keys=True)


def decode_params(params: dict[str, dict[str, Any]], sampled: dict[str, Any]) -> dict[str, Any]:
    """Optuna's sampled values -> recipe values (JSON text of a list/table choice back to the value)."""
    out = {}
    for key, value in sampled.items():
        spec = params.get(key, {})
        if spec.get("type") == "choice":
            for v in spec["values"]:
                if _storable(v) == value:
                    value = v
                    break
        out[key] = value
    return out


def create(spec: dict[str, Any]) -> None:
    open_study(spec, create=True)


def ask(spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A new trial: (its number, recipe values for the searched fields)."""
    study = open_study(spec)
    study.sampler = make_sampler(spec, offset=len(study.get_trials(deepcopy=False)))
    trial = study.ask(distributions(spec["params"]))
    return trial.number, decode_params(spec["params"], trial.params)


def tell(spec: dict[str, Any], number: int, status: str, value: float | None) -> None:
    """Record a finished run's outcome; a trial already finished (e.g. told before a requeue) is left as it is."""
    optuna = _optuna()
    study = open_study(spec)
    tid = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    state = study._storage.get_trial(tid).state
    if state.is_finished():
        return
    if status == "completed" and value is not None and math.isfinite(value):
        study.tell(number, value)
    elif status == "pruned":
        study.tell(number, state=optuna.trial.TrialState.PRUNED)
    elif status == "failed" or status == "completed":
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    # interrupted: the trial stays RUNNING; `--continue` resumes the same run and trial


def trial_value(events: list[dict[str, Any]], metric: str) -> float | None:
    """The best validation top-1 of the searched model over the run's evaluations."""
    model = "ema" if metric == "ema_val_top1" else "raw"
    values = [float(e["top1"]) for e in events
              if e.get("event") == "eval" and e.get("split") == "val" and e.get("model") == model
              and isinstance(e.get("top1"), (int, float))]
    return max(values) if values else None


def trials_table(spec: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """number -> {state, value, params} from the study."""
    study = open_study(spec)
    return {t.number: {"state": t.state.name, "value": t.value,
                       "params": decode_params(spec["params"], t.params)} for t in study.get_trials(deepcopy=False)}


@dataclass
class TrialReporter:
    """Listens to a trial's run events: reports validation top-1 per epoch, asks the pruner, and
    sets the run's stop flag (``signal = "pruned"``) when the trial should stop."""

    spec: dict[str, Any]
    number: int
    stop: Any

    @classmethod
    def from_arg(cls, arg: str, stop: Any) -> "TrialReporter":
        path, _, number = arg.rpartition(":")
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(spec, int(number), stop)

    def __post_init__(self) -> None:
        optuna = _optuna()
        self.study = open_study(self.spec)
        tid = self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, self.number)
        self.trial = optuna.trial.Trial(self.study, tid)
        self.model = "ema" if self.spec.get("metric") == "ema_val_top1" else "raw"

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("event") != "eval" or event.get("split") != "val" or event.get("model") != self.model:
            return
        top1 = event.get("top1")
        if not isinstance(top1, (int, float)) or not math.isfinite(top1):
            return
        epoch = int(event["epoch"])
        if epoch in self.trial.storage.get_trial(self.trial._trial_id).intermediate_values:
            return  # a resumed run repeats no epoch, but be safe
        self.trial.report(float(top1), epoch)
        if self.trial.should_prune() and not self.stop.requested:
            self.stop.requested = True
            self.stop.signal = "pruned"
            print(f"search: trial {self.number} pruned after epoch {epoch} (val top-1 {top1:.2f})", flush=True)
