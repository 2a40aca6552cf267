"""Every CUDA path of the trainer, checked against fp32 on one GPU, and GPU throughput.

    python benchmarks/gpu_check.py                 # about 3-5 minutes on one GPU
    python benchmarks/gpu_check.py --out DIR       # keep the run directories and a JSON report in DIR

What it does, through the real ``fgbench run`` (a subprocess per case, as a user would run it):

1. **Paths against fp32.** The quickstart recipe (ResNet-8 on the built-in synthetic set, one epoch,
   a step event every step, deterministic cuDNN) is trained once in fp32 with the device loader,
   then once per path: the standard and cached loaders, ``channels_last``, ``torch.compile``, fp16
   with the gradient scaler, bf16, ``runtime.precision = "auto"`` (it must resolve to bf16 on a GPU
   with native bf16, to fp32 elsewhere, and say so in ``run_started``), and (with two GPUs or more)
   a two-process DDP run over NCCL.
   Every case starts from the same weights and sees the same first batch, so:

   - the **first step's loss** must agree with fp32's within ``FIRST_LOSS_TOL`` (relative): 1e-3 for
     fp32 paths (only the kernels differ; TF32 is off for fp32 recipes), 2e-2 for fp16 and TF32, 3e-2 for
     bf16 (8 and 7 mantissa bits, about 4e-3 and 8e-3 per rounding, over a ResNet-8's depth);
   - the **epoch's mean training loss** must agree within 10 % (trajectories drift apart once
     rounding differs; a broken path, such as a scaler that never steps or NaNs, is far outside);
   - the loaders hand the model the same decoded images but draw crops and flips from their own random
     streams (the device loader per batch on the device, the others per sample in workers), and DDP
     splits each batch over two processes: for those only the epoch's loss is compared.

   The health sampler is checked on the fp32 run: if the run's events carry GPU telemetry, it must
   name a utilisation and memory figure; if fgbench has no sampler events, that is reported as such.

2. **Throughput.** Training images/s (the epoch event's ``images_per_s`` of the second epoch, after
   warm-up and cuDNN's autotuning) for a torchvision ResNet-18 at 32 px, a ResNet-50 at 224 px and at
   448 px, fp32 and bf16, each with the loader ``data.loader = "auto"`` picks (printed).

On a machine without CUDA it says so and exits 0 without claiming anything. It never runs in CI or
in the tests; its numbers go in BENCHMARKS.md with the GPU named.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.toml"

FP32_TOL = 1e-3
FIRST_LOSS_TOL = {"fp16": 2e-2, "bf16": 3e-2, "tf32": 2e-2}
EPOCH_LOSS_TOL = 0.10

BASE = ["schedule.epochs=1", "schedule.warmup_epochs=0", "runtime.log_every_steps=1", "runtime.deterministic=true", "runtime.device=cuda",
        "ema.enabled=false", "runtime.channels_last=false"]  # NCHW fp32 is the reference; a case's --set wins

CASES: list[tuple[str, list[str], dict]] = [
    ("fp32 device loader", [], {}),
    ("fp32 standard loader", ["data.loader=standard", "data.workers=4"], {"epoch_only": True}),
    ("fp32 cached loader", ["data.loader=cached", "data.workers=4"], {"epoch_only": True}),
    ("fp32 channels_last", ["runtime.channels_last=true"], {}),
    ("fp32 torch.compile", ["runtime.compile=true"], {}),
    ("fp32 with TF32", ["runtime.tf32=true"], {"precision": "tf32"}),
    ("fp16 + GradScaler", ["runtime.precision=fp16"], {"precision": "fp16"}),
    ("bf16", ["runtime.precision=bf16"], {"precision": "bf16"}),
    ("bf16 channels_last", ["runtime.precision=bf16", "runtime.channels_last=true"], {"precision": "bf16"}),
    # auto: bf16 on a GPU with native bf16 (compute capability 8.0+), fp32 on older ones and the CPU;
    # the run must say which in run_started and train in it (its recipe.toml holds the choice)
    ("auto precision", ["runtime.precision=auto"], {"precision": "bf16", "auto": True}),
]

THROUGHPUT = [
    ("resnet18 @ 32 px", ["model.arch=resnet18", "data.train_size=32", "data.test_size=32", "data.batch_size=256"]),
    ("resnet50 @ 224 px", ["model.arch=resnet50", "data.train_size=224", "data.test_size=224",
                           "data.train_crop=resize", "data.batch_size=64"]),
    ("resnet50 @ 448 px", ["model.arch=resnet50", "data.train_size=448", "data.test_size=448",
                           "data.train_crop=resize", "data.batch_size=32"]),
]


def events(run_dir: Path) -> list[dict]:
    out = []
    with open(run_dir / "metrics.jsonl", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def run(name: str, sets: list[str], work: Path, env: dict, nproc: int = 1) -> tuple[Path, float, str]:
    run_dir = work / name.replace(" ", "_").replace("@", "at").replace("+", "plus").replace(".", "")
    cmd = [sys.executable, "-m", "fgbench", "run", str(QUICKSTART), "--run-dir", str(run_dir), "--progress", "lines"]
    for s in sets:
        cmd += ["--set", s]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise RuntimeError(f"{name}: fgbench run exited {proc.returncode}\n{tail}")
    return run_dir, wall, proc.stdout


def step_losses(evs: list[dict]) -> list[float]:
    return [float(e["loss"]) for e in evs if e.get("event") == "step"]


def epoch_loss(evs: list[dict]) -> float:
    return float([e for e in evs if e.get("event") == "epoch"][-1]["train_loss"])


def auto_resolved(evs: list[dict], expected: str) -> tuple[bool, str]:
    """(whether ``runtime.precision = "auto"`` resolved to ``expected`` and the run trained in it, a note)."""
    started = next(e for e in evs if e.get("event") == "run_started")
    got = (started.get("precision") or {}).get("precision")
    trained = started.get("recipe", {}).get("runtime", {}).get("precision")
    return got == expected == trained, f"auto resolved to {got} (run_started), recipe says {trained}, expected {expected}"


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def rehearse(args: argparse.Namespace) -> int:
    """The checks' machinery on the CPU (no fp16, no compile, no throughput): proves the script runs."""
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fgbench-gpu-check-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    base = [s.replace("device=cuda", "device=cpu") for s in BASE] + ["data.train_size=16", "data.test_size=16"]
    ref = None
    failures = 0
    for name, sets, opts in CASES:
        if "compile" in name or opts.get("precision") == "fp16":
            continue
        run_dir, wall, _ = run(name, base + sets, work, env)
        evs = events(run_dir)
        first, mean = step_losses(evs)[0], epoch_loss(evs)
        if ref is None:
            ref = (first, mean)
            print(f"ok    {name:<30} first-step loss {first:.4f}, epoch loss {mean:.4f}")
            continue
        note = ""
        if opts.get("auto"):  # on the CPU auto is fp32: the same steps as the reference
            resolved, note = auto_resolved(evs, "fp32")
            opts = {**opts, "precision": "fp32"}
        else:
            resolved = True
        tol = FIRST_LOSS_TOL.get(opts.get("precision", ""), FP32_TOL)
        ok = resolved and (opts.get("epoch_only") or rel(first, ref[0]) <= tol) and rel(mean, ref[1]) <= EPOCH_LOSS_TOL
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'}  {name:<30} first-step rel {rel(first, ref[0]):.1e} (tol {tol:g}), "
              f"epoch rel {rel(mean, ref[1]):.1e}{'; ' + note if note else ''}")
    print("CPU rehearsal only: no GPU number is claimed.")
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="keep run directories and report.json here (default: a temporary folder)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--rehearse-on-cpu", action="store_true",
                    help="run the fp32/bf16 path checks on the CPU to test this script itself (claims nothing about GPUs)")
    args = ap.parse_args()
    if args.rehearse_on_cpu:
        return rehearse(args)

    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed; nothing checked")
        return 0
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine: nothing checked, no GPU numbers claimed")
        return 0
    n_gpu = torch.cuda.device_count()
    gpu = torch.cuda.get_device_name(0)
    print(f"gpu_check: {n_gpu} x {gpu}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}", flush=True)

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fgbench-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", FGBENCH_RUNS_DIR=str(work / "runs"))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    report: dict = {"gpu": gpu, "gpus": n_gpu, "torch": torch.__version__, "checks": [], "throughput": []}
    failures = 0

    base_evs: list[dict] | None = None
    cases = list(CASES)
    if n_gpu >= 2:
        cases.append(("fp32 DDP 2 processes (NCCL)", [], {"nproc": 2, "epoch_only": True}))
    for name, sets, opts in cases:
        t0 = time.perf_counter()
        try:
            run_dir, wall, _ = run(name, BASE + sets, work, env, nproc=opts.get("nproc", 1))
            evs = events(run_dir)
        except Exception as exc:  # one case failing must not hide the others
            failures += 1
            print(f"FAIL  {name}: {exc}", flush=True)
            report["checks"].append({"case": name, "ok": False, "error": str(exc)})
            continue
        losses, mean = step_losses(evs), epoch_loss(evs)
        started = next(e for e in evs if e.get("event") == "run_started")
        line = {"case": name, "wall_s": round(wall, 1), "first_loss": losses[0], "epoch_loss": mean,
                "loader": started.get("loader"), "memory_format": started.get("memory_format")}
        ok = bool(losses) and all(x == x for x in losses)  # no NaN
        if base_evs is None:
            base_evs = evs
            health = [e for e in evs if e.get("event") in ("system", "health", "telemetry")]
            line["health_events"] = len(health)
            if health:
                gpu_fields = [k for k in health[-1] if "gpu" in k]
                line["health_gpu_fields"] = gpu_fields
                ok = ok and bool(gpu_fields)
        else:
            if opts.get("auto"):
                want = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
                resolved, line["auto"] = auto_resolved(evs, want)
                ok = ok and resolved
                opts = {**opts, "precision": want}
            b_first, b_mean = step_losses(base_evs)[0], epoch_loss(base_evs)
            tol = FIRST_LOSS_TOL.get(opts.get("precision", ""), FP32_TOL)
            line["first_loss_rel"] = rel(losses[0], b_first)
            line["epoch_loss_rel"] = rel(mean, b_mean)
            line["tolerance"] = {"first": tol, "epoch": EPOCH_LOSS_TOL}
            if opts.get("nproc", 1) == 1 and not opts.get("epoch_only"):
                ok = ok and line["first_loss_rel"] <= tol
            ok = ok and line["epoch_loss_rel"] <= EPOCH_LOSS_TOL
        line["ok"] = ok
        failures += not ok
        report["checks"].append(line)
        extra = "" if "first_loss_rel" not in line else (
            f"  first-step loss rel. diff {line['first_loss_rel']:.1e}, epoch loss {line['epoch_loss_rel']:.1e}")
        if "auto" in line:
            extra += f"; {line['auto']}"
        print(f"{'ok  ' if ok else 'FAIL'}  {name:<30} loader={line['loader']} {time.perf_counter() - t0:5.1f} s"
              f"{extra}", flush=True)

    if not args.skip_throughput:
        print("\ntraining images/s (second epoch; loader as data.loader = \"auto\" picks it):", flush=True)
        for name, sets in THROUGHPUT:
            for precision in ("fp32", "bf16"):
                label = f"{name} {precision}"
                try:
                    run_dir, wall, _ = run(label, ["schedule.epochs=2", "schedule.warmup_epochs=0", "runtime.device=cuda", "data.loader=auto",
                                                   "data.workers=8", f"runtime.precision={precision}",
                                                   "runtime.log_every_steps=50", *sets], work, env)
                    evs = events(run_dir)
                except Exception as exc:
                    failures += 1
                    print(f"FAIL  {label}: {exc}", flush=True)
                    continue
                ep = [e for e in evs if e.get("event") == "epoch"][-1]
                started = next(e for e in evs if e.get("event") == "run_started")
                row = {"case": label, "images_per_s": ep.get("images_per_s"), "loader": started.get("loader"),
                       "peak_mem_mb": ep.get("peak_mem_mb"), "wall_s": round(wall, 1)}
                report["throughput"].append(row)
                print(f"  {label:<26} {row['images_per_s']:>9.0f} img/s  loader={row['loader']}  "
                      f"peak {row['peak_mem_mb']} MB", flush=True)

    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(f"\n{'all checks passed' if not failures else f'{failures} check(s) FAILED'}; report: {work / 'report.json'}")
    if not args.out:
        shutil.rmtree(work / "runs", ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
