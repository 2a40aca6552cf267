"""The SLURM backend: every point a job of one job array, submitted through ``submitit``.

Pure zone at import time (``submitit`` is imported inside the functions that submit). The sweep's
state file, the points' recipe files and run directories live on the file system the cluster's
nodes share (the runs root); the scheduler is asked only what it alone knows (pending, running,
requeued, why a job ended).

Decisions:

* One job array per submission (``sbatch --array=0-N%max_parallel`` written by submitit), one
  array task per point. Each task runs :class:`PointJob`, which decides *when it starts* what the
  point needs, from the run directory: a fresh ``fgbench run`` of the point's recipe file, a
  ``--resume`` from ``last.pt``, or nothing when the run already completed. So a job that SLURM
  requeues (``scontrol requeue``, preemption, a node failure) continues exactly where its run
  stopped and a completed point is never repeated; ``fgbench sweep --continue TAG`` resubmits
  what is neither done nor queued.
* Signals: at ``signal_delay_s`` before the time limit SLURM sends SIGUSR2 (submitit's
  ``--signal``); submitit calls :meth:`PointJob.checkpoint`, which asks the run to stop (SIGINT:
  finish the step, write ``last.pt``, exit 130) and returns the same job for submitit to requeue.
  The run itself ignores SIGUSR2 (set before exec) so that only this path handles it. SIGTERM
  (``scancel``, ``scontrol requeue``, preemption without grace) reaches the run directly and it
  checkpoints the same way; submitit's own process only logs it.
* A point of several nodes (``nodes_per_run > 1``) runs ``fgbench run --nnodes N --node-rank R
  --rdzv-endpoint <first node>:<port>`` on every node; node 0 decides the command (fresh or
  resume) and writes it beside the state for the other nodes.
* The scheduler's view comes from ``scontrol show job`` (the controller's memory, ``MinJobAge``)
  and, for jobs it has forgotten, ``sacct`` where accounting is on. Neither being reachable
  gives the state ``?``, never an error: the run directories still say what fgbench knows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from fgbench import paths
from fgbench.errors import UserError
from fgbench.rundir.layout import LOG_FILE
from fgbench.sweeps.state import SweepState, list_sweeps, locked, point_done, point_status
from fgbench.sweeps.backend import SchedulerState, SubmitOptions, Submitted
from fgbench.sweeps.launch import ensure_trial, finish_point, point_command
from fgbench.sweeps.plan import FAILED, INTERRUPTED, PENDING, RUNNING

ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
                 "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
DIED_STATES = {"FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "TIMEOUT"}
"""A job that ended in one of these died at the scheduler (CANCELLED is a person's doing, not a death)."""


def available() -> str | None:
    """None when ``sbatch`` and ``squeue`` are on PATH, else why SLURM cannot be used."""
    missing = [c for c in ("sbatch", "squeue", "scontrol", "scancel") if shutil.which(c) is None]
    if missing:
        return f"{', '.join(missing)} not found on PATH: --launcher slurm needs a SLURM client (run on a login node)"
    return None


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UserError("--launcher slurm needs submitit: pip install 'fgbench[slurm]'") from None
    return submitit


# ----------------------------------------------------------------------------------- submit


def executor_parameters(cfg: dict[str, Any], job_name: str) -> dict[str, Any]:
    """submitit ``SlurmExecutor`` parameters for a resolved ``SlurmConfig`` dict."""
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": int(cfg["time_limit_min"]),
        "nodes": int(cfg["nodes_per_run"]),
        "ntasks_per_node": 1,  # one `fgbench run` per node; torchrun starts the per-GPU processes
        "cpus_per_task": int(cfg["cpus_per_run"]),
        "signal_delay_s": int(cfg["signal_delay_s"]),
        "array_parallelism": int(cfg["max_parallel"]),
        "stderr_to_stdout": True,
    }
    if cfg.get("gpus_per_run"):
        params["gpus_per_node"] = int(cfg["gpus_per_run"])
    for key in ("partition", "account", "qos"):
        if cfg.get(key):
            params[key] = str(cfg[key])
    if cfg.get("mem_gb"):
        params["mem"] = f"{int(round(float(cfg['mem_gb']) * 1024))}M"
    if cfg.get("setup"):
        params["setup"] = list(cfg["setup"])
    extra = {str(k).replace("_", "-"): v for k, v in (cfg.get("sbatch") or {}).items()}
    if extra:
        params["additional_parameters"] = extra
    return params


def submit(state: Any, indices: Sequence[int]) -> list[str]:
    """Submit the points ``indices`` of ``state`` as one job array; returns the job ids in order."""
    why = available()
    if why:
        raise UserError(why)
    submitit = _submitit()
    folder = state.dir / "slurm"
    ex = submitit.SlurmExecutor(folder=str(folder) + "/%j", max_num_timeout=1000)
    ex.update_parameters(**executor_parameters(state.slurm, f"fgbench-{state.tag}"))
    job = PointJob(str(state.dir))
    try:
        jobs = ex.map_array(job, list(indices))
    except Exception as err:  # noqa: BLE001 - sbatch's own message says what is wrong
        text = str(err).strip().splitlines()
        raise UserError(f"sweep {state.tag}: sbatch refused the job array: {text[-1] if text else err}") from None
    return [str(j.job_id) for j in jobs]


# ------------------------------------------------------------------------------------ query


@dataclass
class JobState:
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, ... or "?"
    reason: str = ""
    restarts: int = 0
    exit_code: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def scheduler_state(self) -> SchedulerState:
        """What the backend protocol says of the job (see :func:`fgbench.sweeps.state.point_status`)."""
        return SchedulerState(self.state, self.text(), self.active, self.state == "RUNNING",
                              self.state in DIED_STATES)

    def text(self) -> str:
        if self.state == "?":
            # e.g. an array task cancelled before it started, on a cluster without accounting
            return "not queued (no scheduler record)"
        out = self.state
        if self.restarts:
            out += f", requeued {self.restarts}x"
        if self.reason and self.reason not in ("None", "(null)") and self.state != "RUNNING":
            out += f" ({self.reason})"
        elif self.state in ("FAILED", "NODE_FAIL", "OUT_OF_MEMORY") and self.exit_code:
            out += f" (exit {self.exit_code})"
        return out


def _expand_tasks(spec: str) -> list[str]:
    """``3-5%2`` / ``1,4`` / ``7`` -> the task ids."""
    spec = spec.split("%", 1)[0]
    out: list[str] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            step = 1
            if ":" in b:
                b, s = b.split(":", 1)
                step = int(s)
            out += [str(i) for i in range(int(a), int(b) + 1, step)]
        elif part:
            out.append(part)
    return out


def parse_scontrol(text: str) -> dict[str, JobState]:
    """``scontrol -o show job`` lines -> job id (``A_i`` for array tasks) -> state."""
    out: dict[str, JobState] = {}
    for line in text.splitlines():
        fields: dict[str, str] = {m.group(1): m.group(2) for m in re.finditer(r"(\S+?)=(\S*)", line)}
        if "JobId" not in fields:
            continue
        st = JobState(fields.get("JobState", "?"), fields.get("Reason", ""), int(fields.get("Restarts", "0") or 0),
                      fields.get("ExitCode", ""))
        array_id, task = fields.get("ArrayJobId"), fields.get("ArrayTaskId")
        if array_id and task and task != "N/A":
            for t in _expand_tasks(task):
                out[f"{array_id}_{t}"] = st
        else:
            out[fields["JobId"]] = st
    return out


def query(job_ids: Sequence[str], timeout_s: float = 20.0) -> dict[str, JobState]:
    """The scheduler's state of each job id (``?`` where no one can say)."""
    ids = [j for j in job_ids if j]
    if not ids:
        return {}
    found: dict[str, JobState] = {}
    if shutil.which("scontrol"):
        for array_id in sorted({j.split("_", 1)[0] for j in ids}):
            try:
                res = subprocess.run(["scontrol", "-o", "show", "job", array_id], capture_output=True, text=True,
                                     timeout=timeout_s)
            except (OSError, subprocess.SubprocessError):
                continue
            if res.returncode == 0:
                found.update(parse_scontrol(res.stdout))
    missing = [j for j in ids if j not in found]
    if missing and shutil.which("sacct"):
        try:
            res = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j", ",".join(missing)],
                                 capture_output=True, text=True, timeout=timeout_s)
            for line in res.stdout.splitlines() if res.returncode == 0 else []:
                parts = line.split("|")
                if len(parts) >= 3 and parts[0] in missing:
                    found[parts[0]] = JobState(parts[1].split()[0], "", 0, parts[2])
        except (OSError, subprocess.SubprocessError):
            pass
    return {j: found.get(j, JobState("?")) for j in ids}


def cancel(job_ids: Sequence[str]) -> None:
    ids = [j for j in job_ids if j]
    if not ids:
        return
    res = subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise UserError(f"scancel {' '.join(ids)}: {res.stderr.strip() or 'failed'}")


# --------------------------------------------------------------------------- a sweep's jobs


class SlurmBackend:
    name = "slurm"
    scheduler = "SLURM"
    runs_here = False

    def configure(self, spec: Any, cli: dict[str, Any], source: str) -> dict[str, Any] | None:
        return resolve_slurm(spec, cli, source)

    def unavailable(self) -> str | None:
        return available()

    def submit(self, state: Any, options: SubmitOptions) -> Submitted:
        try:
            submitted = submit_points(state, retry_failed=options.retry_failed)
        except BaseException:
            if options.fresh:
                import shutil

                shutil.rmtree(state.dir, ignore_errors=True)  # nothing ran: leave nothing behind
            raise
        if not submitted:
            return Submitted(False, 0, [], "nothing to submit (every point is finished or still queued)")
        ids = [p.job_id for p in state.points if p.index in submitted]
        array = ids[0].split("_", 1)[0] if ids else "?"
        return Submitted(False, 0, submitted, f"submitted {len(submitted)} point(s) as SLURM job array {array} "
                         f"(at most {state.slurm['max_parallel']} at once)")

    def poll(self, state: Any) -> dict[int, SchedulerState]:
        sched = query([p.job_id for p in state.points if p.job_id])
        out = {}
        for p in state.points:
            js = sched.get(p.job_id) if p.job_id else None
            if js is not None:
                out[p.index] = js.scheduler_state()
        return out

    def cancel(self, state: Any) -> str:
        """``scancel`` the points' jobs that are queued or running (a running run checkpoints on
        SLURM's SIGTERM)."""
        sched = query([p.job_id for p in state.points if p.job_id])
        ids = [p.job_id for p in state.points if p.job_id and sched[p.job_id].active]
        if not ids:
            return "no SLURM job of this sweep is queued or running"
        cancel(ids)
        return f"cancelled {len(ids)} SLURM job(s): {', '.join(ids)}"

    def scheduler_states(self, runs_root: str | os.PathLike[str]) -> dict[str, str]:
        """Run directory -> the SLURM state of its point's job, for every SLURM sweep under the
        runs root (what the TUI's Runs pane shows next to fgbench's status). One ``scontrol`` per
        array."""
        if available() is not None:
            return {}
        by_job: dict[str, str] = {}
        for state in list_sweeps(runs_root):
            if state.launcher != self.name:
                continue
            for p in state.points:
                if p.job_id and p.run_dir:
                    by_job[p.job_id] = str(Path(p.run_dir).resolve())
        if not by_job:
            return {}
        states = query(list(by_job))
        return {run_dir: "SLURM " + states[job].text() for job, run_dir in by_job.items() if job in states}


def resolve_slurm(spec: Any, cli: dict[str, Any], source: str) -> dict[str, Any]:
    """The SLURM settings of a sweep: settings.toml's ``[slurm]``, then what the recipe's
    ``[sweep.slurm]`` wrote, then the command line; validated as one ``SlurmConfig``."""
    from pydantic import ValidationError

    from fgbench import settings
    from fgbench.recipe import SlurmConfig

    merged: dict[str, Any] = {}
    table = settings.load_settings().get("slurm")
    if table is not None:
        if not isinstance(table, dict):
            raise UserError(f"{paths.settings_file()}: slurm: expected a table")
        try:
            merged.update(SlurmConfig.model_validate(table).model_dump(exclude_unset=True))
        except ValidationError as err:
            first = err.errors()[0]
            raise UserError(f"{paths.settings_file()}: slurm.{'.'.join(str(x) for x in first['loc'])}: "
                            f"{first['msg']}") from None
    sbatch = dict(merged.get("sbatch", {}))  # sbatch options add up: settings, then recipe, then --sbatch
    if spec is not None and spec.slurm is not None:
        written = spec.slurm.model_dump(exclude_unset=True)
        sbatch.update(written.get("sbatch", {}))
        merged.update(written)
    sbatch.update(cli.get("sbatch", {}))
    merged.update(cli)
    if sbatch:
        merged["sbatch"] = sbatch
    try:
        return SlurmConfig.model_validate(merged).model_dump(mode="json")
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(f"{source}: sweep.slurm.{'.'.join(str(x) for x in first['loc'])} "
                        f"(with settings.toml and the command line): {first['msg']}") from None


def submit_points(state: Any, *, retry_failed: bool = False) -> list[int]:
    """Submit, as one job array, every point that is neither finished nor queued or running in
    SLURM (failed ones only with ``retry_failed``); returns their indices."""
    with locked(state.dir):
        fresh = SweepState.load_dir(state.dir)
        sched = query([p.job_id for p in fresh.points if p.job_id])
        todo = []
        for p in fresh.points:
            js = sched.get(p.job_id) if p.job_id else None
            if point_done(p) or (js is not None and js.active):
                continue
            status = point_status(p, js.scheduler_state() if js is not None else None)
            if status == FAILED and not retry_failed:
                continue
            todo.append(p.index)
        if todo:
            ids = submit(fresh, todo)
            for i, job_id in zip(todo, ids):
                p = fresh.points[i]
                if p.job_id:
                    p.previous_job_ids.append(p.job_id)
                p.job_id = job_id
                if p.status not in (PENDING, INTERRUPTED):
                    p.status = INTERRUPTED if p.run_dir else PENDING
            fresh.save()
    state.points = fresh.points
    return todo


# -------------------------------------------------------------------------------- the job


class PointJob:
    """What one array task runs on its node: the point's ``fgbench run`` (see the module docstring)."""

    def __init__(self, sweep_dir: str):
        self.sweep_dir = sweep_dir
        self._proc: subprocess.Popen | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"sweep_dir": self.sweep_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.sweep_dir = state["sweep_dir"]
        self._proc = None

    def __call__(self, index: int) -> int:
        env = _job_env()
        sweep_dir = Path(self.sweep_dir)
        if env["node"] == 0:
            with locked(sweep_dir):
                state = SweepState.load_dir(sweep_dir)
                point = state.points[index]
                if point_done(point):
                    return 0  # a requeue or a resubmission of a point that already finished
                try:
                    ensure_trial(state, point)
                except UserError as err:
                    point.status = FAILED
                    point.notes.append(str(err))
                    state.save()
                    raise
                cmd = point_command(point, state, [sys.executable, "-m", "fgbench"], _extra_args(state))
                point.status = RUNNING
                point.exit_code = None
                point.job_id = env["job_id"] or point.job_id
                state.save()
            if env["nodes"] > 1:
                _share_command(sweep_dir, index, cmd)
        else:
            cmd = _wait_for_command(sweep_dir, index)
        if env["nodes"] > 1:
            cmd = [*cmd, "--nnodes", str(env["nodes"]), "--node-rank", str(env["node"]),
                   "--rdzv-endpoint", f"{env['master']}:{env['port']}"]
        print(f"fgbench sweep job: {' '.join(cmd)}", flush=True)
        # SIGUSR2 is submitit's (checkpoint, then requeue); the run must not die of it
        self._proc = subprocess.Popen(cmd, preexec_fn=_ignore_usr2)
        while self._proc.poll() is None:
            time.sleep(0.5)  # poll, not wait(): checkpoint() may run in a signal handler meanwhile
        code = self._proc.returncode
        if env["node"] != 0:
            return code
        with locked(sweep_dir):
            state = SweepState.load_dir(sweep_dir)
            point = state.points[index]
            finish_point(state, point, code)
            state.save()
            status = point.status
        if status == FAILED:
            where = f"see {Path(point.run_dir) / LOG_FILE}" if point.run_dir else "; ".join(point.notes[-1:])
            raise RuntimeError(f"point {index + 1} ({point.label}) failed with exit code {code}: {where}")
        return code

    def checkpoint(self, index: int) -> Any:
        """Called by submitit on SIGUSR2 (time limit or preemption): stop the run with a checkpoint,
        then requeue this same job, which resumes it."""
        submitit = _submitit()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
            from fgbench.rundir import pid_alive

            deadline = time.monotonic() + 60
            while pid_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        return submitit.helpers.DelayedSubmission(PointJob(self.sweep_dir), index)


def _ignore_usr2() -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _extra_args(state: Any) -> list[str]:
    extra = list(state.run_args or [])
    gpus = int((state.slurm or {}).get("gpus_per_run") or 0)
    if gpus > 1 and "--nproc" not in extra:
        extra += ["--nproc", str(gpus)]
    return extra


def _job_env() -> dict[str, Any]:
    """This task's place in its job, from SLURM's environment (also works outside submitit)."""
    e = os.environ
    nodes = int(e.get("SLURM_JOB_NUM_NODES", e.get("SLURM_NNODES", "1")) or 1)
    node = int(e.get("SLURM_NODEID", "0") or 0)
    array_id, task = e.get("SLURM_ARRAY_JOB_ID"), e.get("SLURM_ARRAY_TASK_ID")
    job_id = f"{array_id}_{task}" if array_id and task else e.get("SLURM_JOB_ID")
    master = "127.0.0.1"
    if nodes > 1:
        out = subprocess.run(["scontrol", "show", "hostnames", e.get("SLURM_JOB_NODELIST", "")],
                             capture_output=True, text=True)
        hosts = out.stdout.split()
        master = hosts[0] if hosts else master
    port = 20000 + int(e.get("SLURM_JOB_ID", "0") or 0) % 20000
    return {"nodes": nodes, "node": node, "job_id": job_id, "master": master, "port": port,
            "restart": int(e.get("SLURM_RESTART_COUNT", "0") or 0)}


def _command_file(sweep_dir: Path, index: int) -> Path:
    restart = os.environ.get("SLURM_RESTART_COUNT", "0") or "0"
    return sweep_dir / "jobs" / f"{index + 1:02d}-restart{restart}.json"


def _share_command(sweep_dir: Path, index: int, cmd: list[str]) -> None:
    from fgbench.atomic import atomic_write_text

    atomic_write_text(_command_file(sweep_dir, index), json.dumps(cmd))


def _wait_for_command(sweep_dir: Path, index: int, timeout_s: float = 600) -> list[str]:
    f = _command_file(sweep_dir, index)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            time.sleep(1)
    raise RuntimeError(f"{f}: node 0 did not say which command to run within {timeout_s:.0f} s")
