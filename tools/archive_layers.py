"""Break each safety layer of archive extraction and dataset state on its own, and show its tests fail.

    python tools/archive_layers.py              # every layer
    python tools/archive_layers.py dotdot       # some layers
    python tools/archive_layers.py --list

Each layer is one small edit that removes a check from ``fgbench/data/download.py`` or
``fgbench/data/catalog.py``. The edit is made in a scratch copy of the repository
(``.mutation/archive-layers/``, git-ignored), never in the working tree, and the archive tests run
against that copy. A layer whose tests all pass with it removed is reported as UNGUARDED and the
command exits 1. Where mutmut (``tools/mutation.py``) tries random small changes, this removes the
checks that matter, one at a time: issue 10's "each archive safety layer removed on its own".
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".mutation" / "archive-layers"
TESTS = ["tests/data/test_data_hostile.py", "tests/data/test_data_extract.py"]
DL = "fgbench/data/download.py"

# name -> (what it guards, file, text to find (once), replacement)
LAYERS: dict[str, tuple[str, str, str, str]] = {
    "data-filter": ("tarfile's data filter on every member ('..' that leads out, absolute or outside links, "
                    "devices, FIFOs)", DL,
                    "        why = _filter_verdict(m, self.root)\n", "        why = None\n"),
    "zip-as-tar": ("zip entries described to the filter as the tar member they are (links, devices)", DL,
                   "_ZIP_TYPES.get(stat.S_IFMT(mode), tarfile.REGTYPE)", "tarfile.REGTYPE"),
    "absolute": ("members with an absolute path (the filter would strip the '/')", DL,
                 'if name.startswith("/"):', "if False:"),
    "fallback": ("the data filter's verdicts on a Python without it (Debian 12's 3.11.2)", DL,
                 "        return _lexical_verdict(m)\n", "        return None\n"),
    "depth": ("member names more than MAX_DEPTH folders deep", DL, "        if len(parts) > MAX_DEPTH:",
              "        if False:"),
    "name-length": ("member names longer than MAX_NAME_CHARS", DL, "        if len(name) > MAX_NAME_CHARS:",
                    "        if False:"),
    "below-a-link": ("writing a member through a link member", DL,
                     "            if parts[:i] in self.link_parts:\n                raise",
                     "            if False:\n                raise"),
    "link-targets": ("links judged by where they finally point (chains included)", DL,
                     "        if _resolve_inside(root, list(parts)) is None:\n            raise UnsafeArchiveError",
                     "        if False:\n            raise UnsafeArchiveError"),
    "after-merge": ("links judged again once merged beside an earlier archive's", DL,
                    "        bad = [p for p in placed or [] if _resolve_inside(root, list(p)) is None]",
                    "        bad = []"),
    "state-names": ("members named like fgbench's own files (ready marker, index, ...)", DL,
                    "            if catalog.is_reserved_name(p):", "            if False:"),
    "bomb-budget": ("the extraction budget", DL, "        if self.used > self.budget:", "        if False:"),
    "state-dirs": ("writing state through a linked .steps/ or .downloads/", DL,
                   "    if os.path.islink(path) or (os.path.lexists(path) and not path.is_dir()):\n        raise UserError",
                   "    if False:\n        raise UserError"),
    "state-files": ("writing the lock (and .part files) through a link (O_NOFOLLOW)", DL,
                    "        return os.open(path, flags | _O_NOFOLLOW |", "        return os.open(path, flags |"),
    "linked-ready": ("a ready marker that is a link", "fgbench/data/catalog.py",
                     "    if is_state_file(loc / READY_FILE):", "    if (loc / READY_FILE).is_file():"),
    "free-space": ("the free-space check before a download or import", DL,
                   '    if free < need:\n        raise DownloadError(f"{name}: needs',
                   '    if False:\n        raise DownloadError(f"{name}: needs'),
}


def copy_repo() -> None:
    for sub in ("fgbench", "tests"):
        if (WORK / sub).exists():
            shutil.rmtree(WORK / sub)
        shutil.copytree(REPO / sub, WORK / sub, ignore=shutil.ignore_patterns("__pycache__"))


def run_layer(name: str) -> list[str]:
    """The tests that fail with layer ``name`` removed."""
    _what, path, find, replace = LAYERS[name]
    copy_repo()
    target = WORK / path
    text = target.read_text(encoding="utf-8")
    if text.count(find) != 1:
        raise SystemExit(f"{name}: the check to remove is no longer in {path}; update tools/archive_layers.py")
    target.write_text(text.replace(find, replace), encoding="utf-8")
    env_path = str(WORK)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                       cwd=WORK, capture_output=True, text=True, env={**_env(), "PYTHONPATH": env_path})
    return [ln.split("::", 1)[1].split(" ")[0] for ln in r.stdout.splitlines() if ln.startswith("FAILED")]


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("layers", nargs="*", metavar="LAYER")
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    if args.list:
        for name, (what, path, *_rest) in LAYERS.items():
            print(f"{name:14} {path}: {what}")
        return 0
    unknown = [n for n in args.layers if n not in LAYERS]
    if unknown:
        p.error(f"unknown layer(s): {', '.join(unknown)}; see --list")
    WORK.mkdir(parents=True, exist_ok=True)
    unguarded = 0
    for name in args.layers or list(LAYERS):
        failed = run_layer(name)
        if failed:
            print(f"{name:14} guarded: {len(failed)} test(s) fail without it, e.g. {failed[0]}", flush=True)
        else:
            unguarded += 1
            print(f"{name:14} UNGUARDED: every test passes without it", flush=True)
    return 1 if unguarded else 0


if __name__ == "__main__":
    raise SystemExit(main())
