"""End to end: ``fgbench run`` against a plain PyTorch training script of the same settings.

Usage (from the repository root)::

    python benchmarks/end_to_end.py                    # both jobs, 3 alternated pairs each
    python benchmarks/end_to_end.py --jobs png32 --pairs 5 --json out.json
    python benchmarks/end_to_end.py --fgbench-path /path/to/other/checkout   # "before" numbers

What runs, from process start to process exit, as a user runs it:

* ``fgbench run recipe.toml`` of a recipe the benchmark writes;
* ``fair``: ``plain.py``, a training script written below in the style of torchvision's
  classification references (``ImageFolder``, ``DataLoader`` with workers and shuffling,
  ``torchvision.models``, SGD, an LR lambda stepped every iteration, one evaluation of the test
  split per epoch, a checkpoint per epoch), with the same transforms, model, initialisation,
  optimizer, schedule, batch size, epochs and worker count as the recipe, **and the plain-PyTorch
  choices fgbench makes**, as a careful engineer would: loader workers kept alive across epochs
  (``persistent_workers``), ``channels_last`` exactly where fgbench's default uses it
  (``fgbench.train.models.channels_last_for``: its CIFAR ResNets and ``small_cnn`` on the CPU, not
  these jobs' torchvision models), evaluation at twice the training batch and once per epoch, as
  fgbench's defaults do. The thread settings are already the same: PyTorch's loader workers run one
  thread each, as fgbench's do, and neither program changes the main process's. OpenMP's wait is
  the same too: both scripts inherit this benchmark's environment, where importing fgbench set
  ``GOMP_SPINCOUNT`` (``fgbench.OMP_SPIN_COUNT``, README "On a shared CPU"; a value set before
  the benchmark starts applies to all three programs). The targets are against this script.
* ``plain``: the same script without those choices (the old baseline, kept as a second column;
  ``--no-old`` leaves it out).
* the **limit**: ``fgbench bench``'s step rate on batches already in memory, measured once per job;
  the limit row is fgbench's end-to-end training images/s over it.

Targets (issue 19): fgbench at most 0.9x the fair script's wall and CPU time, and at least 0.95x of
the limit; the summary line says which are met and by how much the others are missed.

The two jobs (the image folders are generated in a temporary directory, real formats):

* ``png32``: 600 training and 200 test PNGs of 32 x 32 (fgbench's synthetic classes, 10 of them),
  ResNet-18 (torchvision's, ``--cifar-stem`` for the 3x3 stride-1 stem), batch 32, SGD (0.02,
  momentum 0.9, wd 5e-4), one linear warm-up epoch then cosine, 10 epochs, pad-4 random crop and
  flip, 2 workers, fp32, on the CPU.
* ``jpeg224``: 400 training and 100 test JPEGs of about 500 x 375 (the same classes, resized, with
  grain, quality 90), ShuffleNetV2 x0.5 (``--arch`` for another torchvision model),
  RandomResizedCrop(224) and flip for training, Resize(255) and CenterCrop(224) for testing,
  batch 16, 8 epochs, otherwise as above.

The models are small on purpose: on a 2-core CPU a ResNet-18 at 224 px spends nearly all its time
in the step, which both programs share, and the benchmark is about everything around the step.
The jobs are long enough for both programs to learn (well above the 10 % of chance), so that the
final accuracies can be compared. (MobileNetV3, tried first, stays at chance on the test split
after a few hundred steps in both programs: torchvision builds its BatchNorm layers with momentum
0.01, so the running statistics the evaluation uses barely move in so few steps.)

fgbench runs with its defaults for everything the plain script has no counterpart for
(``data.loader = "auto"``, its evaluation batch, its memory format); both train on the whole
training split (``val_fraction = 0``) and report the test accuracy after the last epoch.

Each pair runs fgbench and the scripts back to back, each program going first in turn from pair
to pair, so that load from other processes on a shared machine hits both alike; ratios are taken
within a pair and then the median over pairs. Wall time is the process's, CPU time is user +
system of the process and every child it waited for (its loader workers), from ``getrusage``.
Training images/s is training images over the time spent in the training loops (fgbench: its
``epoch`` events; plain: timed the same way around each epoch's loop). The per-phase breakdown
comes from fgbench's event times and from timestamps the plain script prints.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

JOBS = {
    "png32": dict(fmt="png", train_per_class=60, test_per_class=20, size=32, arch="resnet18", cifar_stem=False,
                  batch=32, epochs=10, train_crop="pad_crop", test_crop="none"),
    "jpeg224": dict(fmt="jpeg", train_per_class=40, test_per_class=10, size=224, arch="shufflenet_v2_x0_5",
                    cifar_stem=False, batch=16, epochs=8, train_crop="random_resized", test_crop="ratio"),
}
LR, MOMENTUM, WD, WORKERS, WARMUP_EPOCHS = 0.02, 0.9, 5e-4, 2, 1
SHAPES = [(500, 375), (375, 500), (500, 333), (480, 360), (500, 400)]

PLAIN = r'''
"""A plain training script in the style of torchvision's classification references."""
import json, math, os, sys, time
T0 = time.time()
import torch, torchvision
from torch import nn
from torchvision import datasets, transforms

cfg = json.loads(sys.argv[1])
marks = {"imports_done": time.time()}
torch.manual_seed(cfg["seed"])
mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
if cfg["train_crop"] == "pad_crop":
    train_tf = transforms.Compose([transforms.RandomCrop(cfg["size"], padding=4), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), transforms.Normalize(mean, std)])
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
else:
    train_tf = transforms.Compose([transforms.RandomResizedCrop(cfg["size"]), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), transforms.Normalize(mean, std)])
    test_tf = transforms.Compose([transforms.Resize(int(cfg["size"] * 1.14)), transforms.CenterCrop(cfg["size"]),
                                  transforms.ToTensor(), transforms.Normalize(mean, std)])
train_set = datasets.ImageFolder(os.path.join(cfg["root"], "train"), train_tf)
test_set = datasets.ImageFolder(os.path.join(cfg["root"], "test"), test_tf)
fair = cfg["fair"]  # the plain-PyTorch choices fgbench makes (see the module docstring)
keep = dict(persistent_workers=cfg["workers"] > 0) if fair else {}
train_loader = torch.utils.data.DataLoader(train_set, batch_size=cfg["batch"], shuffle=True,
                                           num_workers=cfg["workers"], drop_last=True, **keep)
test_loader = torch.utils.data.DataLoader(test_set, batch_size=2 * cfg["batch"] if fair else cfg["batch"],
                                          shuffle=False, num_workers=cfg["workers"], **keep)
cl = torch.channels_last if fair and cfg["channels_last"] else None
marks["data_ready"] = time.time()
model = torchvision.models.get_model(cfg["arch"], weights=None, num_classes=len(train_set.classes))
if cfg["cifar_stem"]:
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
if cl is not None:
    model = model.to(memory_format=cl)
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["wd"])
steps = len(train_loader)
total, warm = cfg["epochs"] * steps, cfg["warmup_epochs"] * steps
def lr_lambda(s):
    if s < warm:
        return s / warm
    return 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
marks["model_ready"] = time.time()
train_time = train_images = 0.0
phases = {"train": 0.0, "eval": 0.0, "checkpoint": 0.0}
acc = None
for epoch in range(cfg["epochs"]):
    model.train()
    t = time.time()
    for x, y in train_loader:
        if cl is not None:
            x = x.contiguous(memory_format=cl)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        train_images += x.shape[0]
    dt = time.time() - t
    phases["train"] += dt
    t = time.time()
    model.eval()
    correct = n = 0
    with torch.inference_mode():
        for x, y in test_loader:
            if cl is not None:
                x = x.contiguous(memory_format=cl)
            correct += (model(x).argmax(1) == y).sum().item()
            n += y.numel()
    acc = 100.0 * correct / n
    phases["eval"] += time.time() - t
    t = time.time()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "epoch": epoch}, os.path.join(cfg["out"], "checkpoint.pth"))
    phases["checkpoint"] += time.time() - t
marks["end"] = time.time()
print(json.dumps({"t0": T0, "marks": marks, "phases": phases, "train_images": train_images, "top1": acc}))
'''


def make_folder(root: Path, job: dict) -> Path:
    """The synthetic classes as a real-format folder: 32 px PNGs, or ~500x375 JPEGs with grain."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(REPO))
    from fgbench.data import synthetic

    src = root / "src"
    synthetic.generate(src, train_per_class=job["train_per_class"], test_per_class=job["test_per_class"],
                       size=32 if job["fmt"] == "png" else 64)
    if job["fmt"] == "png":
        return src
    out = root / "jpeg"
    rng = np.random.default_rng(0)
    for i, p in enumerate(sorted(src.rglob("*.png"))):
        w, h = SHAPES[i % len(SHAPES)]
        im = Image.open(p).convert("RGB").resize((w, h), Image.BICUBIC)
        arr = np.asarray(im).astype(np.int16) + rng.normal(0, 6, size=(h, w, 3)).astype(np.int16)
        dest = out / p.relative_to(src).with_suffix(".jpg")
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(dest, "JPEG", quality=90)
    shutil.rmtree(src)
    return out


def recipe_text(job: dict, root: Path, seed: int = 0) -> str:
    return textwrap.dedent(f"""\
        name = "end-to-end"
        [data]
        dataset = "folder"
        root = "{root}"
        train_size = {job["size"]}
        test_size = {job["size"]}
        train_crop = "{job["train_crop"]}"
        crop_padding = 4
        test_crop = "{job["test_crop"]}"
        normalize = "imagenet"
        val_fraction = 0.0
        batch_size = {job["batch"]}
        workers = {WORKERS}
        drop_last = true
        [model]
        arch = "{job["arch"]}"
        cifar_stem = {"true" if job["cifar_stem"] else "false"}
        [optim]
        name = "sgd"
        lr = {LR}
        momentum = {MOMENTUM}
        weight_decay = {WD}
        [schedule]
        name = "cosine"
        epochs = {job["epochs"]}
        warmup_epochs = {WARMUP_EPOCHS}
        warmup = "linear"
        [eval]
        select_on = "last"
        [runtime]
        device = "cpu"
        seed = {seed}
        """)


def _timed(cmd: list[str], env: dict, cwd: Path | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return wall, cpu, proc


def run_fgbench(recipe: Path, run_dir: Path, fgbench_path: Path, cache_home: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(fgbench_path), "FGBENCH_HOME": str(cache_home)}
    t_launch = time.time()
    # run from the run's parent folder: `python -m` puts the working directory first on sys.path,
    # so from a checkout's root its fgbench, not the one --fgbench-path names, would be imported
    wall, cpu, _ = _timed([sys.executable, "-m", "fgbench", "run", str(recipe), "--run-dir", str(run_dir),
                           "--progress", "none"], env, cwd=run_dir.parent)
    t_exit = time.time()
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    started = next(e for e in events if e["event"] == "run_started")
    epochs = [e for e in events if e["event"] == "epoch"]
    finished = next(e for e in events if e["event"] == "run_finished")
    train = sum(e["epoch_time"] for e in epochs)
    images = sum(e["images_per_s"] * e["epoch_time"] for e in epochs)
    # between the end of an epoch's training and its epoch event: evaluation, checkpoints, metrics
    after, prev = 0.0, started["time"]
    stage_starts = [e["time"] for e in events if e["event"] == "stage_started"]
    for e in epochs:
        begin = max([prev] + [t for t in stage_starts if t <= e["time"]])
        after += max(0.0, e["time"] - begin - e["epoch_time"])
        prev = e["time"]
    from fgbench.rundir.summary import read_summary

    summary = read_summary(run_dir)
    top1 = summary.headline()["test_top1_last"] if summary is not None else None
    return {
        "wall": wall, "cpu": cpu, "images_per_s": images / train if train else None,
        "top1": top1, "loader": started.get("loader"),
        "phases": {"start (imports, indexing, model)": started["time"] - t_launch, "train loops": train,
                   "eval + checkpoints + metrics": after, "final (after the last epoch)": finished["time"] - prev,
                   "exit": t_exit - finished["time"]},
    }


def run_plain(script: Path, job: dict, root: Path, out: Path, seed: int = 0, *, fair: bool = True) -> dict:
    cfg = dict(job, root=str(root), out=str(out), seed=seed, lr=LR, momentum=MOMENTUM, wd=WD, workers=WORKERS,
               warmup_epochs=WARMUP_EPOCHS, fair=fair)
    out.mkdir(parents=True, exist_ok=True)
    t_launch = time.time()
    wall, cpu, proc = _timed([sys.executable, str(script), json.dumps(cfg)], dict(os.environ))
    t_exit = time.time()
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    m, ph = res["marks"], res["phases"]
    return {
        "wall": wall, "cpu": cpu, "images_per_s": res["train_images"] / ph["train"], "top1": res["top1"],
        "phases": {"start (imports, indexing, model)": m["model_ready"] - t_launch, "train loops": ph["train"],
                   "eval + checkpoints + metrics": ph["eval"] + ph["checkpoint"], "final (after the last epoch)": 0.0,
                   "exit": t_exit - m["end"]},
    }


def measure_limit(recipe: Path, fgbench_path: Path, cache_home: Path) -> dict:
    """``fgbench bench``'s limit: the step rate on batches in memory, for the limit row."""
    out = recipe.with_suffix(".bench.json")
    env = {**os.environ, "PYTHONPATH": str(fgbench_path), "FGBENCH_HOME": str(cache_home)}
    _timed([sys.executable, "-m", "fgbench", "bench", str(recipe), "--json", str(out), "--quiet"], env,
           cwd=recipe.parent)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", nargs="+", choices=list(JOBS), default=list(JOBS))
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--fgbench-path", type=Path, default=REPO, help="the fgbench checkout to run (default: this one)")
    ap.add_argument("--keep-cache", action="store_true",
                    help="let later fgbench runs reuse the first run's decoded-image cache (default: each run starts cold)")
    ap.add_argument("--arch", help="torchvision model for every job (default: resnet18 / shufflenet_v2_x0_5)")
    ap.add_argument("--cifar-stem", action="store_true", help="png32: ResNet with the 3x3 stride-1 stem")
    ap.add_argument("--first-seed", type=int, default=0, help="pair i uses seed first_seed + i (default 0)")
    ap.add_argument("--epochs", type=int, help="every job trains this many epochs (a short check; default: the job's)")
    ap.add_argument("--per-class", type=float, default=1.0, metavar="F",
                    help="scale each job's training and test images per class by F (a short check)")
    ap.add_argument("--no-old", action="store_true", help="leave out the old plain script (the second column)")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from fgbench.train.models import channels_last_for

    for job in JOBS.values():
        job["arch"] = args.arch or job["arch"]
        if args.epochs:
            job["epochs"] = args.epochs
        job["train_per_class"] = max(2, round(job["train_per_class"] * args.per_class))
        job["test_per_class"] = max(1, round(job["test_per_class"] * args.per_class))
    JOBS["png32"]["cifar_stem"] = args.cifar_stem
    for job in JOBS.values():  # the fair script uses channels_last exactly where fgbench's default does
        job["channels_last"] = channels_last_for("auto", job["arch"], "cpu")[0]

    import torch
    import torchvision

    print(f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, fgbench from {args.fgbench_path}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="fgbench-e2e-") as tmp:
        tmp = Path(tmp)
        script = tmp / "plain.py"
        script.write_text(PLAIN)
        for name in args.jobs:
            job = JOBS[name]
            root = make_folder(tmp / name, job)
            limit_recipe = tmp / f"{name}-limit.toml"
            limit_recipe.write_text(recipe_text(job, root, seed=args.first_seed))
            bench = measure_limit(limit_recipe, args.fgbench_path, tmp / f"home-{name}-limit")
            limit = bench["limit"]["images_per_s"]
            print(f"{name}: limit (fgbench bench: the step on batches in memory) {limit:.0f} img/s, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            pairs = []
            for i in range(args.pairs):
                # both programs of a pair use the pair's seed: the accuracies vary from pair to pair as
                # a run's do from seed to seed, which is the noise the two medians are compared within
                recipe = tmp / f"{name}-{i}.toml"
                seed = args.first_seed + i
                recipe.write_text(recipe_text(job, root, seed=seed))
                home = tmp / f"home-{name}" if args.keep_cache else tmp / f"home-{name}-{i}"
                progs = ["fgbench", "fair"] + ([] if args.no_old else ["plain"])
                order = progs[i % len(progs):] + progs[:i % len(progs)]  # each program goes first in turn
                pair = {}
                for who in order:
                    if who == "fgbench":
                        pair[who] = run_fgbench(recipe, tmp / f"run-{name}-{i}", args.fgbench_path, home)
                    else:
                        pair[who] = run_plain(script, job, root, tmp / f"{who}-{name}-{i}", seed=seed,
                                              fair=who == "fair")
                f = pair["fgbench"]
                pair["ratios"] = {
                    other: {"wall": f["wall"] / pair[other]["wall"], "cpu": f["cpu"] / pair[other]["cpu"],
                            "images_per_s": f["images_per_s"] / pair[other]["images_per_s"]}
                    for other in progs[1:]}
                pair["limit_ratio"] = f["images_per_s"] / limit
                pair["load"] = os.getloadavg()[0]
                pairs.append(pair)
                line = [f"{name} pair {i + 1} ({order[0]} first, load {pair['load']:.1f}):"]
                for other in progs[1:]:
                    r, o = pair["ratios"][other], pair[other]
                    line.append(f"vs {other}: wall {f['wall']:.1f} / {o['wall']:.1f} s (x{r['wall']:.3f})  "
                                f"cpu {f['cpu']:.1f} / {o['cpu']:.1f} s (x{r['cpu']:.3f})  "
                                f"train img/s {f['images_per_s']:.0f} / {o['images_per_s']:.0f} "
                                f"(x{r['images_per_s']:.3f})  top-1 {f['top1']:.1f} / {o['top1']:.1f}")
                line.append(f"limit: train img/s {f['images_per_s']:.0f} / {limit:.0f} (x{pair['limit_ratio']:.3f}); "
                            f"loader {f['loader'] and f['loader']['kind']}")
                print("\n    ".join(line), flush=True)
            med = {other: {k: statistics.median(p["ratios"][other][k] for p in pairs)
                           for k in ("wall", "cpu", "images_per_s")} for other in progs[1:]}
            med_limit = statistics.median(p["limit_ratio"] for p in pairs)
            phases = {who: {k: statistics.median(p[who]["phases"][k] for p in pairs) for k in pairs[0][who]["phases"]}
                      for who in progs}
            print(f"{name} median over {len(pairs)} pairs (ratios fgbench / other):", flush=True)
            print(f"    {'':10s} {'wall':>7s} {'cpu':>7s} {'img/s':>7s}")
            for other in progs[1:]:
                m = med[other]
                print(f"    {other:10s} {m['wall']:7.3f} {m['cpu']:7.3f} {m['images_per_s']:7.3f}")
            print(f"    {'limit':10s} {'':7s} {'':7s} {med_limit:7.3f}   (end-to-end train img/s over the step rate "
                  "on batches in memory)")
            fw, fc = med["fair"]["wall"], med["fair"]["cpu"]
            verdicts = [f"wall x{fw:.3f} vs the fair script: {'met' if fw <= 0.9 else f'missed by {fw - 0.9:.3f}'}",
                        f"cpu x{fc:.3f}: {'met' if fc <= 0.9 else f'missed by {fc - 0.9:.3f}'}",
                        f"limit x{med_limit:.3f}: {'met' if med_limit >= 0.95 else f'missed by {0.95 - med_limit:.3f}'}"]
            print("    targets (wall, cpu <= 0.9x fair; >= 0.95x limit): " + "; ".join(verdicts))
            print("    top-1 (median, range over the pairs' seeds): "
                  + " / ".join(f"{who} {statistics.median(t):.1f} ({min(t):.1f}-{max(t):.1f})" for who, t in
                               ((w, [p[w]["top1"] for p in pairs]) for w in progs)), flush=True)
            for k in phases["fgbench"]:
                print(f"    {k:34s} " + "   ".join(f"{who} {phases[who][k]:6.2f} s" for who in progs))
            results[name] = {"pairs": pairs, "median_ratios": med, "median_limit_ratio": med_limit, "limit": limit,
                             "bench": bench, "median_phases": phases}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
