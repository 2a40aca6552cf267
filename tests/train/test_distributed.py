"""`fgbench run --nproc N`: DDP through torchrun on CPU (gloo), two processes.

The end-to-end tests start the real launcher (`python -m fgbench run ... --nproc 2`), which runs
`python -m torch.distributed.run --standalone` (a free port). A `sitecustomize.py` on the workers'
PYTHONPATH records, per rank, every file the worker opens for writing (or renames, removes,
creates) inside the run directory (Python audit hooks), and can slow the steps down so that a
SIGINT lands mid-epoch. It changes nothing the trainer computes.

The data: 8 px images, 129 training images (one removed) and a global batch of 14 without
drop_last, so the last batch of each epoch (3 images) is split 2 + 1 between the processes: the
uneven case, where DDP's gradient average needs the loss scaling of ``fgbench.train.loop``.
Small images also keep float noise from flipping a ReLU between the two runs: the weights agree
to ~1e-7 here (measured over six seeds), against a tolerance of 1e-5.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fgbench.cli import main
from fgbench.train import checkpoint as C
from fgbench.train import distributed as D

from .conftest import events_of, last_per_epoch, summary_of, tiny_recipe

REPO = Path(__file__).resolve().parents[2]

DDP_SECTIONS = dict(
    data={"train_size": 8, "test_size": 8, "crop_padding": 1, "batch_size": 14, "drop_last": False},
    model={"arch": "resnet8_cifar"},
    augment={"hflip": True},  # per-sample seeded: the same flips in both runs
    optim={"name": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 5e-4},
    schedule={"name": "cosine", "epochs": 2, "warmup_epochs": 0.5, "warmup": "quadratic"},
    ema={"enabled": True, "decay": 0.99, "ramp_steps": 10},
    distributed={"global_batch": True, "sync_bn": True},
)
STEPS_PER_EPOCH = 10  # ceil(129 / 14)

SITECUSTOMIZE = r'''
import os, sys

if "RANK" in os.environ and "LOCAL_RANK" in os.environ:  # torchrun workers only
    _audit = os.environ.get("FGBENCH_TEST_AUDIT")
    if _audit:
        _watch = os.path.realpath(os.environ["FGBENCH_TEST_AUDIT_WATCH"])
        _log = open(os.path.join(_audit, "rank%s-%d.log" % (os.environ["RANK"], os.getpid())), "a", buffering=1)
        _busy = []
        _PATH_EVENTS = ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree", "os.truncate",
                        "os.link", "os.symlink", "os.chmod")

        def _inside(p):
            if not isinstance(p, (str, bytes, os.PathLike)):
                return False
            p = os.path.realpath(os.fsdecode(p))
            return p == _watch or p.startswith(_watch + os.sep)

        def _hook(event, args):
            if _busy:
                return
            _busy.append(1)
            try:
                if event == "open":
                    path, mode, flags = args
                    if isinstance(mode, str):
                        writes = any(c in mode for c in "wax+")
                    else:
                        writes = bool((flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
                    if writes and _inside(path):
                        _log.write("open %s\n" % (path,))
                elif event in _PATH_EVENTS and any(_inside(a) for a in args):
                    _log.write("%s %s\n" % (event, args))
            finally:
                _busy.pop()

        sys.addaudithook(_hook)

    _slow = int(os.environ.get("FGBENCH_TEST_SLOW_FROM_STEP", "0") or 0)
    if _slow:
        import time
        import fgbench.train.progress as _pg

        _orig_tick = _pg.Progress.tick

        def _tick(self, **kw):
            _orig_tick(self, **kw)
            if kw["step"] >= _slow:
                time.sleep(0.25)

        _pg.Progress.tick = _tick
'''


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def ddp_env(tmp_path_factory) -> dict:
    """Data, recipe and the workers' sitecustomize, shared by the module's runs."""
    from fgbench.data import synthetic

    base = tmp_path_factory.mktemp("ddp")
    data = base / "data"
    synthetic.generate(data, train_per_class=16, test_per_class=6, size=8)
    first = sorted((data / "train").iterdir())[0]
    sorted(first.iterdir())[0].unlink()  # 159 images: 129 train + 30 val
    recipe = base / "ddp.toml"
    recipe.write_text(tiny_recipe(data, **DDP_SECTIONS), encoding="utf-8")
    site = base / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    home = base / "home"
    return {"base": base, "data": data, "recipe": recipe, "site": site, "home": home}


STALL_S = 600
"""A real two-process run on a loaded machine is slow, not stuck: the waits below fail only when
nothing under the run directory grew for this long (the slowest start seen under a load of about
20 on 2 cores wrote its first event well within 2 minutes)."""
LAST_RESORT_S = 3600
"""A run that keeps writing but never ends: far beyond the slowest whole run measured under load
(about 100 s alone at load 2-4, over 150 s at load 20)."""


def _written(dirs: list[Path]) -> int:
    """Bytes under ``dirs``: what progress looks like from outside (events, logs, checkpoints)."""
    total = 0
    for d in dirs:
        for p in d.rglob("*") if d.is_dir() else []:
            try:
                total += p.stat().st_size
            except OSError:
                pass  # a temporary file replaced meanwhile
    return total


def wait_on_progress(proc: subprocess.Popen, watch: list[Path], until=None) -> tuple[str, str] | None:
    """Wait for ``proc`` to exit (returns its output), or for ``until()`` to hold (returns None),
    as long as it makes progress: failing after STALL_S without a new byte under ``watch`` or after
    LAST_RESORT_S in all, never on a slow but moving run."""
    t0 = last_move = time.monotonic()
    seen = -1
    while True:
        if until is not None and until():
            return None
        try:
            out, err = proc.communicate(timeout=0.05 if until is not None else 1.0)
            if until is not None:
                raise AssertionError(f"exited {proc.returncode} before the awaited progress: {err[-3000:]}")
            return out, err
        except subprocess.TimeoutExpired:
            pass  # output is kept: communicate() picks up where it was
        now, size = time.monotonic(), _written(watch)
        if size != seen:
            seen, last_move = size, now
        if now - last_move > STALL_S or now - t0 > LAST_RESORT_S:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"no progress for {now - last_move:.0f} s ({now - t0:.0f} s in all): {err[-3000:]}")


def test_the_wait_fails_on_a_stall_and_never_on_slow_progress(tmp_path, monkeypatch):
    """The bound is on progress: a run slower than the stall bound in all, but writing, passes;
    one that stops writing fails after the stall bound, its process group killed."""
    monkeypatch.setattr(sys.modules[__name__], "STALL_S", 1.0)
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    writer = ("import sys, time\n"
              "for i in range(12):\n"
              f"    open({str(out_dir / 'log')!r}, 'a').write('x')\n"
              "    time.sleep(0.25)\n"
              "print('done')")
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    t0 = time.monotonic()
    out, _err = wait_on_progress(proc, [out_dir])
    assert out == "done\n" and time.monotonic() - t0 > STALL_S * 2  # slower than the bound, never stalled
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    with pytest.raises(AssertionError, match="no progress for"):
        wait_on_progress(silent, [out_dir])
    assert silent.returncode is not None  # killed, not left behind


def _watched(env_info: dict, argv: tuple[str, ...]) -> list[Path]:
    dirs = [Path(env_info["home"]) / "runs"]
    for flag in ("--run-dir", "--resume", "--runs-root"):
        if flag in argv:
            dirs.append(Path(argv[argv.index(flag) + 1]))
    return dirs


def launch(env_info: dict, *argv: str, env_extra: dict | None = None, wait: bool = True):
    """``fgbench run ... --progress none`` in its own process group, as a terminal would start it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(env_info["site"]), str(REPO)]),
           "FGBENCH_HOME": str(env_info["home"]), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [sys.executable, "-m", "fgbench", "run", *argv, "--progress", "none"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    proc.watch = _watched(env_info, argv)  # type: ignore[attr-defined]
    if wait:
        out, err = wait_on_progress(proc, proc.watch)  # type: ignore[attr-defined,misc]
        return proc.returncode, out, err
    return proc


def audit_env(audit_dir: Path, run_dir: Path) -> dict:
    audit_dir.mkdir(parents=True, exist_ok=True)
    return {"FGBENCH_TEST_AUDIT": str(audit_dir), "FGBENCH_TEST_AUDIT_WATCH": str(run_dir)}


def writes_by_rank(audit_dir: Path) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for f in audit_dir.glob("rank*.log"):
        rank = int(f.name[4:].split("-")[0])
        out.setdefault(rank, []).extend(f.read_text().splitlines())
    return out


def flat(state: dict) -> torch.Tensor:
    return torch.cat([v.double().flatten() for v in state.values() if v.is_floating_point()])


@pytest.fixture(scope="module")
def ddp_run(ddp_env) -> dict:
    """The uninterrupted two-process run the other tests compare against."""
    run = ddp_env["base"] / "ddp-run"
    audit = ddp_env["base"] / "audit-ref"
    t0 = time.monotonic()
    code, out, err = launch(ddp_env, str(ddp_env["recipe"]), "--run-dir", str(run), "--nproc", "2",
                            env_extra=audit_env(audit, run))
    assert code == 0, err
    return {"run": run, "audit": audit, "out": out, "err": err, "seconds": time.monotonic() - t0}


# -------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_ddp_matches_a_single_process_run_with_the_same_global_batch(ddp_env, ddp_run, tmp_path):
    single = tmp_path / "single"
    assert main(["run", str(ddp_env["recipe"]), "--run-dir", str(single), "--progress", "none"]) == 0
    ddp = ddp_run["run"]

    ca, cb = C.load_checkpoint(single / "checkpoints/last.pt"), C.load_checkpoint(ddp / "checkpoints/last.pt")
    assert ca["step"] == cb["step"] == 2 * STEPS_PER_EPOCH
    for key in ("model", "ema"):
        a, b = flat(ca[key]), flat(cb[key])
        assert ((a - b).norm() / a.norm()).item() < 1e-5, key
        for name in ca[key]:
            torch.testing.assert_close(cb[key][name], ca[key][name], rtol=1e-4, atol=1e-5, msg=f"{key}.{name}")
    assert cb["world_size"] == 2 and len(cb["rng_ranks"]) == 2

    ea, eb = last_per_epoch(events_of(single)), last_per_epoch(events_of(ddp))
    assert ea.keys() == eb.keys() == {1, 2}
    for epoch in ea:
        for field in ("train_loss", "lr"):
            assert eb[epoch][field] == pytest.approx(ea[epoch][field], rel=1e-5), (epoch, field)
        for field in ("train_top1", "val_top1", "test_top1", "ema_val_top1", "ema_test_top1", "step"):
            assert eb[epoch][field] == pytest.approx(ea[epoch][field], abs=1e-6), (epoch, field)
    sa, sb = summary_of(single), summary_of(ddp)
    for key in ("best", "last", "train_images", "val_images", "test_images", "step", "status"):
        assert sb[key] == sa[key], key
    started = [ev for ev in events_of(ddp) if ev["event"] == "run_started"]
    assert len(started) == 1 and started[0]["world_size"] == 2 and started[0]["steps_per_epoch"] == STEPS_PER_EPOCH
    assert json.loads((ddp / "run.json").read_text())["world_size"] == 2
    assert json.loads((ddp / "confusion.json").read_text())["matrix"] == json.loads((single / "confusion.json").read_text())["matrix"]
    # every test image's prediction, gathered from both shards in test-split order
    pred_ddp, pred_single = (json.loads((d / "predictions.json").read_text()) for d in (ddp, single))
    for key in ("index", "file", "label", "predicted", "model", "epoch"):
        assert pred_ddp[key] == pred_single[key], key

    # Only rank 0 wrote into the run directory; it holds exactly the contract's files.
    writes = writes_by_rank(ddp_run["audit"])
    assert set(writes) == {0, 1}  # both workers were audited
    assert writes[0] and not writes[1], writes[1][:5]
    assert sorted(p.relative_to(ddp).as_posix() for p in ddp.rglob("*") if p.is_file()) == [
        ".lock", "checkpoints/best.pt", "checkpoints/last.pt", "classes.json", "confusion.json", "log.txt",
        "metrics.jsonl", "predictions.json", "recipe.toml", "run.json", "summary.json"]
    assert "Traceback" not in ddp_run["err"] and "ChildFailedError" not in ddp_run["err"]
    assert "finished" in ddp_run["out"] and "run directory:" in (ddp / "log.txt").read_text()


@pytest.mark.slow
def test_ctrl_c_checkpoints_every_process_and_resume_with_nproc_completes(ddp_env, ddp_run, tmp_path):
    """A terminal's Ctrl-C (SIGINT to the launcher's whole process group, torchrun included) stops
    the run once, with a checkpoint; ``--resume --nproc 2`` then ends exactly where the
    uninterrupted run did."""
    run = tmp_path / "run"
    proc = launch(ddp_env, str(ddp_env["recipe"]), "--run-dir", str(run), "--nproc", "2", wait=False,
                  env_extra={"FGBENCH_TEST_SLOW_FROM_STEP": "4", **audit_env(tmp_path / "audit", run)})
    wait_on_progress(proc, proc.watch, until=lambda: (run / "metrics.jsonl").exists() and any(
        ev["event"] == "step" and ev["step"] >= 6 for ev in events_of(run)))
    os.killpg(proc.pid, signal.SIGINT)
    out, err = wait_on_progress(proc, proc.watch)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "ChildFailedError" not in err and "SignalException" not in err
    assert err.count("SIGINT: finishing the current step") == 1  # said once, by rank 0
    assert "--resume" in out and "--nproc 2" in out
    ckpt = C.load_checkpoint(run / "checkpoints/last.pt")
    assert 6 <= ckpt["step"] < STEPS_PER_EPOCH and ckpt["batch"] == ckpt["step"]  # mid-epoch 1
    assert len(ckpt["rng_ranks"]) == 2
    last = events_of(run)[-1]
    assert last["event"] == "run_finished" and last["status"] == "interrupted" and "SIGINT" in last["error"]

    code, out, err = launch(ddp_env, "--resume", str(run), "--nproc", "2", env_extra=audit_env(tmp_path / "audit", run))
    assert code == 0, err
    ref = C.load_checkpoint(ddp_run["run"] / "checkpoints/last.pt")
    done = C.load_checkpoint(run / "checkpoints/last.pt")
    assert done["step"] == ref["step"]
    for key in ("model", "ema"):
        for name in ref[key]:
            assert torch.equal(done[key][name], ref[key][name]), f"{key}.{name}"
    assert summary_of(run)["best"] == summary_of(ddp_run["run"])["best"]
    started = [ev for ev in events_of(run) if ev["event"] == "run_started"]
    assert started[-1]["resumed"]["step"] == ckpt["step"] and started[-1]["world_size"] == 2
    writes = writes_by_rank(tmp_path / "audit")
    assert writes[0] and not writes.get(1), writes.get(1)


@pytest.mark.slow
def test_two_nodes_on_one_machine(ddp_env, ddp_run, tmp_path):
    """``--nnodes 2 --node-rank R --rdzv-endpoint HOST:PORT``, one process per "node": node 0
    writes the run directory; node 1 (given no --run-dir) creates nothing anywhere."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    common = ["--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"]
    node1 = launch(ddp_env, str(ddp_env["recipe"]), "--runs-root", str(tmp_path / "node1-runs"), *common,
                   "--node-rank", "1", wait=False)
    code, out, err = launch(ddp_env, str(ddp_env["recipe"]), "--run-dir", str(run), *common, "--node-rank", "0")
    out1, err1 = wait_on_progress(node1, [run])
    assert code == 0 and node1.returncode == 0, err + err1
    assert not (tmp_path / "node1-runs").exists() and not out1.strip()
    started = [ev for ev in events_of(run) if ev["event"] == "run_started"]
    assert started[0]["world_size"] == 2 and summary_of(run)["status"] == "completed"
    ref, got = C.load_checkpoint(ddp_run["run"] / "checkpoints/last.pt"), C.load_checkpoint(run / "checkpoints/last.pt")
    assert ((flat(ref["model"]) - flat(got["model"])).norm() / flat(ref["model"]).norm()).item() < 1e-6


def test_bad_input_is_refused_by_the_launcher_before_anything_starts(ddp_env, tmp_path, capsys):
    runs_root = tmp_path / "runs"
    recipe = str(ddp_env["recipe"])

    def refused(*argv: str) -> str:
        assert main(["run", recipe, "--runs-root", str(runs_root), "--progress", "none", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0, err
        return err

    assert "data.batch_size: 15 is not divisible by the 2 processes" in refused("--nproc", "2", "--set",
                                                                                   "data.batch_size=15")
    # 129 % 16 = 1: one process would get no image in the last step of each epoch
    assert "data.drop_last" in refused("--nproc", "2", "--set", "data.batch_size=16")
    assert "--rdzv-endpoint" in refused("--nproc", "2", "--nnodes", "2")
    assert "--nnodes" in refused("--nproc", "2", "--nnodes", "1:2")
    assert "--node-rank" in refused("--nproc", "2", "--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1")
    assert "--nproc" in refused("--nproc", "0")
    assert not runs_root.exists()


# ------------------------------------------------------------------------------------- units


def test_sharded_batches_are_exactly_the_single_process_batch():
    from fgbench.data.loaders import EpochBatchSampler

    single = EpochBatchSampler(129, 14, seed=3, drop_last=False)
    shards = [EpochBatchSampler(129, 14, seed=3, drop_last=False, shard=(r, 2)) for r in range(2)]
    for s in (single, *shards):
        s.set_epoch(5, start_batch=2)
    batches = list(single)
    per_rank = [list(s) for s in shards]
    assert len(batches) == len(per_rank[0]) == len(per_rank[1]) == 8
    for b, b0, b1 in zip(batches, *per_rank):
        assert sorted(b0 + b1) == sorted(b) and b0 == b[0::2] and b1 == b[1::2]
    assert [len(x) for x in per_rank[0][-1:] + per_rank[1][-1:]] == [2, 1]  # the uneven last batch


def test_device_loader_shards_get_the_crops_and_flips_of_the_single_process_batch():
    from types import SimpleNamespace

    from fgbench.data.loaders import DeviceTrainLoader

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (23, 3, 6, 6), generator=g, dtype=torch.uint8)
    y = torch.arange(23)
    data = SimpleNamespace(drop_last=False, train_crop="pad_crop", crop_padding=2, normalize="none",
                           dataset="folder", mean=None, std=None)
    aug = SimpleNamespace(hflip=True)
    cpu = torch.device("cpu")
    single = list(DeviceTrainLoader(x, y, 8, 7, data, aug, 6, cpu).batches(epoch=2))
    shards = [list(DeviceTrainLoader(x, y, 8, 7, data, aug, 6, cpu, shard=(r, 2)).batches(epoch=2)) for r in range(2)]
    assert len(single) == len(shards[0]) == len(shards[1]) == 3
    for (xs, ys, _), (x0, y0, _), (x1, y1, _) in zip(single, *shards):
        assert torch.equal(ys[0::2], y0) and torch.equal(ys[1::2], y1)
        assert torch.equal(xs[0::2], x0) and torch.equal(xs[1::2], x1)


def _sync_bn_worker(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        x_all, coef = _sync_bn_inputs()
        part = slice(0, 4) if rank == 0 else slice(4, 6)  # uneven shares: 4 and 2 images
        bn = D.GlooSyncBatchNorm(3, momentum=0.3)
        with torch.no_grad():
            bn.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
            bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        x = x_all[part].clone().requires_grad_(True)
        y = bn(x)
        (y * coef[part]).sum().backward()
        torch.save({"y": y.detach(), "gx": x.grad, "gw": bn.weight.grad, "gb": bn.bias.grad,
                    "rm": bn.running_mean, "rv": bn.running_var, "n": bn.num_batches_tracked}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def _sync_bn_inputs():
    g = torch.Generator().manual_seed(11)
    return torch.randn(6, 3, 5, 5, generator=g) * 2 + 1, torch.randn(6, 3, 5, 5, generator=g)


def test_gloo_sync_batchnorm_is_batchnorm_over_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_sync_bn_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "0.pt"), torch.load(tmp_path / "1.pt")

    x_all, coef = _sync_bn_inputs()
    ref = torch.nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        ref.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x = x_all.clone().requires_grad_(True)
    y = ref(x)
    (y * coef).sum().backward()
    torch.testing.assert_close(torch.cat([r0["y"], r1["y"]]), y.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([r0["gx"], r1["gx"]]), x.grad, rtol=1e-5, atol=1e-5)
    # each process's parameter gradient is its own share; DDP adds (averages) them
    torch.testing.assert_close(r0["gw"] + r1["gw"], ref.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r0["gb"] + r1["gb"], ref.bias.grad, rtol=1e-5, atol=1e-5)
    for r in (r0, r1):
        torch.testing.assert_close(r["rm"], ref.running_mean, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(r["rv"], ref.running_var, rtol=1e-6, atol=1e-6)
        assert int(r["n"]) == 1


def test_sync_bn_conversion_keeps_the_state_dict():
    from fgbench.train.models import build_model
    from fgbench.recipe import validate_recipe

    r = validate_recipe({"model": {"arch": "resnet8_cifar"}}, "test")
    model = build_model(r.model, 10, data_cfg=r.data).model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = D.convert_sync_bn(model, torch.device("cpu"))
    assert any(isinstance(m, D.GlooSyncBatchNorm) for m in converted.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in converted.modules())
    after = converted.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    x = torch.randn(2, 3, 8, 8)
    converted.eval()
    plain = build_model(r.model, 10, data_cfg=r.data).model
    plain.load_state_dict(after)
    plain.eval()
    assert torch.allclose(converted(x), plain(x))  # outside a process group it is plain BatchNorm


def test_torchrun_command_lines():
    from fgbench.rundir.request import RunRequest

    base = dict(recipe="r.toml", overrides=("optim.lr=0.1",), resume=None, device=None, progress="lines",
                sweep_tag=None, nproc=4, nnodes="1", node_rank=0, rdzv_endpoint=None)
    one = D.torchrun_command(RunRequest(**base), run_dir=Path("/runs/x"), python="py")
    assert one == ["py", "-m", "torch.distributed.run", "--nproc-per-node=4", "--standalone", "--nnodes=1",
                   "-m", "fgbench", "run", str(Path("r.toml").resolve()), "--set", "optim.lr=0.1",
                   "--run-dir", "/runs/x", "--progress", "lines"]
    multi = D.torchrun_command(RunRequest(**{**base, "nnodes": "2", "node_rank": 1, "rdzv_endpoint": "node0:29500",
                                             "resume": "/runs/x", "recipe": None, "overrides": ()}),
                               run_dir=Path("/runs/x"), python="py")
    assert multi == ["py", "-m", "torch.distributed.run", "--nproc-per-node=4", "--nnodes=2", "--node-rank=1",
                     "--rdzv-backend=static", "--rdzv-endpoint=node0:29500", "-m", "fgbench", "run",
                     "--resume", "/runs/x", "--progress", "lines"]
    # a resume carries the overrides it may make (data.skip_corrupt) to every worker
    resumed = D.torchrun_command(RunRequest(**{**base, "resume": "/runs/x", "recipe": None,
                                               "overrides": ("data.skip_corrupt=true",)}),
                                 run_dir=Path("/runs/x"), python="py")
    assert resumed[resumed.index("run"):] == ["run", "--resume", "/runs/x", "--set", "data.skip_corrupt=true",
                                               "--progress", "lines"]


def test_the_launchers_exit_code_is_rank_0s():
    assert D.exit_code({0: 130, 1: 130}, torchrun_rc=0, signalled=True) == 130
    assert D.exit_code({0: 2, 1: 2}, torchrun_rc=0, signalled=False) == 2
    assert D.exit_code({2: 0, 3: 1}, torchrun_rc=1, signalled=False) == 1  # a node without rank 0
    assert D.exit_code({}, torchrun_rc=1, signalled=False) == 1  # torchrun itself failed
    assert D.exit_code({}, torchrun_rc=1, signalled=True) == 130


def test_batch_sizes_per_process_or_global():
    from fgbench.recipe import validate_recipe

    per = validate_recipe({"data": {"batch_size": 32}, "stages": [{"epochs": 1, "batch_size": 8}]}, "t")
    g = D.global_batch_recipe(per, 4)
    assert g.data.batch_size == 128 and g.stages[0].batch_size == 32 and per.data.batch_size == 32
    glob = validate_recipe({"data": {"batch_size": 32}, "distributed": {"global_batch": True}}, "t")
    assert D.global_batch_recipe(glob, 4).data.batch_size == 32
    D.check_batches(glob, 1000, 4)
    with pytest.raises(D.UserError, match="data.batch_size: 32 is not divisible by the 3 processes"):
        D.check_batches(glob, 1000, 3)


def test_sweep_slots_group_gpu_ids_per_run():
    from fgbench.sweeps import local

    assert local.group_slots(["0", "1", "2", "3"], 2) == ["0,1", "2,3"]
    assert local.group_slots([None], 2) == [None]
    assert local.group_slots(["0", "1"], 1) == ["0", "1"]
    with pytest.raises(D.UserError, match="--gpus"):
        local.group_slots(["0", "1", "2"], 2)


def test_world_from_torchrun_environment():
    assert D.world_from_env({}) is None and D.world_from_env({"WORLD_SIZE": "1"}) is None
    w = D.world_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (w.rank, w.size, w.local_rank, w.local_size, w.is_main) == (3, 4, 1, 2, False)



def test_sweep_passes_nproc_to_each_run_and_groups_gpus(ddp_env, tmp_path, monkeypatch, capsys):
    from fgbench.sweeps import local

    seen = {}

    def fake_run_sweep(state, *, slots, retry_failed, extra_args):
        seen.update(slots=list(slots), extra=list(extra_args), points=len(state.points), run_args=list(state.run_args))
        return 0

    monkeypatch.setattr(local, "run_sweep", fake_run_sweep)
    assert main(["sweep", str(ddp_env["recipe"]), "--grid", "optim.lr=0.1,0.01", "--runs-root", str(tmp_path),
                 "--nproc", "2", "--gpus", "0,1,2,3"]) == 0
    # --nproc is recorded in the sweep's state (every point and every --continue gets it)
    assert seen == {"slots": ["0,1", "2,3"], "extra": ["--progress", "lines"], "points": 2,
                    "run_args": ["--nproc", "2"]}
    capsys.readouterr()
