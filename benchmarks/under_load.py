"""fgbench's training step and a plain PyTorch loop, idle and beside a low-priority neighbour.

The neighbour is what a shared machine has: ``--neighbours`` CPU-bound processes (``python -c
"while True: pass"`` under ``nice -n 19``), started by this script in a session of their own, as a
colleague's job started from another shell or a scheduler's other job would be. On Linux with
autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled`` = 1, most desktop and cloud
kernels) ``nice`` only orders processes inside one session: across sessions each session gets an
equal share of the CPU whatever its nice value, so two niced spinners in another session take one
of this VM's two cores. ``--same-session`` starts them in this script's session instead, where the
nice value works. Every neighbour runs under ``timeout -s KILL`` (it cannot outlive the script by
more than ``--neighbour-life`` seconds) and is killed, with its process group, after each loaded
round.

Each variant runs in a fresh interpreter (OpenMP reads its environment once, when torch loads):

* ``libgomp``: PyTorch as it comes (no ``GOMP_SPINCOUNT`` / ``OMP_WAIT_POLICY``: a waiting
  intra-op thread spins 300000 times before it sleeps);
* ``fgbench``: the environment fgbench sets before torch loads (``fgbench.OMP_SPIN_COUNT``);
* ``1thread``: ``torch.set_num_threads(1)``, libgomp's default otherwise;
* ``spin=N``: ``GOMP_SPINCOUNT=N`` (to try other values).

Inside a variant's process the same model (two copies, same initial weights) is trained by
fgbench's ``train_one_epoch`` and by a bare ``forward / backward / step`` loop on batches held in
memory, alternating (bare, fgbench / fgbench, bare), once idle and once with the neighbour, for
``--pairs`` pairs; the variants themselves alternate over ``--rounds`` rounds. The default job is
``end_to_end.py``'s ``png32`` step: torchvision's ResNet-18, 32 px, batch 32, fp32, SGD.

    python benchmarks/under_load.py                         # 3 rounds: libgomp, fgbench, 1thread
    python benchmarks/under_load.py --variants libgomp spin=0 spin=1000 --rounds 2
    python benchmarks/under_load.py --same-session          # the neighbour where nice works

It prints, per variant and loop, the median idle and loaded images/s and their ratio (loaded /
idle), and fgbench's loop over the bare loop in each condition. No wall-clock claims are asserted:
the numbers are for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OMP_VARS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["libgomp", "fgbench", "1thread"])
    p.add_argument("--rounds", type=int, default=3, help="rounds over the variants (each a fresh process)")
    p.add_argument("--pairs", type=int, default=2, help="idle/loaded pairs inside one variant's process")
    p.add_argument("--steps", type=int, default=20, help="steps per timed run")
    p.add_argument("--neighbours", type=int, default=2)
    p.add_argument("--neighbour-life", type=int, default=60, help="seconds after which timeout kills a neighbour")
    p.add_argument("--same-session", action="store_true", help="start the neighbour in this session")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--child", metavar="VARIANT", help=argparse.SUPPRESS)
    return p.parse_args()


# ----------------------------------------------------------------------------- the neighbour


def start_neighbour(a: argparse.Namespace) -> list[subprocess.Popen]:
    cmd = ["timeout", "-s", "KILL", str(a.neighbour_life), "nice", "-n", "19", sys.executable, "-c",
           "while True: pass"]
    # timeout puts itself and its child in a process group of their own (the group is killed below);
    # start_new_session also gives them a session, hence an autogroup, of their own.
    return [subprocess.Popen(cmd, start_new_session=not a.same_session) for _ in range(a.neighbours)]


def stop_neighbour(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in procs:
        p.wait()


# ----------------------------------------------------------------------------- one variant


def child(a: argparse.Namespace) -> None:
    import copy

    env = {k: os.environ[k] for k in OMP_VARS if k in os.environ}  # what libgomp reads as torch loads
    import torch
    import torch.nn.functional as F

    from fgbench.recipe import ModelConfig
    from fgbench.train.loop import Engine, EpochStats, StepHooks, train_one_epoch
    from fgbench.train.losses import ClassificationLoss
    from fgbench.train.models import build_model
    from fgbench.train.schedule import LRPlan

    if a.child == "1thread":
        torch.set_num_threads(1)
    torch.manual_seed(0)
    base = build_model(ModelConfig(arch=a.arch), 10).model
    xs = [torch.randn(a.batch, 3, a.size, a.size) for _ in range(4)]
    ys = [torch.randint(0, 10, (a.batch,)) for _ in range(4)]

    bare_model = copy.deepcopy(base)
    bare_opt = torch.optim.SGD(bare_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def bare(steps: int) -> None:
        for i in range(steps):
            loss = F.cross_entropy(bare_model(xs[i % 4]), ys[i % 4])
            bare_opt.zero_grad(set_to_none=True)
            loss.backward()
            bare_opt.step()

    fg_model = copy.deepcopy(base)
    fg_opt = torch.optim.SGD(fg_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    plan = LRPlan(kind="cosine", peak=0.01, total_steps=10**9, steps_per_epoch=10**6)
    engine = Engine(model=fg_model, forward=fg_model, optimizer=fg_opt,
                    scheduler=torch.optim.lr_scheduler.LambdaLR(fg_opt, plan.factor),
                    criterion=ClassificationLoss(10), device=torch.device("cpu"))
    hooks = StepHooks(log_every=20)

    def fgbench(steps: int) -> None:
        batches = ((xs[i % 4], ys[i % 4], ()) for i in range(steps))
        train_one_epoch(engine, batches, epoch=1, num_batches=steps, stats=EpochStats(), hooks=hooks)

    def rate(fn) -> float:
        t = time.perf_counter()
        fn(a.steps)
        return a.steps * a.batch / (time.perf_counter() - t)

    bare_model.train()
    bare(3)
    fgbench(3)
    out: dict[str, list[float]] = {"bare_idle": [], "fgbench_idle": [], "bare_loaded": [], "fgbench_loaded": []}
    for k in range(a.pairs):
        order = (("bare", bare), ("fgbench", fgbench)) if k % 2 == 0 else (("fgbench", fgbench), ("bare", bare))
        for name, fn in order:
            out[f"{name}_idle"].append(rate(fn))
        procs = start_neighbour(a)
        try:
            time.sleep(0.3)  # the neighbour running before the clock starts
            for name, fn in order:
                out[f"{name}_loaded"].append(rate(fn))
        finally:
            stop_neighbour(procs)
    print(json.dumps({"variant": a.child, "threads": torch.get_num_threads(), "env": env, "rates": out}))


def variant_env(variant: str) -> dict[str, str]:
    import fgbench  # the pure root package: no torch

    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # The child imports torch before fgbench (whose root package sets fgbench's default when it is
    # imported), so libgomp reads exactly this environment.
    if variant == "fgbench":
        env["GOMP_SPINCOUNT"] = fgbench.OMP_SPIN_COUNT
    elif variant.startswith("spin="):
        env["GOMP_SPINCOUNT"] = variant.split("=", 1)[1]
    elif variant not in ("libgomp", "1thread"):
        raise SystemExit(f"--variants: unknown variant {variant!r} (libgomp, fgbench, 1thread, spin=N)")
    return env


def main() -> None:
    a = parse()
    if a.child:
        child(a)
        return
    envs = {v: variant_env(v) for v in a.variants}
    results: dict[str, list[dict]] = {v: [] for v in a.variants}
    t0 = time.time()
    for r in range(a.rounds):
        order = a.variants if r % 2 == 0 else list(reversed(a.variants))
        for v in order:
            cmd = [sys.executable, __file__, "--child", v, "--pairs", str(a.pairs), "--steps", str(a.steps),
                   "--neighbours", str(a.neighbours), "--neighbour-life", str(a.neighbour_life),
                   "--arch", a.arch, "--size", str(a.size), "--batch", str(a.batch)]
            if a.same_session:
                cmd.append("--same-session")
            res = subprocess.run(cmd, env=envs[v], capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                raise SystemExit(f"variant {v} failed:\n{res.stderr}")
            results[v].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {v}: done ({time.time() - t0:.0f} s)", file=sys.stderr)
    load = os.getloadavg()
    print(f"{a.arch} {a.size}px batch {a.batch} fp32 CPU; {a.rounds} rounds x {a.pairs} pairs x {a.steps} steps; "
          f"neighbour: {a.neighbours} x nice -n 19 busy loop, {'same' if a.same_session else 'own'} session; "
          f"load average at the end {load[0]:.1f}")
    print(f"{'variant':10} {'loop':8} {'idle img/s':>10} {'loaded':>8} {'loaded/idle':>11}")
    summary: dict[str, dict] = {}
    for v in a.variants:
        med = {k: statistics.median(x for res in results[v] for x in res["rates"][k])
               for k in ("bare_idle", "fgbench_idle", "bare_loaded", "fgbench_loaded")}
        summary[v] = {"median": med, "threads": results[v][0]["threads"], "env": results[v][0]["env"]}
        for loop in ("bare", "fgbench"):
            idle, loaded = med[f"{loop}_idle"], med[f"{loop}_loaded"]
            print(f"{v:10} {loop:8} {idle:10.0f} {loaded:8.0f} {loaded / idle:11.3f}")
        print(f"{'':10} {'fg/bare':8} {med['fgbench_idle'] / med['bare_idle']:10.3f} "
              f"{med['fgbench_loaded'] / med['bare_loaded']:8.3f}")
    if "libgomp" in summary:
        ref = summary["libgomp"]["median"]
        for v in a.variants:
            if v != "libgomp":
                m = summary[v]["median"]
                print(f"{v} over libgomp, fgbench loop: idle x{m['fgbench_idle'] / ref['fgbench_idle']:.3f}, "
                      f"loaded x{m['fgbench_loaded'] / ref['fgbench_loaded']:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "summary": summary, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
