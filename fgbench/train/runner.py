"""``fgbench run``: from a :class:`~fgbench.rundir.request.RunRequest` to a finished (or cleanly
stopped) run directory.

Three typed owners, in order (a user's mistake never leaves a half-made run behind):

1. the **request** (:mod:`fgbench.rundir.request`): how the run was asked, built by the CLI;
2. the **plan** (:mod:`fgbench.train.plan`): recipe, device, dataset, stages, model and resume
   point, built once; everything up to here raises ``UserError`` / ``RecipeError``, which the CLI
   prints as one line with exit code 2, and no file of the run exists;
3. the **session** (:mod:`fgbench.rundir.session`): the run directory, fresh or adopted by one
   rule, locked, with the disk reserve, the log tee and the signal handlers; bad input found
   while it is open (a ``device`` loader that cannot stack the images, an undecodable image
   without ``data.skip_corrupt``) discards a fresh directory. A resumed run's is never removed.

:func:`train` (``plan``, ``session``) runs the trainer and records every outcome as a
``run_finished`` event and in ``summary.json``: ``completed`` (exit 0), ``interrupted`` by
SIGINT/SIGTERM after the current step and a ``last.pt`` checkpoint (exit 130), ``failed`` with the
error and traceback (exit 1), or ``failed`` because the disk is full (exit 1, one line naming the
file and the free space). Bad data found while training (an undecodable or missing image) is exit 2
like any bad input: before any epoch ended the session discards a fresh run; a run with results
(``RunDir.has_results``) is never removed, it ends ``failed`` with its checkpoints and the one line
says how to ``--resume`` it once the file is fixed.

One process trains in a run directory at a time (the session's lock): a second ``fgbench run
--run-dir DIR`` or ``--resume`` of the same run exits 2 naming the holder.

``--nproc N`` / ``--nnodes`` run the same code in N processes through torchrun
(``fgbench.train.distributed``): this process becomes the launcher (plans, holds the session,
starts torchrun, returns rank 0's exit code) and each worker plans exactly as a single process
does, agrees with the others that planning succeeded, and trains its shard; only rank 0 writes
the run directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fgbench.atomic import DiskFullError, disk_full_cause, free_text
from fgbench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BadImage, UserError
from fgbench.textsafe import safe, safe_lines
from fgbench.recipe import Recipe, atomic_write_text, dumps_recipe, load_recipe
from fgbench.rundir import events, layout, procs
from fgbench.rundir.request import RunRequest
from fgbench.rundir.session import RunSession
from fgbench.rundir.summary import Summary
from fgbench.train.plan import RunPlan, build_plan, resume_dir


def run_command(request: RunRequest, recipe: Recipe | None = None) -> int:
    """``fgbench run``: the exit code. ``recipe``: the request's recipe, when the CLI already loaded
    it (before importing torch, so that a bad recipe fails fast)."""
    from fgbench.train import distributed

    request.check()
    world = distributed.world_from_env()
    if world is not None:
        return _run_worker(request, world, recipe)
    try:
        if distributed.wants_launch(request):
            return _launch(request, recipe)
        if request.resume:
            with RunSession.adopt(resume_dir(request)) as session:  # locked before its status is trusted
                try:
                    plan = build_plan(request, resume=session.run_dir)
                except BadImage as err:  # found while the loader was built (cached): nothing was recorded
                    raise UserError(_kept_line(err, session.run_dir, recorded=False)) from None
                return train(plan, session)
        plan = build_plan(request, recipe=recipe)
        with RunSession.place(run_dir=request.run_dir, runs_root=request.runs_root, name=plan.recipe.name) as session:
            session.lock()
            return train(plan, session)
    except DiskFullError as err:  # not even the lock file fits: not bad input, one line, exit 1
        print(safe_lines(str(err)), file=sys.stderr, flush=True)
        return EXIT_FAILED


# ----------------------------------------------------------------------------------- torchrun


def _launch(request: RunRequest, recipe: Recipe | None) -> int:
    """``--nproc``/``--nnodes``: plan here (every check), hold the session, run torchrun."""
    from fgbench.train import distributed

    if request.resume:
        with RunSession.adopt(resume_dir(request)) as session:
            build_plan(request, resume=session.run_dir, launcher=True)  # the workers build their own
            return distributed.launch(request, run_dir=session.run_dir)
    plan = build_plan(request, recipe=recipe, launcher=True)
    given = Path(request.run_dir).expanduser().absolute() if request.run_dir else None
    if request.node_rank != 0:  # other nodes never write the run directory
        del plan
        return distributed.launch(request, run_dir=given)
    with RunSession.place(run_dir=given, runs_root=request.runs_root, name=plan.recipe.name) as session:
        session.lock()
        session.run_dir = session.run_dir.absolute()
        del plan  # the workers build their own model and data
        code = distributed.launch(request, run_dir=session.run_dir)
        if session.origin == "created" and session.run_dir.is_dir() and layout.RunDir(session.run_dir).is_fresh():
            session.discard()  # the workers stopped before writing anything (bad input)
        return code


def _run_worker(request: RunRequest, world, recipe: Recipe | None) -> int:
    """One torchrun process: returns its exit code to torchrun (see ``distributed.quiet_code``)."""
    from fgbench.train import distributed

    # torchrun started us with SIGINT ignored (see distributed.launch); until training installs its
    # own handler, Ctrl-C means "stop now" as in any Python program.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    distributed.register_worker(world)
    code, symmetric = EXIT_FAILED, False
    try:
        code, symmetric = _worker(request, world, recipe)
    except UserError as err:  # found after planning (bad data), possibly by this process only
        print(safe_lines(str(err)), file=sys.stderr)
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        distributed.record_exit(world, code)
    return distributed.quiet_code(code, symmetric)


def _worker(request: RunRequest, world, recipe: Recipe | None) -> tuple[int, bool]:
    """(exit code, whether every process ends the same way)."""
    from fgbench.train import distributed

    d = distributed.Dist(world).start()
    session: RunSession | None = None
    try:
        error: UserError | None = None
        try:
            if request.resume:
                session = RunSession.adopt(resume_dir(request), check=world.is_main)
                plan = build_plan(request, resume=session.run_dir, world=world)
            else:
                plan = build_plan(request, recipe=recipe, world=world)
                if world.is_main and request.run_dir:
                    session = RunSession.place(run_dir=request.run_dir, runs_root=None, name=plan.recipe.name,
                                               create=False)
        except UserError as err:
            error = err
        failed = d.failed_ranks(error is not None)
        if failed:
            if error is not None and world.rank == failed[0]:
                print(safe_lines(str(error)), file=sys.stderr)  # one line for the job, from the lowest failing rank
            return EXIT_BAD_INPUT, True
        d.device = plan.device
        if session is None:
            if world.is_main:
                session = RunSession.place(run_dir=None, runs_root=request.runs_root, name=plan.recipe.name)
            else:  # never written by this process
                where = Path(request.run_dir).expanduser() if request.run_dir else Path(f"/nonexistent/fgbench-rank-{world.rank}")
                session = RunSession(where, "created", writes=False)
        session.create()
        if world.is_main and session.fresh:
            session.lock()
        with session:
            code = train(plan, session, dist=d)
        return code, code == EXIT_OK or (code == EXIT_INTERRUPTED and d.stopped)
    finally:
        if session is not None:
            session.unlock()
        d.close()


# ---------------------------------------------------------------------------------------- run


def train(plan: RunPlan, session: RunSession, *, dist: Any = None) -> int:
    """Train ``plan`` in ``session``'s directory; the exit code. ``dist``: the DDP job, where only
    rank 0 (``session.writes``) writes files, prints and reports. A ``UserError`` (bad data found
    mid-run) is raised after it is recorded, for the session to discard a fresh directory."""
    from fgbench.train.progress import Progress
    from fgbench.train.trainer import RunContext, StopFlag, Trainer

    main, run_dir = session.writes, session.run_dir
    metrics = None
    try:
        if main:
            _record_start(plan, session, dist)
            session.open_log()
            metrics = events.MetricsWriter(run_dir / events.METRICS_FILE)
    except OSError as err:
        if disk_full_cause(err) is None:
            raise
        # the disk is full before the run could record anything: leave no half-made run behind
        session.close()
        print(_disk_full_line(err, run_dir), file=sys.stderr, flush=True)
        if session.fresh:
            session.discard()
        return EXIT_FAILED
    stop = StopFlag()
    writer = _event_writer(plan, session, stop, metrics)
    progress = Progress(plan.request.progress if main else "none", stream=session.terminal[0])
    session.watch_signals(stop_on_signal(stop, quiet=not main, progress=progress))
    resume = plan.resume
    ctx = RunContext(recipe=plan.recipe, run_dir=run_dir, run_id=run_dir.name, device=plan.device,
                     splits=plan.splits, model=plan.model, model_report=list(plan.report), writer=writer,
                     progress=progress, stop=stop, resume=resume.last if resume else None,
                     resume_best=resume.best if resume else None, dist=dist, stages=plan.stages,
                     channels_last=plan.channels_last, precision=plan.precision)
    trainer = None
    try:
        if main:
            print(f"run directory: {safe(str(run_dir))}", flush=True)
            for line in plan.report:
                if line.startswith("data: "):  # which folder it tests on (also a log event)
                    print(safe(line), flush=True)
        trainer = Trainer(ctx)
        progress.total_steps = trainer.total_steps
        status = trainer.run()
        progress.close()
        return _finish(trainer, status, writer, stop, session, dist)
    except UserError as err:
        progress.close()
        if main and session.fresh and not layout.RunDir(run_dir).has_results():
            raise  # bad input before any epoch ended (an undecodable image too): the session discards the run
        # a run with results is never deleted: it ends failed, its checkpoints kept, and says how to go on
        line = str(err)
        if main and layout.RunDir(run_dir).last_ckpt.is_file():
            line = _kept_line(err, run_dir)
        _finish_failed(writer, trainer, line, None, EXIT_BAD_INPUT)
        if line == str(err):
            raise
        raise UserError(line) from None
    except KeyboardInterrupt:
        # A second Ctrl-C while stopping: leave at once, the last checkpoint stays valid.
        progress.close()
        writer.emit("run_finished", status="interrupted", summary=_safe_summary(trainer, "interrupted"),
                    exit_code=EXIT_INTERRUPTED, error="interrupted twice; stopped without a new checkpoint")
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - a crash is recorded, then reported with its traceback
        progress.close()
        if disk_full_cause(err) is not None:
            # One line, no traceback; earlier checkpoints are untouched. The reserve makes room
            # for the summary and the closing event, so the run reads as failed.
            line = _disk_full_line(err, run_dir)
            print(safe(line), file=session.terminal[1], flush=True)
            session.release_reserve()
            with contextlib.suppress(OSError):
                _finish_failed(writer, trainer, line, None, EXIT_FAILED)
            return EXIT_FAILED
        tb = traceback.format_exc()
        from fgbench.train.memory import is_out_of_memory, oom_line

        if is_out_of_memory(err):  # sizes the schema allows but memory does not: one line, the traceback kept in the events
            st = trainer.stage if trainer is not None else None
            line = oom_line(err, plan.recipe, plan.device, st.batch_size if st is not None else None,
                            st.train_size if st is not None else None)
            print(line, file=session.terminal[1], flush=True)
            _finish_failed(writer, trainer, line, tb, EXIT_FAILED)
            return EXIT_FAILED
        print(safe_lines(tb), file=sys.stderr, end="")  # an error may quote a file name from the data set
        _finish_failed(writer, trainer, f"{type(err).__name__}: {err}", tb, EXIT_FAILED)
        return EXIT_FAILED
    finally:
        session.close()  # signals, reserve and streams first: the writer's last flush may fail
        try:
            writer.close()
        except OSError as err:  # a full disk may refuse the last flush; the outcome is already told
            if disk_full_cause(err) is None:
                raise


def _event_writer(plan: RunPlan, session: RunSession, stop: Any, writer: events.MetricsWriter | None) -> Any:
    """Where the trainer's events go: ``metrics.jsonl`` (``writer``), and the trackers and a search
    trial's pruner (``fgbench.tracking``) see every one; DDP ranks other than 0 write nothing."""
    if writer is None:
        from fgbench.train.distributed import NullWriter

        return NullWriter()
    from fgbench.tracking import EventFanout, run_listeners

    def warn(message: str) -> None:  # a tracker that fails says so in the run's log
        writer.emit("log", level="warning", message=message)

    listeners = run_listeners(plan.recipe, session.run_dir, sweep_tag=plan.request.sweep_tag,
                              trial=plan.request.trial, stop=stop, report=warn)
    return EventFanout(writer, listeners) if listeners else writer


def _finish(trainer: Any, status: str, writer: Any, stop: Any, session: RunSession, dist: Any) -> int:
    """Record how a run that returned from training ended (completed, pruned or interrupted)."""
    if status == "interrupted" and stop.signal == "pruned":
        trainer.status = status = "pruned"  # a search's pruner stopped it (fgbench.sweeps.search)
    result = trainer.write_summary()
    summary = result.to_json()
    if status == "pruned":
        writer.emit("run_finished", status="pruned", summary=summary, exit_code=EXIT_OK, error="pruned by the search")
        return EXIT_OK
    if status == "completed":
        writer.emit("run_finished", status="completed", summary=summary, exit_code=EXIT_OK)
        if session.writes:
            _print_result(result)
        return EXIT_OK
    writer.emit("run_finished", status="interrupted", summary=summary, exit_code=EXIT_INTERRUPTED,
                error=f"stopped by {stop.signal or 'request'}")
    if session.writes:
        more = f" --nproc {dist.world.local_size}" if dist is not None else ""
        at = f" at step {trainer.engine.step}" if trainer.engine is not None else ""
        print(f"interrupted ({stop.signal or 'stop requested'}); checkpoint written{at}. "
              f"Continue with: fgbench run --resume {safe(str(session.run_dir))}{more}", flush=True)
    return EXIT_INTERRUPTED


def _kept_line(err: UserError, run_dir: Path, *, recorded: bool = True) -> str:
    """The one line of a run that met bad input after it had results: kept (failed, or as it was when
    a resume found it before training: ``recorded`` False), and how to go on. An image that vanished
    must come back (the resume checks it trains on the same images); one that does not decode may be
    fixed, or skipped from here on."""
    again = f"fgbench run --resume {run_dir}"
    kept = "the run is kept (failed)" if recorded else "the run is kept as it was"
    if isinstance(err, BadImage) and err.missing:
        return (f"{err.path}: image file missing (deleted or moved while the run trained); {kept}: put it back, "
                f"then continue with: {again}")
    if isinstance(err, BadImage):
        return (f"{err.path}: cannot decode image; {kept}: fix it, then continue with: {again}; "
                f"or continue without such images: {again} --set data.skip_corrupt=true")
    return f"{err}; {kept}: fix that, then continue with: {again}"


def _record_start(plan: RunPlan, session: RunSession, dist: Any) -> None:
    """What a run directory holds before training: a new run's resolved recipe, ``run_info.json``
    and class names; a resumed run's ``run_info.json`` gains this resume."""
    request, run_dir = plan.request, session.run_dir
    ddp_info = {"world_size": dist.size} if dist is not None else {}
    if plan.resume is None:
        atomic_write_text(run_dir / layout.RECIPE_FILE, dumps_recipe(plan.recipe, full=True))
        layout.write_run_info(
            run_dir, argv=list(request.argv), overrides=list(request.overrides),
            source_recipe=str(Path(request.recipe).resolve()) if request.recipe else None,
            **procs.identity(), sweep_tag=request.sweep_tag,
            created=time.time(), cwd=os.getcwd(), **ddp_info,
        )
        layout.write_json(run_dir / layout.CLASSES_FILE, list(plan.splits.class_names))
    else:
        # what a killed session wrote past the checkpoint is trained again: each epoch once in the file
        events.drop_replayed(run_dir / events.METRICS_FILE, step=int(plan.resume.last["step"]),
                             final_done=bool(plan.resume.last.get("final_sizes")))
        info = layout.read_json(run_dir / layout.RUN_INFO_FILE) or {}
        resumes = list(info.get("resumes", []))
        last = plan.resume.last
        resumes.append({"time": time.time(), "argv": list(request.argv), "from_epoch": int(last["epoch"]),
                        "from_step": int(last["step"]), "overrides": list(request.overrides), **ddp_info})
        if request.overrides:  # the run's recipe says what it trains with from here on
            recipe_file = run_dir / layout.RECIPE_FILE
            atomic_write_text(recipe_file, dumps_recipe(load_recipe(recipe_file, list(request.overrides)), full=True))
        layout.write_run_info(run_dir, **procs.identity(), resumes=resumes)


def _disk_full_line(err: BaseException, run_dir: Path) -> str:
    """One line for a full disk: the file (or the run directory) and the free space, made safe to
    print (the run directory's name comes from the user)."""
    if isinstance(err, DiskFullError):
        return safe(str(err))
    cause = disk_full_cause(err)
    where = getattr(cause, "filename", None) or run_dir
    return safe(f"{where}: disk full ({free_text(where)} free)")


def _safe_summary(trainer, status: str) -> dict | None:
    if trainer is None:
        return None
    try:
        trainer.status = status
        return trainer.write_summary().to_json()
    except Exception:  # noqa: BLE001 - the summary must not hide the original error
        return None


def _finish_failed(writer, trainer, error: str, tb: str | None, code: int) -> None:
    summary = _safe_summary(trainer, "failed")
    fields: dict[str, Any] = {"status": "failed", "error": error, "exit_code": code}
    if tb:
        fields["traceback"] = tb
    if summary is not None:
        fields["summary"] = summary
    writer.emit("run_finished", **fields)


def _print_result(s: Summary) -> None:
    """The final lines: each model at its own best epoch, as every table shows it (``top_k`` is
    ``eval.top_k`` capped at the number of classes)."""
    from fgbench.report import plural, selected_epoch_text

    def pct(v):
        return "-" if v is None else f"{v:.2f}%"

    lines = [f"finished {s.run_id}: {plural(s.epochs_done, 'epoch')}, {plural(s.step, 'step')}, "
             f"{s.duration_s or 0:.0f}s"]
    for model in ("raw", "ema"):
        b = s.best.get(model)
        if b:
            lines.append(f"  {model}: {selected_epoch_text(b.epoch, s.select_on)}: val {pct(b.val_top1)}, "
                         f"test {pct(b.test_top1)} (top-{s.top_k} {pct(b.test_topk)})")
    last = s.last
    for model in ("raw", "ema"):
        numbers = last.of(model) if last is not None else None
        if numbers is not None and last is not None:
            lines.append(f"  {model}: last epoch {last.epoch}: test {pct(numbers.test_top1)}")
    for size, v in s.final_test_sizes.items():
        lines.append(f"  test at {size}px: raw {pct(v.get('raw'))}, ema {pct(v.get('ema'))}")
    print(safe_lines("\n".join(lines)), flush=True)  # the run id is a directory's name


def stop_on_signal(stop, *, quiet: bool = False, progress=None) -> Callable[[str], None]:
    """What SIGINT/SIGTERM mean to a run (the session's signal callback): the first asks ``stop`` to
    finish the current step and checkpoint; a second SIGINT leaves at once (KeyboardInterrupt)."""
    def on_signal(name: str) -> None:
        if stop.requested and name == "SIGINT":
            raise KeyboardInterrupt
        stop.requested = True
        stop.signal = name
        if quiet:  # DDP ranks other than 0: rank 0 says it once
            return
        text = f"{name}: finishing the current step, then writing a checkpoint (Ctrl-C again to leave at once)"
        try:
            if progress is not None:
                progress.notice(text)  # erases the bar (and the terminal's ^C) instead of leaving it stale
            else:
                sys.stderr.write(f"\n{text}\n")
        except Exception:  # noqa: BLE001
            pass

    return on_signal
