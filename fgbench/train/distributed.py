"""Multi-process training: the torchrun launcher, the process group, and DDP's helpers.

``fgbench run RECIPE --nproc N`` (engine zone; imports torch) works in two roles:

* **The launcher** (the process the user started). It does every check a single-process run does
  (recipe, dataset index, model build, batch geometry, device count) so that bad input fails
  there as one line with exit code 2 and nothing on disk, creates the run directory, then runs
  ``python -m torch.distributed.run --nproc-per-node N ... -m fgbench run ... --run-dir DIR``
  (an argument list, no shell) and waits. Its exit code is rank 0's (0/1/2/130).
* **The workers** (``WORLD_SIZE > 1`` in the environment, set by torchrun). Each builds the same
  model from the same seed, wraps it in DistributedDataParallel, trains on its shard of every
  global batch and evaluates its shard of every split. Rank 0 alone writes the run directory.

Decisions and trade-offs:

* **Signals go to the workers, not through torchrun.** torchrun is started with SIGINT ignored
  (and told to handle only SIGTERM/SIGHUP/SIGQUIT, ``--signals-to-handle``), so a Ctrl-C in the terminal reaches only the
  launcher, which sends exactly one SIGINT per signal it receives to each of its node's workers
  (they register their pids in a private control directory). The workers then behave as a single
  run does: finish the step, agree, checkpoint, exit 130; a second Ctrl-C leaves at once. Letting
  torchrun forward the signal instead would deliver it twice when the whole terminal group gets
  it (the second one means "leave now"), and torchrun SIGKILLs workers that take longer than its
  shutdown timeout (which we raise to 120 s, ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT``, in case a
  signal reaches it by another way). A signal that arrives before the workers have registered
  is turned into SIGTERM to torchrun, which then stops them all.
* **Quiet ends.** Each worker writes its real exit code to the control directory. When the end
  is the same on every process (completed, an agreed stop, bad input found by every process)
  the worker exits 0 to torchrun, so torchrun does not print its "ChildFailedError" report for a
  normal Ctrl-C; a crash keeps its non-zero code so that torchrun stops the other workers.
  Started by plain ``torchrun`` (no launcher), the workers exit with their real codes.
* **Stopping together.** A signal may reach the processes between different steps. After every
  step each process starts a non-blocking all-reduce (on a separate CPU/gloo group) of "was a
  stop requested" and reads the previous step's result: all of them stop after the same step
  (one step later than a single process would), at no cost to the step itself. At the end of
  each epoch the flag is agreed on with a blocking all-reduce.
* **Bad input on some processes.** After preparing (recipe, data, model) the processes agree on
  who failed; the lowest failing rank prints its one-line error, the others exit quietly with 2.
* **Batch sizes.** ``distributed.global_batch = true``: ``data.batch_size`` (and each stage's) is
  the global batch and must divide by the world size; otherwise it is per process and the global
  batch is N times larger. The trainer resolves its stages (steps per epoch, schedule) with the
  global batch, so a DDP run and a single-process run with the same global batch take the same
  steps on the same images.
* **SyncBatchNorm.** ``torch.nn.SyncBatchNorm`` only runs on accelerators; on CPU (gloo) the
  BatchNorm layers become :class:`GlooSyncBatchNorm`, our own synchronised BN (two-pass
  statistics in float64 over the global batch, the matching backward with one all-reduce). Both
  keep BN's state-dict keys, so checkpoints load into plain models.
* DDP is built with ``find_unused_parameters=False`` (every trainable parameter must take part
  in the loss, which holds for fgbench's models) and the default ``broadcast_buffers=True``, so
  running statistics that are not synchronised come from rank 0. Evaluation runs the bare model,
  never the DDP wrapper (a forward through DDP is a collective, and shards differ in size), after
  broadcasting rank 0's buffers.
* Multi-node: ``--nnodes M --node-rank R --rdzv-endpoint HOST:PORT`` become torchrun's static
  rendezvous (node 0 hosts global rank 0, hence the run directory). Resuming on several nodes
  reads the checkpoint on every node: keep the run directory on a shared file system.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn

from fgbench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UserError
from fgbench.rundir.request import RunRequest

CONTROL_ENV = "FGBENCH_DDP_CONTROL"  # the launcher's control directory (worker pids and exit codes)
SHUTDOWN_TIMEOUT_S = "120"


# -------------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    local_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env(env: Mapping[str, str] | None = None) -> World | None:
    """The torchrun world this process belongs to, or None outside torchrun (or a world of one)."""
    env = os.environ if env is None else env
    size = int(env.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return None
    local_size = int(env.get("LOCAL_WORLD_SIZE", str(size)) or size)
    return World(int(env.get("RANK", "0")), size, int(env.get("LOCAL_RANK", "0")), local_size)


def parse_nnodes(value: Any) -> int:
    try:
        n = int(str(value))
    except ValueError:
        raise UserError(f"--nnodes: expected a number of nodes such as 2, not {value!r} "
                        "(elastic ranges are not supported)") from None
    if n < 1:
        raise UserError(f"--nnodes: must be at least 1, not {n}")
    return n


def wants_launch(args: RunRequest) -> bool:
    return args.nproc > 1 or parse_nnodes(args.nnodes) > 1


def device_for(name: str, world: World | None) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` when CUDA is used, else the CPU."""
    use_cuda = name == "cuda" or (name == "auto" and torch.cuda.is_available())
    if not use_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("runtime.device: \"cuda\" was asked for but no CUDA device is available (use auto or cpu)")
    index = world.local_rank if world is not None else 0
    if index >= torch.cuda.device_count():
        raise UserError(f"--nproc: process {index} of this node has no GPU "
                        f"({torch.cuda.device_count()} CUDA device(s) visible)")
    return torch.device("cuda", index)


def check_launch(args: RunRequest, recipe) -> int:
    """Checks the launcher can make before starting anything; returns the world size."""
    if args.nproc < 1:
        raise UserError(f"--nproc: must be at least 1, not {args.nproc}")
    nnodes = parse_nnodes(args.nnodes)
    if nnodes > 1 and not args.rdzv_endpoint:
        raise UserError("--nnodes: several nodes need --rdzv-endpoint HOST:PORT (the address of node 0)")
    if not 0 <= args.node_rank < nnodes:
        raise UserError(f"--node-rank: must be between 0 and {nnodes - 1}, not {args.node_rank}")
    name = recipe.runtime.device
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("runtime.device: \"cuda\" was asked for but no CUDA device is available (use auto or cpu)")
        if args.nproc > torch.cuda.device_count():
            raise UserError(f"--nproc {args.nproc}: only {torch.cuda.device_count()} CUDA device(s) are visible "
                            "(one process per GPU)")
    return args.nproc * nnodes


# ------------------------------------------------------------------------------- batch sizes


def stage_batch_sizes(recipe) -> list[tuple[str, int]]:
    """(field, batch size) of the first stage and of every later stage that sets its own."""
    out = [("data.batch_size", recipe.data.batch_size)]
    for i, st in enumerate(recipe.stages):
        if st.batch_size:
            out.append((f"stages[{i}].batch_size", st.batch_size))
    return out


def global_batch_recipe(recipe, world_size: int):
    """The recipe with every batch size made global (what the trainer's stages are resolved from).
    With ``distributed.global_batch`` they already are; otherwise they are multiplied by the world size."""
    if recipe.distributed.global_batch or world_size == 1:
        return recipe
    data = recipe.data.model_copy(update={"batch_size": recipe.data.batch_size * world_size})
    stages = [st.model_copy(update={"batch_size": st.batch_size * world_size}) if st.batch_size else st
              for st in recipe.stages]
    return recipe.model_copy(update={"data": data, "stages": stages})


def check_batches(recipe, n_train: int, world_size: int) -> None:
    """The batch geometry DDP needs: global batches that divide by the world size, and no step in
    which some process would get no image (a last partial batch smaller than the world size)."""
    if world_size == 1:
        return
    if recipe.distributed.global_batch:
        for field, bs in stage_batch_sizes(recipe):
            if bs % world_size:
                raise UserError(f"{field}: {bs} is not divisible by the {world_size} processes "
                                "(distributed.global_batch = true makes it the global batch)")
    if recipe.data.drop_last:
        return
    for field, bs in stage_batch_sizes(global_batch_recipe(recipe, world_size)):
        rest = n_train % bs
        if 0 < rest < world_size:
            raise UserError(f"{field}: the last batch of each epoch would have {rest} image(s) for {world_size} "
                            "processes; set data.drop_last = true or change the batch size")


# ---------------------------------------------------------------------------- the process group


class NullWriter:
    """What ranks other than 0 get instead of a ``MetricsWriter``: they never write events."""

    def emit(self, kind: str, /, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


class Dist:
    """This process's place in the job and the few collectives the trainer uses."""

    def __init__(self, world: World, device: torch.device | None = None):
        self.world = world
        self.rank, self.size = world.rank, world.size
        self.device = device or torch.device("cpu")  # set by the runner once the recipe is read
        self.ctl: Any = None  # a gloo group for CPU-side agreement (stop flags, failures, RNG states)
        self._stop_work: Any = None
        self._stop_buf: torch.Tensor | None = None
        self._stopped = False

    def start(self) -> "Dist":
        """Join the job. Done before the recipe is read, so that even a bad recipe can be agreed
        on; the backend therefore serves both devices where CUDA exists (NCCL for CUDA tensors,
        gloo for CPU ones)."""
        if not dist.is_initialized():
            dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
        self.ctl = dist.new_group(backend="gloo")
        return self

    @property
    def stopped(self) -> bool:
        """True once a stop has been agreed on (every process is stopping at the same point)."""
        return self._stopped

    def close(self) -> None:
        if self._stop_work is not None:
            try:
                self._stop_work.wait()
            except Exception:  # noqa: BLE001 - a peer is gone; nothing left to agree on
                pass
            self._stop_work = None
        if dist.is_initialized():
            dist.destroy_process_group()

    # -- collectives ---------------------------------------------------------------------

    def sum_(self, t: torch.Tensor) -> None:
        """In-place sum over every process (a device tensor on the training device)."""
        dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def failed_ranks(self, failed: bool) -> list[int]:
        flags = torch.zeros(self.size, dtype=torch.int32)
        flags[self.rank] = int(failed)
        dist.all_reduce(flags, op=dist.ReduceOp.SUM, group=self.ctl)
        return [r for r, f in enumerate(flags.tolist()) if f]

    def gather_objects(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj, group=self.ctl)
        return out

    def broadcast_buffers(self, module: nn.Module) -> None:
        for b in module.buffers():
            dist.broadcast(b, src=0)

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=ids, output_device=ids[0] if ids else None)

    def stop_agreed(self, flag, *, wait: bool = False) -> bool:
        """Whether every process is to stop now. Called by all of them at the same points: after
        each step (``wait=False``: the answer for the previous step's flags, so the step never
        waits on the network) and at the end of each epoch (``wait=True``: agreed at once)."""
        if self._stopped:
            return True
        if self._stop_work is not None and self._stop_buf is not None:  # set together, below
            self._stop_work.wait()
            self._stop_work = None
            if int(self._stop_buf.item()) > 0:
                self._stopped = True
                return True
        buf = torch.tensor([1 if flag.requested else 0], dtype=torch.int32)
        if wait:
            dist.all_reduce(buf, op=dist.ReduceOp.MAX, group=self.ctl)
            self._stopped = int(buf.item()) > 0
            return self._stopped
        self._stop_buf = buf
        self._stop_work = dist.all_reduce(buf, op=dist.ReduceOp.MAX, group=self.ctl, async_op=True)
        return False


# ------------------------------------------------------------------------------- SyncBatchNorm


class _SyncBNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum, group):
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        shape = [1, c] + [1] * (x.dim() - 2)
        xd = x.double()
        buf = torch.cat([xd.sum(dims), xd.new_tensor([x.numel() // c])])
        dist.all_reduce(buf, group=group)  # sum and count over the global batch
        count = buf[c]
        mean = buf[:c] / count
        xc = xd - mean.view(shape)
        sq = (xc * xc).sum(dims)
        dist.all_reduce(sq, group=group)  # second pass: the centred sum of squares
        var = sq / count
        invstd = torch.rsqrt(var + eps)
        if running_mean is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_((mean * momentum).to(running_mean.dtype))
                unbiased = var * count / (count - 1).clamp(min=1)
                running_var.mul_(1 - momentum).add_((unbiased * momentum).to(running_var.dtype))
        y = xc * invstd.view(shape)
        if weight is not None:
            y = y * weight.double().view(shape) + bias.double().view(shape)
        ctx.save_for_backward(xc, invstd, weight)
        ctx.group, ctx.count, ctx.shape, ctx.dims = group, count, shape, dims
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        xc, invstd, weight = ctx.saved_tensors
        shape, dims, c = ctx.shape, ctx.dims, xc.shape[1]
        g = grad.double()
        sum_dy = g.sum(dims)
        sum_dy_xc = (g * xc).sum(dims)
        # Parameter gradients are this process's (DDP averages them); the input gradient needs the
        # global sums, since every image's statistics came from the whole batch.
        grad_weight = (sum_dy_xc * invstd).to(weight.dtype) if weight is not None else None
        grad_bias = sum_dy.to(weight.dtype) if weight is not None else None
        both = torch.cat([sum_dy, sum_dy_xc])
        dist.all_reduce(both, group=ctx.group)
        mean_dy = (both[:c] / ctx.count).view(shape)
        mean_dy_xc = (both[c:] / ctx.count).view(shape)
        inv = invstd.view(shape)
        gx = (g - mean_dy - xc * inv * inv * mean_dy_xc) * inv
        if weight is not None:
            gx = gx * weight.double().view(shape)
        return gx.to(grad.dtype), grad_weight, grad_bias, None, None, None, None, None


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of a CPU (gloo) DDP job; plain BatchNorm otherwise.
    Same parameters, buffers and state-dict keys as ``BatchNorm{1,2,3}d``."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        tracked = self.track_running_stats
        return _SyncBNFunction.apply(input, self.weight, self.bias, self.running_mean if tracked else None,
                                     self.running_var if tracked else None, self.eps, factor, None)


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm -> synchronised BatchNorm: torch's on accelerators, ours on CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert(module: nn.Module) -> nn.Module:
        out = module
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
                module, (nn.SyncBatchNorm, GlooSyncBatchNorm)):
            out = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)
            if module.affine:
                with torch.no_grad():
                    out.weight = module.weight
                    out.bias = module.bias
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
        for name, child in module.named_children():
            out.add_module(name, convert(child))
        return out

    return convert(model)


# ---------------------------------------------------------------------------------- launcher


def control_dir() -> Path | None:
    v = os.environ.get(CONTROL_ENV)
    return Path(v) if v else None


def register_worker(world: World) -> None:
    """Tell the launcher which pid to signal for this rank (an atomic rename: it never reads half)."""
    ctl = control_dir()
    if ctl is None:
        return
    tmp = ctl / f".pid.{world.rank}.tmp"
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, ctl / f"pid.{world.rank}")


def record_exit(world: World, code: int) -> None:
    ctl = control_dir()
    if ctl is None:
        return
    tmp = ctl / f".exit.{world.rank}.tmp"
    tmp.write_text(str(code))
    os.replace(tmp, ctl / f"exit.{world.rank}")


def under_launcher() -> bool:
    return control_dir() is not None


def _read_ints(ctl: Path, prefix: str) -> dict[int, int]:
    out = {}
    for p in ctl.glob(f"{prefix}.*"):
        try:
            out[int(p.name.split(".")[1])] = int(p.read_text())
        except (ValueError, OSError):
            continue
    return out


def torchrun_command(args: RunRequest, *, run_dir: Path | None, python: str | None = None) -> list[str]:
    """``python -m torch.distributed.run ... -m fgbench run ...`` for this invocation."""
    nnodes = parse_nnodes(args.nnodes)
    cmd = [python or sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={args.nproc}"]
    if args.rdzv_endpoint:
        cmd += [f"--nnodes={nnodes}", f"--node-rank={args.node_rank}", "--rdzv-backend=static",
                f"--rdzv-endpoint={args.rdzv_endpoint}"]
    else:
        cmd += ["--standalone", "--nnodes=1"]  # a free local port for the rendezvous
    cmd += ["-m", "fgbench", "run"]
    if args.resume:
        cmd += ["--resume", str(run_dir)]
    else:
        assert args.recipe is not None  # RunRequest.check: a recipe or --resume
        cmd.append(str(Path(args.recipe).resolve()))
    for item in args.overrides or []:  # a resume's too (RESUME_OVERRIDES)
        cmd += ["--set", item]
    if run_dir is not None and not args.resume:
        cmd += ["--run-dir", str(run_dir)]
    if args.device:
        cmd += ["--device", args.device]
    cmd += ["--progress", args.progress]
    if args.sweep_tag:
        cmd += ["--sweep-tag", args.sweep_tag]
    return cmd


def launch(args: RunRequest, *, run_dir: Path | None) -> int:
    """Run the workers through torchrun and wait; returns rank 0's exit code (or, on a node
    without rank 0, the worst of this node's)."""
    ctl = Path(tempfile.mkdtemp(prefix="fgbench-ddp-"))
    try:
        cmd = torchrun_command(args, run_dir=run_dir)
        env = dict(os.environ)
        env[CONTROL_ENV] = str(ctl)
        # torchrun's --signals-to-handle (read from PET_*; older versions read the second name)
        env["PET_SIGNALS_TO_HANDLE"] = env["TORCHELASTIC_SIGNALS_TO_HANDLE"] = "SIGTERM,SIGHUP,SIGQUIT"
        env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT_S)
        # torchrun would set 1 and say so; share this machine's cores between the processes instead
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc)))
        received: list[int] = []
        started: list[subprocess.Popen] = []

        def forward(signum, _frame):
            received.append(signum)
            pids = _read_ints(ctl, "pid")
            if len(pids) < args.nproc:  # still starting: torchrun takes them all down
                for proc in started:
                    try:
                        proc.send_signal(signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                return
            for pid in pids.values():
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass

        in_main = threading.current_thread() is threading.main_thread()  # signals can be handled here
        old: dict = {}
        if in_main:
            old[signal.SIGTERM] = signal.signal(signal.SIGTERM, forward)
            # torchrun inherits "ignore SIGINT" (ignored dispositions survive exec): a Ctrl-C in the
            # terminal must reach the workers once, through forward(), not through torchrun.
            old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            try:
                started.append(subprocess.Popen(cmd, env=env))
            except OSError as err:
                raise UserError(f"cannot start torchrun ({cmd[0]}): {err}") from None
            finally:
                if in_main:
                    signal.signal(signal.SIGINT, forward)
            rc = started[0].wait()
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
        codes = _read_ints(ctl, "exit")
        return exit_code(codes, rc, bool(received))
    finally:
        shutil.rmtree(ctl, ignore_errors=True)


def exit_code(codes: dict[int, int], torchrun_rc: int, signalled: bool) -> int:
    if 0 in codes:
        return codes[0]
    if codes:
        order = {EXIT_FAILED: 0, EXIT_BAD_INPUT: 1, EXIT_INTERRUPTED: 2, EXIT_OK: 3}
        return min(codes.values(), key=lambda c: order.get(c, -1))
    if signalled:
        return EXIT_INTERRUPTED
    return EXIT_OK if torchrun_rc == 0 else EXIT_FAILED


def quiet_code(code: int, symmetric: bool) -> int:
    """What a worker returns to torchrun: 0 for an end every process shares (when the launcher
    reads the real code from the control directory), else the real code."""
    return EXIT_OK if symmetric and under_launcher() else code
